"""The one prediction core: an image source, a model and a sink; every entry point joins here.

``segment_into(source, model, sink, plan)`` is the whole journey of a
prediction (Sec. 2, Fig. 2): the image is cut into overlap tiles
(:func:`plan_segmentation`, the one place that plans them), each tile's class
probabilities come from a *stream* (:func:`stream_probabilities` in this
process, or :meth:`biounet.inference.dask.DaskCluster.stream` on a Dask
cluster, tile for tile the same values), the output kind encodes them
(:mod:`biounet.inference.outputs`) or instance labelling joins them block by
block (:mod:`biounet.inference.instances`), and a sink takes the result
(:mod:`biounet.inference.sinks`: an array in memory, or a TIFF / OME-Zarr
file published atomically). Who joins where:

- :func:`segment` (``biounet.segment``): an array in, an :class:`ArraySink`;
  :func:`predict` (``biounet.predict``) collects the class probabilities themselves;
- :func:`biounet.inference.files.segment_file` and ``biounet predict``: a file
  opened once, a :class:`FileSink`; with ``--workers`` the Dask stream;
- the napari widget (:mod:`biounet.napari.jobs`) calls :func:`segment`;
- a bioimage.io package carries the model's decision rule, so
  ``predict --model package.zip`` and the package agree.

With no `output` given, the model's own decision rule applies
(:func:`biounet.inference.outputs.model_output`), everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from biounet.device import Runtime, make_runtime, return_freed_memory
from biounet.errors import BiounetError, ParameterError
from biounet.inference.ahead import ahead
from biounet.inference.instances import SEEDED, label_stack
from biounet.inference.outputs import (
    TILE_UNIT,
    encode,
    foreground_probability,
    label_dtype,
    model_output,
    output_layout,
)
from biounet.inference.predictor import Predictor, plan_tiles
from biounet.inference.progress import Progress, TileProgress
from biounet.inference.sinks import ArraySink, Sink
from biounet.inference.tiling import TileSpec, iter_predictions, tile_grid
from biounet.io.read import ImageSource, from_array
from biounet.io.write import Layout
from biounet.network.unet import UNet
from biounet.options import TTA, OutputOptions, TileOptions

log = logging.getLogger("biounet")

#: One tile of a stream: plane number, output rows and columns, and its data.
TileData = tuple[int, slice, slice, np.ndarray]


@dataclass(frozen=True)
class Plan:
    """How one image is predicted, decided once before any work.

    Attributes
    ----------
    spec : TileSpec
        Tile geometry (tiles are multiples of 16 px, as TIFF tiles must be).
    tiles : TileOptions
        Window, batch size, memory budget, test-time averaging as asked.
    runtime : Runtime
        Device and precision in this process.
    n_tiles : int
        Tiles over all planes.
    dtype : torch.dtype
        Compute dtype without AMP (``torch.float64`` for exactness checks).
    """

    spec: TileSpec
    tiles: TileOptions
    runtime: Runtime
    n_tiles: int
    dtype: torch.dtype = torch.float32


#: Where the tiles' class probabilities come from: this process
#: (:func:`stream_probabilities`) or a Dask cluster (``DaskCluster.stream``).
#: Called as ``stream(source, model, plan, transform, bar)``, it yields
#: ``(plane, rows, cols, transform(p))`` for every tile in file order (plane by
#: plane, row-major), where ``p`` (K, h, w) are the tile's class probabilities,
#: and calls ``bar.update(pixels)`` once per tile.
ProbabilityStream = Callable[
    [ImageSource, UNet, Plan, Callable[[np.ndarray], np.ndarray], TileProgress],
    Iterator[TileData],
]


def check_channels(source: ImageSource, model: UNet) -> None:
    """Fail with a one-line message if the image's channels do not fit the model."""
    if source.channels != model.config.in_channels:
        raise BiounetError(
            f"{source.name}: {source.channels} channel(s) (axes {source.axes}) but the model "
            f"expects {model.config.in_channels} (axes may be stated wrongly)"
        )


def plan_segmentation(
    source: ImageSource,
    model: UNet,
    tiles: TileOptions | None = None,
    runtime: Runtime | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Plan:
    """Check that `model` fits `source` and choose the tiles: the one place that plans them.

    Parameters
    ----------
    source : ImageSource
    model : UNet
    tiles : TileOptions, optional
        Default: the largest window that fits the memory budget, batch 1, no TTA.
    runtime : Runtime, optional
        Default: the CPU in float32.
    dtype : torch.dtype
        Compute dtype without AMP.

    Raises
    ------
    BiounetError
        Channels that do not fit the model; :class:`ParameterError` for a
        window that is not a valid input size.
    """
    tiles = tiles or TileOptions()
    runtime = runtime or make_runtime("cpu")
    check_channels(source, model)
    try:
        spec = plan_tiles(
            model.config,
            (source.height, source.width),
            window=tiles.window,
            runtime=runtime,
            batch_size=tiles.batch_size,
            memory_bytes=tiles.memory_bytes,
            unit=TILE_UNIT,
        )
    except ValueError as exc:
        raise ParameterError("window", tiles.window, str(exc)) from None
    n_tiles = len(tile_grid((source.height, source.width), spec)) * source.n_planes
    if source.dtype == np.float64 and dtype != torch.float64:
        log.info(f"{source.name}: float64 pixels are computed in float32, the network's precision")
    return Plan(spec, tiles, runtime, n_tiles, dtype)


#: Tiles predicted ahead of the one being written (:func:`stream_probabilities`); 0: none.
#: Off: on the 2-core host of docs/performance.md a look-ahead thread made a 2048^2
#: prediction 0.80x as fast (its forward passes compete with the caller's writing for
#: the same two cores); ``benchmarks/bench_predict.py`` measures both settings.
LOOK_AHEAD = 0


def stream_probabilities(
    source: ImageSource,
    model: UNet,
    plan: Plan,
    transform: Callable[[np.ndarray], np.ndarray],
    bar: TileProgress,
) -> Iterator[TileData]:
    """The tiles' class probabilities computed in this process (a :class:`ProbabilityStream`).

    With :data:`LOOK_AHEAD` above 0, reading and the forward passes run that
    many tiles ahead in a thread (:func:`biounet.inference.ahead.ahead`),
    overlapping the caller's encoding and writing.
    """
    predictor = Predictor(model, plan.runtime, tta=plan.tiles.tta, dtype=plan.dtype)
    read_spec, predict = predictor.windows(plan.spec)
    shape = (source.height, source.width)
    grid = tile_grid(shape, read_spec)
    for plane in range(source.n_planes):

        def read(rows: slice, cols: slice, plane: int = plane) -> np.ndarray:
            return source.read(plane, rows, cols)

        batches = iter_predictions(
            read, shape, predict, read_spec, grid, batch_size=plan.tiles.batch_size
        )
        # the next tiles are read and predicted while the caller encodes and writes
        for tile, out in ahead(batches, LOOK_AHEAD):
            bar.update(out.shape[-2] * out.shape[-1])
            yield plane, tile.rows, tile.cols, transform(out)


def write_labels(
    foreground: Iterator[TileData],
    sink: Sink,
    layout: Layout,
    spec: TileSpec,
    output: OutputOptions,
) -> int:
    """Gather foreground probabilities, label them block by block, write the labels to `sink`.

    Returns the number of objects, summed over planes.
    """
    planes = int(np.prod(layout.plane_shape, dtype=np.int64))
    shape, chunks = (planes, layout.height, layout.width), (1, *spec.tile)
    prob = sink.scratch("probability", shape, chunks, np.float32)
    for plane, rows, cols, p in foreground:
        prob[plane, rows, cols] = p
    labels = sink.scratch("labels", shape, chunks, np.uint32)
    seeds = None
    if output.instances.method in SEEDED:
        seeds = sink.scratch("seeds", shape, chunks, np.uint32)
    tables = label_stack(prob, labels, spec.tile, output.instances, seed_scratch=seeds)
    dtype = label_dtype(tables)
    grid = tile_grid((layout.height, layout.width), spec)
    relabelled = (
        (p, t.rows, t.cols, tables[p][np.asarray(labels[p, t.rows, t.cols])].astype(dtype))
        for p in range(planes)
        for t in grid
    )
    sink.write(relabelled, replace(layout, dtype=np.dtype(dtype)), spec.tile, output.compression)
    return sum(int(t.max()) for t in tables)


def segment_into(
    source: ImageSource,
    model: UNet,
    sink: Sink,
    plan: Plan,
    *,
    output: OutputOptions | None = None,
    progress: Progress = False,
    stream: ProbabilityStream = stream_probabilities,
) -> int | None:
    """Predict `source` with `model` as `plan` says and hand the result to `sink`.

    Parameters
    ----------
    source : ImageSource
        An opened file or a wrapped array (:func:`biounet.io.read.from_array`).
    model : UNet
        Not changed (the predictor works on its own copy).
    sink : Sink
        :class:`~biounet.inference.sinks.ArraySink` or an entered
        :class:`~biounet.inference.sinks.FileSink`.
    plan : Plan
        From :func:`plan_segmentation` for this source and model.
    output : OutputOptions, optional
        Default: instance labels with the model's decision rule.
    progress : bool or callable
        ``True`` for a tqdm bar, or ``progress(done, total)`` after every tile.
    stream : ProbabilityStream
        Where probabilities are computed (default: this process).

    Returns
    -------
    int or None
        The number of objects for labels (summed over planes), else None.
    """
    output = output or model_output(model)
    layout = output_layout(source, model.config.n_classes, output)
    bar = TileProgress(plan.n_tiles, source.path.name if source.path else source.name, progress)
    transform = foreground_probability if output.kind == "labels" else Encoder(output)
    tiles = stream(source, model, plan, transform, bar)
    try:
        if output.kind == "labels":
            return write_labels(tiles, sink, layout, plan.spec, output)
        sink.write(tiles, layout, plan.spec.tile, output.compression)
        return None
    finally:
        if hasattr(tiles, "close"):  # stops a look-ahead thread now, not when collected
            tiles.close()
        bar.close()
        return_freed_memory()  # the feature maps' memory, kept for reuse during the job


@dataclass(frozen=True)
class Encoder:
    """``encode(p, output)`` as a picklable callable (it travels to Dask workers)."""

    output: OutputOptions

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """The encoded tile (h, w[, C]) for class probabilities `p` (K, h, w)."""
        return encode(p, self.output)


def as_source(image: Any, axes: str | None = None) -> ImageSource:
    """`image` as an :class:`ImageSource` (arrays are wrapped with `axes`)."""
    return image if isinstance(image, ImageSource) else from_array(image, axes)


def segment(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    output: OutputOptions | None = None,
    tta: TTA = "none",
    window: int | None = None,
    batch_size: int = 1,
    runtime: Runtime | None = None,
    progress: Progress = False,
) -> np.ndarray:
    """Segment an in-memory image: instance labels (or a mask, or probabilities).

    Parameters
    ----------
    image : array-like or ImageSource
        2D (``YX``) by default; give `axes` for stacks or channels (``"ZYX"``,
        ``"CYX"``, ``"ZCYX"``).
    model : UNet
    axes : str, optional
    output : OutputOptions, optional
        Kind, threshold, instance method, minimum size. Default: instance
        labels with the model's decision rule (:func:`.outputs.model_output`).
    tta : {'none', 'd4', 'rot7'}
    window : int, optional
        Network input per tile (a valid size); default from the memory budget.
    batch_size : int
    runtime : Runtime, optional
    progress : bool or callable
        ``True`` for a tqdm bar, or ``progress(done, total)`` per tile.

    Returns
    -------
    ndarray of shape (*planes, H, W) or (*planes, H, W, K)
        Instance labels (uint16, or uint32 when there are more objects), a
        0/255 mask, or probabilities, with the image's plane axes and without
        its channel axis. Equal to what ``biounet predict`` writes.

    Examples
    --------
    >>> from biounet.network.unet import UNetConfig
    >>> net = UNet(UNetConfig(features=4))
    >>> segment(np.zeros((2, 50, 70), np.uint8), net, axes="ZYX").shape
    (2, 50, 70)
    """
    source = as_source(image, axes)
    tiles = TileOptions(window, batch_size, None, tta)
    plan = plan_segmentation(source, model, tiles, runtime)
    sink = ArraySink()
    segment_into(source, model, sink, plan, output=output, progress=progress)
    return sink.result()


def predict(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    window: int | None = None,
    batch_size: int = 1,
    tta: TTA = "none",
    runtime: Runtime | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Progress = False,
) -> np.ndarray:
    """Class probabilities for every pixel of an in-memory or lazy image.

    Parameters
    ----------
    image : array-like or ImageSource
        ndarray, memmap or zarr array; 2D (``YX``) by default, or give `axes`
        (e.g. ``"ZYX"``, ``"CYX"``, ``"ZCYX"``).
    model : UNet
    axes : str, optional
    window : int, optional
        Network input size per tile (valid size); default from memory budget.
    batch_size : int
        Tiles per forward pass.
    tta : {'none', 'd4', 'rot7'}
    runtime : Runtime, optional
    dtype : torch.dtype
    progress : bool or callable
        ``True`` for a tqdm bar, or ``progress(done, total)`` called after
        every tile (see :mod:`biounet.inference.progress`).

    Returns
    -------
    ndarray of shape (P, K, H, W)
        One probability map per plane and class (the same tiles as :func:`segment`).

    Examples
    --------
    >>> from biounet.network.unet import UNetConfig
    >>> net = UNet(UNetConfig(features=4))
    >>> predict(np.zeros((50, 70), np.uint8), net).shape
    (1, 2, 50, 70)
    """
    source = as_source(image, axes)
    tiles = TileOptions(window, batch_size, None, tta)
    plan = plan_segmentation(source, model, tiles, runtime, dtype=dtype)
    out = None
    bar = TileProgress(plan.n_tiles, source.name, progress)
    try:
        for plane, rows, cols, p in stream_probabilities(source, model, plan, np.asarray, bar):
            if out is None:
                out = np.empty((source.n_planes, p.shape[0], source.height, source.width), p.dtype)
            out[plane, :, rows, cols] = p
    finally:
        bar.close()
    assert out is not None
    return out
