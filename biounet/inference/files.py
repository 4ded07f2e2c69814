"""Segment a TIFF of any size into a TIFF or OME-Zarr, streaming from disk to disk.

The input is read one tile window at a time, the network's output is written
one tile at a time, and instance labelling works block by block, so peak
memory depends on the tile size, not on the image size. The result goes to
a temporary name and is renamed when complete.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from biounet.io.atomic import atomic_output, check_writable
from biounet.device import Runtime
from biounet.errors import BiounetError
from biounet.inference.instances import InstanceOptions, label_stack
from biounet.io.read import ImageSource, open_image
from biounet.network.unet import UNet
from biounet.inference.predictor import Predictor, plan_tiles
from biounet.inference.tiling import TileSpec, iter_predictions, tile_grid
from biounet.inference.tta import TTA
from biounet.io.write import COMPRESSIONS, Layout, create_zarr, write_tiff

#: TIFF tiles are multiples of 16 pixels.
TIFF_TILE_UNIT = 16

OutputKind = Literal["probabilities", "mask", "labels"]
OUTPUT_KINDS = ("probabilities", "mask", "labels")
PROBABILITY_DTYPES = ("float32", "uint16", "uint8")


@dataclass(frozen=True)
class TileOptions:
    """How the image is cut into tiles.

    Parameters
    ----------
    window : int, optional
        Network input size per tile (a valid size); default: the largest that
        fits `memory_bytes`.
    batch_size : int
        Tiles per forward pass.
    memory_bytes : int, optional
        Activation-memory budget for the default window.
    tta : {'none', 'd4', 'rot7'}
        Test-time averaging.
    """

    window: int | None = None
    batch_size: int = 1
    memory_bytes: int | None = None
    tta: TTA = "none"


@dataclass(frozen=True)
class OutputOptions:
    """What is written.

    Parameters
    ----------
    kind : {'probabilities', 'mask', 'labels'}
        ``probabilities``: the foreground probability (two classes) or all
        class probabilities (more classes, as a trailing sample axis).
        ``mask``: 0/255 foreground mask (two classes) or the class index.
        ``labels``: instance labels (see :mod:`biounet.inference.instances`).
    dtype : {'float32', 'uint16', 'uint8'}
        Probabilities as floats or scaled to the integer range.
    instances : InstanceOptions
        Threshold (also used for ``mask``), method and minimum size.
    compression : {'none', 'zlib', 'zstd', 'lzw'}
        TIFF compression (OME-Zarr uses its default codec).
    """

    kind: OutputKind = "labels"
    dtype: str = "float32"
    instances: InstanceOptions = field(default_factory=InstanceOptions)
    compression: str = "zlib"

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"output kind must be one of {OUTPUT_KINDS}, got {self.kind!r}")
        if self.dtype not in PROBABILITY_DTYPES:
            raise ValueError(f"dtype must be one of {PROBABILITY_DTYPES}, got {self.dtype!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}")


@dataclass(frozen=True)
class PredictSummary:
    """What one call of :func:`segment_file` did."""

    input: Path
    output: Path
    shape: tuple[int, ...]
    axes: str
    planes: int
    tiles: int
    window: tuple[int, int]
    seconds: float
    objects: int | None = None

    @property
    def megapixels_per_second(self) -> float:
        """Input megapixels (all planes) per second of wall time."""
        pixels = self.planes * self.shape[self.axes.index("Y")] * self.shape[self.axes.index("X")]
        return pixels / 1e6 / max(self.seconds, 1e-9)

    def line(self) -> str:
        """One-line summary for the command line."""
        dims = "x".join(str(n) for n in self.shape)
        extra = f", {self.objects:,} objects" if self.objects is not None else ""
        return (
            f"{self.input.name}: {dims} ({self.axes}), {self.tiles} "
            f"{'tile' if self.tiles == 1 else 'tiles'} of "
            f"{self.window[0]}x{self.window[1]} in {self.seconds:.1f} s "
            f"({self.megapixels_per_second:.2f} MP/s) -> {self.output}{extra}"
        )


def _foreground(p: np.ndarray) -> np.ndarray:
    """Foreground probability (h, w) from class probabilities (K, h, w)."""
    return p[1] if p.shape[0] == 2 else 1.0 - p[0]


def _encode(p: np.ndarray, options: OutputOptions) -> np.ndarray:
    """Turn class probabilities (K, h, w) into an output tile (h, w[, C])."""
    if options.kind == "mask":
        if p.shape[0] == 2:
            return np.where(p[1] > options.instances.threshold, 255, 0).astype(np.uint8)
        return np.argmax(p, axis=0).astype(np.uint8)
    values = p[1] if p.shape[0] == 2 else np.moveaxis(p, 0, -1)
    if options.dtype == "float32":
        return values.astype(np.float32)
    scale = np.iinfo(options.dtype).max
    return np.round(values * scale).astype(options.dtype)


class _Progress:
    """A tqdm bar over tiles showing megapixels per second."""

    def __init__(self, total: int, name: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            unit="tile",
            desc=name,
            disable=not enabled,
            leave=False,
            dynamic_ncols=True,
        )
        self.pixels = 0
        self.start = time.perf_counter()

    def update(self, pixels: int) -> None:
        self.pixels += pixels
        rate = self.pixels / 1e6 / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{rate:.2f} MP/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _stream(
    source: ImageSource,
    predictor: Predictor,
    spec: TileSpec,
    batch_size: int,
    progress: _Progress,
) -> Iterator[tuple[int, slice, slice, np.ndarray]]:
    """Class probabilities tile by tile, plane by plane, in file order."""
    read_spec = predictor.read_spec(spec)
    shape = (source.height, source.width)
    tiles = tile_grid(shape, read_spec)
    for plane in range(source.n_planes):

        def read(rows: slice, cols: slice, plane: int = plane) -> np.ndarray:
            return source.read(plane, rows, cols)

        for tile, out in iter_predictions(
            read, shape, predictor, read_spec, tiles, batch_size=batch_size
        ):
            progress.update(out.shape[-2] * out.shape[-1])
            yield plane, tile.rows, tile.cols, out


def check_channels(source: ImageSource, model: UNet) -> None:
    """Fail with a one-line message if the image's channels do not fit the model."""
    if source.channels != model.config.in_channels:
        raise BiounetError(
            f"{source.name}: {source.channels} channel(s) (axes {source.axes}) but the model "
            f"expects {model.config.in_channels}; use --axes if the axes are wrong"
        )


def file_tiles(
    source: ImageSource, model: UNet, tiles: TileOptions, runtime: Runtime | None = None
) -> TileSpec:
    """Tile geometry for a file: as :func:`biounet.inference.predictor.plan_tiles`, TIFF-tile aligned."""
    return plan_tiles(
        model.config,
        (source.height, source.width),
        window=tiles.window,
        runtime=runtime,
        batch_size=tiles.batch_size,
        memory_bytes=tiles.memory_bytes,
        unit=TIFF_TILE_UNIT,
    )


def output_layout(source: ImageSource, n_classes: int, output: OutputOptions) -> Layout:
    """Layout of the written result: one channel, or all K class probabilities."""
    channels = 1 if output.kind != "probabilities" or n_classes == 2 else n_classes
    dtype = np.uint8 if output.kind == "mask" else np.dtype(output.dtype)
    if output.kind == "labels":
        dtype = np.dtype(np.uint32)  # narrowed to uint16 when the labels fit
    return _layout(source, channels, dtype)


def _layout(source: ImageSource, channels: int, dtype: np.dtype) -> Layout:
    return Layout(
        source.plane_shape,
        source.plane_axes,
        source.height,
        source.width,
        channels,
        np.dtype(dtype),
        source.pixel_size,
    )


def _zarr_key(layout: Layout, plane: int, rows: slice, cols: slice) -> tuple:
    index = np.unravel_index(plane, layout.plane_shape) if layout.plane_shape else ()
    lead = tuple(int(i) for i in index)
    return (*lead, slice(None), rows, cols) if layout.channels > 1 else (*lead, rows, cols)


def _write(
    path: Path,
    tiles: Iterator[tuple[int, slice, slice, np.ndarray]],
    layout: Layout,
    spec: TileSpec,
    compression: str,
) -> None:
    """Write (plane, rows, cols, tile) items to a TIFF or, for ``*.zarr``, an OME-Zarr."""
    if path.suffix.lower() == ".zarr":
        array = create_zarr(path, layout, chunks=spec.tile)
        for plane, rows, cols, data in tiles:
            array[_zarr_key(layout, plane, rows, cols)] = (
                np.moveaxis(data, -1, 0) if layout.channels > 1 else data
            )
        return
    write_tiff(path, (data for *_, data in tiles), layout, tile=spec.tile, compression=compression)


def segment_file(
    input_path: str | Path,
    output_path: str | Path,
    model: UNet,
    *,
    runtime: Runtime | None = None,
    tiles: TileOptions | None = None,
    output: OutputOptions | None = None,
    axes: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> PredictSummary:
    """Segment one TIFF into a tiled OME-TIFF (or an OME-Zarr for ``*.zarr``).

    Parameters
    ----------
    input_path : str or Path
        2D image, stack or multichannel TIFF (see :func:`biounet.io.read.open_image`).
    output_path : str or Path
        Destination; written under a temporary name and renamed when complete.
    model : UNet
    runtime : Runtime, optional
    tiles : TileOptions, optional
    output : OutputOptions, optional
    axes : str, optional
        Override the input's axes (e.g. ``"CYX"``).
    overwrite : bool
        Replace an existing output.
    progress : bool
        Show a progress bar.

    Returns
    -------
    PredictSummary

    Raises
    ------
    BiounetError
        Bad input, an existing output without `overwrite`, an unwritable
        folder, or a model that does not fit the input's channels.
    """
    tiles = tiles or TileOptions()
    output = output or OutputOptions()
    output_path = check_writable(output_path, overwrite=overwrite)
    start = time.perf_counter()
    with open_image(input_path, axes=axes) as source:
        check_channels(source, model)
        predictor = Predictor(model, runtime, tta=tiles.tta)
        spec = file_tiles(source, model, tiles, predictor.runtime)
        n_tiles = len(tile_grid((source.height, source.width), spec)) * source.n_planes
        bar = _Progress(n_tiles, Path(input_path).name, progress)
        stream = _stream(source, predictor, spec, tiles.batch_size, bar)
        objects = None
        try:
            with atomic_output(output_path, overwrite=overwrite) as tmp:
                if output.kind == "labels":
                    objects = _write_labels(tmp, stream, source, spec, output)
                else:
                    encoded = ((p, r, c, _encode(o, output)) for p, r, c, o in stream)
                    layout = output_layout(source, model.config.n_classes, output)
                    _write(tmp, encoded, layout, spec, output.compression)
        finally:
            bar.close()
        shape, src_axes, planes = tuple(source.data.shape), source.axes, source.n_planes
    return PredictSummary(
        Path(input_path),
        output_path,
        shape,
        src_axes,
        planes,
        n_tiles,
        spec.window,
        time.perf_counter() - start,
        objects,
    )


def _scratch_array(
    folder: Path, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: type
) -> Any:
    import zarr

    return zarr.open_array(str(folder / name), mode="w", shape=shape, chunks=chunks, dtype=dtype)


def label_store(
    tmp: Path, prob: Any, layout: Layout, spec: TileSpec, output: OutputOptions, scratch: Path
) -> int:
    """Label a (P, H, W) foreground-probability store block by block; write the labels.

    Returns the number of objects (summed over planes).
    """
    shape, chunks = prob.shape, (1, *spec.tile)
    labels = _scratch_array(scratch, "l.zarr", shape, chunks, np.uint32)
    seeds = None
    if output.instances.method == "watershed":
        seeds = _scratch_array(scratch, "s.zarr", shape, chunks, np.uint32)
    tables = label_stack(prob, labels, spec.tile, output.instances, seed_scratch=seeds)
    dtype = np.uint16 if max(int(t.max()) for t in tables) < 2**16 else np.uint32
    grid = tile_grid((layout.height, layout.width), spec)
    relabelled = (
        (p, t.rows, t.cols, tables[p][labels[p, t.rows, t.cols]].astype(dtype))
        for p in range(shape[0])
        for t in grid
    )
    _write(
        tmp,
        relabelled,
        replace(layout, channels=1, dtype=np.dtype(dtype)),
        spec,
        output.compression,
    )
    return sum(int(t.max()) for t in tables)


def _write_labels(
    tmp: Path, stream: Iterator, source: ImageSource, spec: TileSpec, output: OutputOptions
) -> int:
    """Probabilities to a scratch store, label block by block, write relabelled tiles."""
    scratch = Path(tempfile.mkdtemp(prefix=".biounet-scratch-", dir=tmp.parent))
    try:
        shape = (source.n_planes, source.height, source.width)
        prob = _scratch_array(scratch, "p.zarr", shape, (1, *spec.tile), np.float32)
        for plane, rows, cols, p in stream:
            prob[plane, rows, cols] = _foreground(p)
        return label_store(tmp, prob, _layout(source, 1, np.uint32), spec, output, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
