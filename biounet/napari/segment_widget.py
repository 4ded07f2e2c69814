"""The *Segment (U-Net)* widget: segment an image layer in a worker thread.

The widget reads its controls into a :class:`~biounet.napari.jobs.SegmentRequest`,
runs :func:`~biounet.napari.jobs.segment_job` in a napari generator worker
(per-tile progress, Cancel stops at the next tile) and adds what
:func:`biounet.segment` returns as a layer placed like the image: a Labels
layer for labels and masks, an Image layer for probabilities.
"""

from __future__ import annotations

import threading
from typing import Any

import napari
import napari.layers
import napari.viewer
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

from biounet.errors import BiounetError
from biounet.napari.jobs import ModelCache, Outcome, SegmentRequest, segment_job
from biounet.napari.layers import (
    choose_layer,
    follow_layers,
    full_resolution,
    is_output,
    output_metadata,
    put_layer,
    transform_of,
)
from biounet.options import OUTPUT_KINDS, TTA_CHOICES

#: The model control: the bundled ISBI 2012 model or a file.
BUNDLED = "bundled (ISBI 2012 EM)"
FROM_FILE = "checkpoint or bioimage.io package"

#: Files offered by the model file dialog.
MODEL_FILTER = "*.pt *.pth *.zip *.yaml *.yml"


def device_choices() -> list[str]:
    """``auto``, ``cpu`` and every CUDA device of this machine."""
    import torch

    return ["auto", "cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]


def output_name(image_name: str, kind: str) -> str:
    """Name of the layer a segmentation of `image_name` adds (or updates).

    Examples
    --------
    >>> output_name("em_synthetic", "labels")
    'em_synthetic labels'
    """
    return f"{image_name} {kind}"


class SegmentWidget(Container):
    """Segment the selected image layer with the bundled model, a checkpoint or a package.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Injected by napari when the widget is opened from the Plugins menu.

    Attributes
    ----------
    worker : napari.qt.threading.GeneratorWorker or None
        The running segmentation, None when idle.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._models = ModelCache()
        self._cancel = threading.Event()
        self.worker: Any = None
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.model = ComboBox(label="model", choices=[BUNDLED, FROM_FILE], value=BUNDLED)
        self.model_file = FileEdit(label="model file", mode="r", filter=MODEL_FILTER)
        self.model_file.visible = False
        self.kind = ComboBox(label="output", choices=list(OUTPUT_KINDS), value="labels")
        # the model's decision rule, shown and editable (set from the model: _show_rule)
        self.threshold = FloatSpinBox(
            label="threshold",
            value=0.5,
            min=0.0,
            max=0.999,
            step=0.01,
            tooltip="foreground is probability > threshold; set to the model's calibrated value",
        )
        self.min_size = SpinBox(
            label="min size (px)",
            value=0,
            min=0,
            max=10**9,
            tooltip="objects smaller than this are removed; set to the model's value",
        )
        self.tta = ComboBox(
            label="test-time aug.",
            choices=list(TTA_CHOICES),
            value="none",
            tooltip="none; d4: the 8 flips and rotations (8x the time); rot7: 7 rotations",
        )
        self.tile_size = SpinBox(
            label="tile size (0: auto)",
            value=0,
            min=0,
            max=16384,
            tooltip="network input per tile in pixels (a valid size, e.g. 572); 0: automatic",
        )
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", value=0, min=0, max=1)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.image,
                self.model,
                self.model_file,
                self.kind,
                self.threshold,
                self.min_size,
                self.tta,
                self.tile_size,
                self.device,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ],
            labels=True,
        )
        self.model.changed.connect(self._show_model_file)
        self.model.changed.connect(self._show_rule)
        self.model_file.changed.connect(self._show_rule)
        self._show_rule()
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        follow_layers(viewer, self, self._follow_selection)

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, napari.layers.Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if _is_image(layer)]

    def _follow_selection(self, _event: Any = None) -> None:
        """Choose the selected image layer, else keep the choice, else the top-most image."""
        if self.worker is not None:
            return
        self.image.reset_choices()
        candidates = [layer for _, layer in self._image_layers()]
        chosen = choose_layer(candidates, self._viewer.layers.selection.active, self.image.value)
        if chosen is not self.image.value:
            self.image.value = chosen

    def _show_model_file(self, choice: str) -> None:
        self.model_file.visible = choice == FROM_FILE

    def _show_rule(self, _value: Any = None) -> None:
        """Set threshold and min size to the chosen model's decision rule."""
        try:
            rule = self._models.get(self._model_path()).decision
        except (ValueError, BiounetError):  # no file yet, or one that is not a model
            return
        self.threshold.value, self.min_size.value = rule.threshold, rule.min_size

    def _model_path(self) -> str | None:
        if self.model.value == BUNDLED:
            return None
        path = str(self.model_file.value or "")
        if path in ("", "."):
            raise ValueError("choose a model file (a biounet checkpoint or a bioimage.io package)")
        return path

    def request(self) -> SegmentRequest:
        """The request the controls describe.

        Raises
        ------
        ValueError
            If no image layer is chosen, or a model file is asked for but not given.
        """
        layer = self.image.value
        if layer is None:
            raise ValueError("open an image layer first (or File > Open Sample > biounet U-Net)")
        return SegmentRequest(
            image=full_resolution(layer.data, layer.multiscale),
            rgb=bool(layer.rgb),
            name=layer.name,
            model=self._model_path(),
            kind=self.kind.value,
            tta=self.tta.value,
            window=self.tile_size.value or None,
            device=self.device.value,
            threshold=self.threshold.value,
            min_size=self.min_size.value,
        )

    def run(self) -> None:
        """Start segmenting the chosen layer in a worker thread (the Segment button)."""
        if self.worker is not None:
            return
        try:
            request = self.request()
        except ValueError as exc:
            self._report(Outcome("failed", str(exc)))
            return
        layer = self.image.value
        self._cancel = threading.Event()
        worker = create_worker(
            segment_job, request, self._cancel, self._models, _start_thread=False
        )
        worker.yielded.connect(self._on_progress)
        # quit() from napari (its activity dock, closing the window) stops the tiles too
        worker.aborted.connect(self._on_aborted)
        worker.returned.connect(lambda outcome: self._on_returned(layer, request.kind, outcome))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.progress.value = 0
        self.status.value = f"segmenting {request.name} ..."
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        worker.start()

    def cancel(self) -> None:
        """Stop the running segmentation after the tile in progress (the Cancel button)."""
        if self.worker is not None:
            self._cancel.set()
            self.status.value = "cancelling ..."

    def _on_aborted(self) -> None:
        self._cancel.set()
        self.status.value = "stopped"

    def _on_progress(self, update: tuple[int, int]) -> None:
        done, total = update
        self.progress.max = total
        self.progress.value = done

    def _on_returned(self, layer: napari.layers.Image, kind: str, outcome: Outcome) -> None:
        self._report(outcome)
        if outcome.data is not None:
            self.add_result(layer, kind, outcome.data)

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False

    def _report(self, outcome: Outcome) -> None:
        self.status.value = outcome.message
        if outcome.status == "failed":
            show_error(f"biounet: {outcome.message}")

    def add_result(self, layer: napari.layers.Image, kind: str, data: Any) -> napari.layers.Layer:
        """Show `data` placed like `layer`, replacing an earlier result of the same name.

        Labels and masks become a Labels layer; probabilities an Image layer
        (one per class when there are more than two classes).
        """
        name = output_name(layer.name, kind)
        transform = transform_of(layer)
        transform["metadata"] = output_metadata(kind)
        if kind != "probabilities":
            return put_layer(self._viewer, napari.layers.Labels(data, name=name, **transform))
        if data.ndim > layer.ndim:  # (..., K): one layer per class
            names = [f"{name} class {k}" for k in range(data.shape[-1])]
            transform["metadata"] = [transform["metadata"]] * len(names)  # one per layer
            return self._viewer.add_image(
                data, channel_axis=-1, name=names, colormap="magma", **transform
            )[0]
        result = napari.layers.Image(
            data, name=name, colormap="magma", contrast_limits=(0.0, 1.0), **transform
        )
        return put_layer(self._viewer, result)


def _is_image(layer: Any) -> bool:
    """An image layer to segment: not a probability or weight map a widget added."""
    return isinstance(layer, napari.layers.Image) and not is_output(layer.metadata)
