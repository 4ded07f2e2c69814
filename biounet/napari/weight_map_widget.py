"""The *Weight map (Eq. 2)* widget: the training weights of a labels layer.

It shows what training will weight: ``w = w_c + w0 exp(-(d1 + d2)^2 / 2
sigma^2)`` (the paper's Eq. 2, :mod:`biounet.training.weight_map`), computed
in a worker thread from the chosen labels layer and added as an Image layer
placed like the labels, the same numbers ``biounet weight-map`` writes.
"""

from __future__ import annotations

from typing import Any

import napari
import napari.layers
import napari.viewer
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

from biounet.napari.jobs import Outcome, WeightMapRequest, weight_map_job
from biounet.napari.layers import (
    choose_layer,
    follow_layers,
    output_metadata,
    put_layer,
    transform_of,
)
from biounet.options import FOREGROUNDS, LABEL_KINDS
from biounet.training.weight_map import WeightMapConfig


class WeightMapWidget(Container):
    """Compute and show the Eq. 2 weight map of a labels layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Injected by napari when the widget is opened from the Plugins menu.

    Attributes
    ----------
    worker : napari.qt.threading.FunctionWorker or None
        The running computation, None when idle.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.worker: Any = None
        defaults = WeightMapConfig()
        self.labels_layer = ComboBox(label="labels", choices=self._label_layers, nullable=True)
        self.label_kind = ComboBox(
            label="label kind",
            choices=[k for k in ("instance", "binary") if k in LABEL_KINDS],
            value="instance",
            tooltip="instance: every id is an object; binary: the connected components of a mask",
        )
        self.foreground = ComboBox(label="objects are", choices=list(FOREGROUNDS), value="high")
        self.foreground.visible = False
        self.w0 = FloatSpinBox(label="w0", value=defaults.w0, min=0.0, max=1000.0, step=1.0)
        self.sigma = FloatSpinBox(
            label="sigma (px)", value=defaults.sigma, min=0.1, max=1000.0, step=0.5
        )
        self.class_weights = ComboBox(
            label="class weights", choices=["balanced", "none"], value=defaults.class_weights
        )
        self.separate = CheckBox(text="cut gaps between touching objects", value=defaults.separate)
        self.run_button = PushButton(text="Compute weight map")
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.labels_layer,
                self.label_kind,
                self.foreground,
                self.w0,
                self.sigma,
                self.class_weights,
                self.separate,
                self.run_button,
                self.status,
            ],
            labels=True,
        )
        self.label_kind.changed.connect(self._show_foreground)
        self.run_button.clicked.connect(self.run)
        follow_layers(viewer, self, self._follow_selection)

    def _label_layers(self, _widget: Any = None) -> list[tuple[str, napari.layers.Labels]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Labels)
        ]

    def _follow_selection(self, _event: Any = None) -> None:
        """Choose the selected labels layer, else keep the choice, else the top-most labels."""
        if self.worker is not None:
            return
        self.labels_layer.reset_choices()
        candidates = [layer for _, layer in self._label_layers()]
        active = self._viewer.layers.selection.active
        chosen = choose_layer(candidates, active, self.labels_layer.value)
        if chosen is not self.labels_layer.value:
            self.labels_layer.value = chosen

    def _show_foreground(self, kind: str) -> None:
        self.foreground.visible = kind == "binary"

    def request(self) -> WeightMapRequest:
        """The request the controls describe.

        Raises
        ------
        ValueError
            If no labels layer is chosen.
        """
        layer = self.labels_layer.value
        if layer is None:
            raise ValueError("open or draw a labels layer first")
        config = WeightMapConfig(
            w0=float(self.w0.value),
            sigma=float(self.sigma.value),
            class_weights=self.class_weights.value,
            separate=bool(self.separate.value),
        )
        return WeightMapRequest(
            labels=layer.data,
            name=layer.name,
            config=config,
            label_kind=self.label_kind.value,
            foreground=self.foreground.value,
        )

    def run(self) -> None:
        """Compute the weight map of the chosen layer in a worker thread."""
        if self.worker is not None:
            return
        try:
            request = self.request()
        except ValueError as exc:
            self._report(Outcome("failed", str(exc)))
            return
        layer = self.labels_layer.value
        worker = create_worker(weight_map_job, request, _start_thread=False)
        worker.returned.connect(lambda outcome: self._on_returned(layer, outcome))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.status.value = f"computing the weight map of {request.name} ..."
        self.run_button.enabled = False
        worker.start()

    def _on_returned(self, layer: napari.layers.Labels, outcome: Outcome) -> None:
        self._report(outcome)
        if outcome.data is not None:
            self.add_result(layer, outcome.data)

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True

    def _report(self, outcome: Outcome) -> None:
        self.status.value = outcome.message
        if outcome.status == "failed":
            show_error(f"biounet: {outcome.message}")

    def add_result(self, layer: napari.layers.Labels, weights: Any) -> napari.layers.Image:
        """Show `weights` placed like `layer`, replacing an earlier map of it."""
        shown = napari.layers.Image(
            weights,
            name=f"{layer.name} weights",
            colormap="magma",
            metadata=output_metadata("weight map"),
            **transform_of(layer),
        )
        return put_layer(self._viewer, shown)
