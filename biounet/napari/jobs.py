"""The work the napari widgets hand to a thread: plain Python, no Qt.

A widget builds a request (:class:`SegmentRequest`, :class:`WeightMapRequest`)
from its controls and runs :func:`segment_job` or :func:`weight_map_job` in a
napari thread worker. :func:`segment_job` is a generator: it yields
``(done, total)`` after every tile, which the worker relays to the widget's
progress bar in the GUI thread, and it stops at the next tile once its
`cancel` event is set. Both return an :class:`Outcome`: the array for the new
layer, or a one-line message for input the user can fix (a wrong model file,
an RGB image, a label image without objects). Anything else is a bug and
propagates to napari's error notification.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from biounet.device import make_runtime
from biounet.errors import BiounetError
from biounet.inference.outputs import model_output
from biounet.inference.progress import ProgressCallback
from biounet.inference.segmentation import segment
from biounet.napari.layers import image_axes
from biounet.network.unet import UNet, load_model
from biounet.options import TTA, OutputKind
from biounet.training.data import Foreground, LabelKind, to_instances
from biounet.training.weight_map import WeightMapConfig, weight_maps

T = TypeVar("T")

#: How a job ended: with a result, cancelled by the user, or stopped by bad input.
Status = Literal["done", "cancelled", "failed"]


class Cancelled(Exception):
    """Raised inside the work, at the next tile, after the user pressed Cancel."""


@dataclass(frozen=True)
class Outcome:
    """What a job hands back to the widget.

    Attributes
    ----------
    status : {'done', 'cancelled', 'failed'}
    message : str
        One line for the widget's status line.
    data : ndarray or None
        The new layer's data when `status` is ``done``.
    """

    status: Status
    message: str
    data: np.ndarray | None = None


def with_progress(
    work: Callable[[ProgressCallback], T], cancel: threading.Event
) -> Generator[tuple[int, int], None, T]:
    """Run ``work(progress)`` in a helper thread, yielding ``(done, total)`` after every tile.

    The library reports progress through a callback; a napari generator
    worker reports what its generator yields. This turns the one into the
    other: `work` runs in a helper thread, the callback queues each update,
    and the generator yields them as they come and returns what `work`
    returns. Once `cancel` is set the callback raises :class:`Cancelled`, so
    `work` stops after the tile in progress.

    Parameters
    ----------
    work : callable
        ``work(progress)``, calling ``progress(done, total)`` after every tile.
    cancel : threading.Event
        Set it to stop the work; it is also set if the generator is closed early.

    Returns
    -------
    The value of ``work(progress)``.

    Raises
    ------
    Cancelled
        If `cancel` was set before `work` finished.
    Exception
        Whatever `work` raised.

    Examples
    --------
    >>> def work(progress):
    ...     for i in range(3):
    ...         progress(i + 1, 3)
    ...     return "done"
    >>> steps = with_progress(work, threading.Event())
    >>> list(steps)
    [(1, 3), (2, 3), (3, 3)]
    """
    updates: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled(f"cancelled after {done} of {total} tiles")
        updates.put((done, total))

    def run() -> None:
        try:
            outcome["value"] = work(progress)
        except BaseException as exc:  # handed to the generator, which re-raises it
            outcome["error"] = exc
        finally:
            updates.put(None)

    helper = threading.Thread(target=run, name="biounet-napari-work", daemon=True)
    helper.start()
    finished = False
    try:
        while (update := updates.get()) is not None:
            yield update
        finished = True
    finally:
        if not finished:  # closed early: stop the work at its next tile
            cancel.set()
        helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class ModelCache:
    """Models loaded by the widget, kept until their file changes.

    Every model is loaded with :func:`biounet.network.unet.load_model`, so
    whatever files it reads (biounet checkpoints, bioimage.io packages) the
    widget reads too. ``None`` is the bundled model.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, int, int] | None, UNet] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: str | None) -> tuple[str, int, int] | None:
        if path is None:
            return None
        p = Path(path)
        if p.exists():
            stat = p.stat()
            return (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
        return (path, 0, 0)

    def get(self, path: str | None) -> UNet:
        """The model stored at `path` (``None``: the bundled model), loaded once.

        Raises
        ------
        BiounetError
            As :func:`biounet.network.unet.load_model`.
        """
        key = self._key(path)
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(path)
            return self._models[key]


@dataclass(frozen=True)
class SegmentRequest:
    """What the segment widget asks for.

    Attributes
    ----------
    image : array-like
        The layer's array (numpy, dask or zarr; read tile by tile).
    rgb : bool
        Whether the layer is shown as RGB (its last axis holds the channels).
    name : str
        The layer's name, for messages.
    model : str or None
        A checkpoint or bioimage.io package; None for the bundled model.
    kind : {'labels', 'mask', 'probabilities'}
    tta : {'none', 'd4', 'rot7'}
    window : int or None
        Network input size per tile; None picks one.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    threshold, min_size : float or int, optional
        The user's override of the model's decision rule; None keeps the
        model's (as ``biounet predict`` without ``--threshold``/``--min-size``).
    """

    image: Any
    rgb: bool
    name: str
    model: str | None = None
    kind: OutputKind = "labels"
    tta: TTA = "none"
    window: int | None = None
    device: str = "auto"
    threshold: float | None = None
    min_size: int | None = None


def summary(data: np.ndarray, kind: str, seconds: float) -> str:
    """The status line after a segmentation.

    Examples
    --------
    >>> summary(np.array([[0, 1], [2, 2]]), "labels", 1.25)
    '2 objects in 1.2 s'
    >>> summary(np.zeros((2, 2)), "probabilities", 0.5)
    'probabilities in 0.5 s'
    """
    if kind == "labels":
        ids = np.unique(data)
        return f"{int(np.count_nonzero(ids))} objects in {seconds:.1f} s"
    return f"{kind} in {seconds:.1f} s"


def segment_job(
    request: SegmentRequest, cancel: threading.Event, models: ModelCache
) -> Generator[tuple[int, int], None, Outcome]:
    """Load the model and segment the image, yielding ``(done, total)`` after every tile.

    Parameters
    ----------
    request : SegmentRequest
    cancel : threading.Event
        Set it to stop after the tile in progress.
    models : ModelCache

    Returns
    -------
    Outcome
        ``done`` with exactly what :func:`biounet.segment` returns for the
        request (the model's decision rule unless the request overrides it),
        with the rule used in its message; ``cancelled``; or ``failed`` with
        the reason.
    """
    start = time.perf_counter()
    try:
        model = models.get(request.model)
        if cancel.is_set():
            return Outcome("cancelled", "cancelled before the first tile")
        axes = image_axes(
            tuple(request.image.shape),
            rgb=request.rgb,
            channels=model.config.in_channels,
            name=request.name,
        )
        runtime = make_runtime(request.device)
        overrides = {"threshold": request.threshold, "min_size": request.min_size}
        output = model_output(model, request.kind, instances=overrides)

        def work(progress: ProgressCallback) -> np.ndarray:
            return segment(
                request.image,
                model,
                axes=axes,
                output=output,
                tta=request.tta,
                window=request.window,
                runtime=runtime,
                progress=progress,
            )

        data = yield from with_progress(work, cancel)
    except Cancelled as exc:
        return Outcome("cancelled", str(exc))
    except (BiounetError, ValueError) as exc:  # input the user can change
        return Outcome("failed", str(exc).replace("<array>", request.name))
    seconds = time.perf_counter() - start
    rule = model.decision.describe(output.instances) if request.kind != "probabilities" else ""
    message = summary(data, request.kind, seconds) + (f" ({rule})" if rule else "")
    return Outcome("done", message, data)


@dataclass(frozen=True)
class WeightMapRequest:
    """What the weight-map widget asks for.

    Attributes
    ----------
    labels : array-like
        The labels layer's array, (..., M, N): every plane gets its map, the
        class balance is taken over all planes (as ``biounet weight-map``).
    name : str
    config : WeightMapConfig
    label_kind : {'instance', 'binary'}
        ``instance``: the layer's ids are the objects (napari's convention);
        ``binary``: a two-valued mask whose 4-connected components are.
    foreground : {'high', 'low'}
        For binary masks, which value marks objects.
    """

    labels: Any
    name: str
    config: WeightMapConfig = WeightMapConfig()
    label_kind: LabelKind = "instance"
    foreground: Foreground = "high"


def weight_map_job(request: WeightMapRequest) -> Outcome:
    """The Eq. 2 weight map of every plane of a label image.

    Returns
    -------
    Outcome
        ``done`` with float32 weights of the labels' shape, as
        :func:`biounet.training.weight_map.weight_maps` computes them, or
        ``failed`` with the reason (e.g. a plane without objects).
    """
    labels = np.asarray(request.labels)
    if labels.ndim < 2:
        return Outcome("failed", f"{request.name}: a {labels.ndim}-D layer is not a label image")
    planes = labels.reshape(-1, *labels.shape[-2:])
    try:
        instances = [
            to_instances(
                plane,
                label_kind=request.label_kind,
                foreground=request.foreground,
                name=request.name if len(planes) == 1 else f"{request.name} plane {i}",
            )
            for i, plane in enumerate(planes)
        ]
    except BiounetError as exc:
        return Outcome("failed", str(exc))
    targets = weight_maps(instances, request.config)
    weights = np.stack([t.weights for t in targets]).reshape(labels.shape)
    w_bg, w_obj = targets[0].class_weights
    message = f"w_c = ({w_bg:.3f}, {w_obj:.3f}), largest w = {float(weights.max()):.2f}"
    return Outcome("done", message, weights)
