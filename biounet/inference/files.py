"""Segment TIFFs of any size into TIFFs or OME-Zarr, streaming from disk to disk.

The input is read one tile window at a time, the network's output is written
one tile at a time, and instance labelling works block by block, so peak
memory depends on the tile size, not on the image size. The result goes to
a temporary name and is renamed when complete.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from biounet.device import Runtime
from biounet.errors import BiounetError
from biounet.inference.instances import label_stack
from biounet.inference.outputs import (
    TILE_UNIT,
    encode,
    foreground_probability,
    label_dtype,
    model_output,
    output_layout,
    plane_layout,
)
from biounet.inference.predictor import Predictor, plan_tiles
from biounet.inference.progress import Progress, TileProgress
from biounet.inference.tiling import TileSpec, iter_predictions, tile_grid
from biounet.io.atomic import atomic_output, check_writable, os_error_message, scratch_folder
from biounet.io.boundary import check_outputs
from biounet.io.read import ImageSource, check_finite, open_image
from biounet.io.write import Layout, write_tiles
from biounet.network.unet import UNet
from biounet.options import OUTPUT_FORMATS, OutputOptions, TileOptions


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


def _stream(
    source: ImageSource,
    predictor: Predictor,
    spec: TileSpec,
    batch_size: int,
    progress: TileProgress,
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
    """Tile geometry for a file: as :func:`.predictor.plan_tiles`, TIFF-tile aligned."""
    return plan_tiles(
        model.config,
        (source.height, source.width),
        window=tiles.window,
        runtime=runtime,
        batch_size=tiles.batch_size,
        memory_bytes=tiles.memory_bytes,
        unit=TILE_UNIT,
    )


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
    progress: Progress = False,
    check_pixels: bool = True,
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
        Default: instance labels with the model's calibrated decision rule.
    axes : str, optional
        Override the input's axes (e.g. ``"CYX"``).
    overwrite : bool
        Replace an existing output.
    progress : bool or callable
        ``True`` for a progress bar, or ``progress(done, total)`` per tile.
    check_pixels : bool
        Refuse a floating-point input with NaN or infinite pixels (a streamed
        pass over the file; :func:`predict_files` has done it already).

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
    output = output or model_output(model)
    output_path = check_output(output_path, input_path, overwrite=overwrite)
    start = time.perf_counter()
    with open_image(input_path, axes=axes) as source:
        check_channels(source, model)
        if check_pixels:
            check_finite(source)
        predictor = Predictor(model, runtime, tta=tiles.tta)
        spec = file_tiles(source, model, tiles, predictor.runtime)
        n_tiles = len(tile_grid((source.height, source.width), spec)) * source.n_planes
        bar = TileProgress(n_tiles, Path(input_path).name, progress)
        stream = _stream(source, predictor, spec, tiles.batch_size, bar)
        objects = None
        try:
            with atomic_output(output_path, overwrite=overwrite, inputs=[input_path]) as tmp:
                if output.kind == "labels":
                    objects = _write_labels(tmp, stream, source, spec, output)
                else:
                    encoded = ((p, r, c, encode(o, output)) for p, r, c, o in stream)
                    layout = output_layout(source, model.config.n_classes, output)
                    write_tiles(tmp, encoded, layout, spec.tile, output.compression)
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
    dtype = label_dtype(tables)
    grid = tile_grid((layout.height, layout.width), spec)
    relabelled = (
        (p, t.rows, t.cols, tables[p][labels[p, t.rows, t.cols]].astype(dtype))
        for p in range(shape[0])
        for t in grid
    )
    write_tiles(
        tmp,
        relabelled,
        replace(layout, channels=1, dtype=np.dtype(dtype)),
        spec.tile,
        output.compression,
    )
    return sum(int(t.max()) for t in tables)


def _write_labels(
    tmp: Path, stream: Iterator, source: ImageSource, spec: TileSpec, output: OutputOptions
) -> int:
    """Probabilities to a scratch store, label block by block, write relabelled tiles."""
    with scratch_folder(tmp) as scratch:
        shape = (source.n_planes, source.height, source.width)
        prob = _scratch_array(scratch, "p.zarr", shape, (1, *spec.tile), np.float32)
        for plane, rows, cols, p in stream:
            prob[plane, rows, cols] = foreground_probability(p)
        layout = plane_layout(source, 1, np.uint32, "labels")
        return label_store(tmp, prob, layout, spec, output, scratch)


#: What ``predict`` accepts as input files (and finds in an input folder).
TIFF_SUFFIXES = (".tif", ".tiff")


def check_output_suffix(path: str | Path) -> Path:
    """`path`, or a one-line error if its suffix is not one biounet writes (.tif, .zarr)."""
    path = Path(path)
    if path.suffix.lower() not in (*TIFF_SUFFIXES, ".zarr"):
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise BiounetError(
            f"{path}: predictions are written as TIFF (.tif) or OME-Zarr (.zarr), "
            f"not {shown}; change the name"
        )
    return path


def check_output(
    path: str | Path, inputs: Path | str | Sequence[str | Path], *, overwrite: bool = False
) -> Path:
    """Check a prediction output before any work: its suffix, its folder, not an input.

    ``.tif``/``.tiff`` is written as a tiled OME-TIFF, ``.zarr`` as an
    OME-Zarr; any other suffix would name a file in a format it is not.

    Raises
    ------
    BiounetError
        A suffix biounet does not write, an input given as output, an
        existing output without `overwrite`, a missing or read-only folder.
    """
    path = check_output_suffix(path)
    sources = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return check_writable(path, overwrite=overwrite, inputs=sources)


def input_files(paths: Sequence[str | Path]) -> list[Path]:
    """The TIFF files named by `paths`: files as they are, folders by their ``*.tif[f]``.

    Raises
    ------
    BiounetError
        A missing path, or a folder without TIFF files.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise BiounetError(f"{path}: folder holds no .tif/.tiff files")
            files += found
        elif not path.exists():
            raise BiounetError(f"{path}: no such file")
        else:
            files.append(path)
    return files


def image_stem(path: Path) -> str:
    """A file name without its image suffix (``.ome.tif`` counts as one).

    Examples
    --------
    >>> image_stem(Path("a/slide.ome.tiff")), image_stem(Path("b.TIF"))
    ('slide', 'b')
    """
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_paths(files: list[Path], out: Path, kind: str, fmt: str = "tiff") -> list[Path]:
    """One output path per input: `out` itself, or ``out/<stem>_<kind>.<ext>`` for several.

    The folder is not created here (see :func:`predict_files`).

    Raises
    ------
    BiounetError
        Several inputs and `out` a file, or two inputs with the same name.
    """
    if len(files) == 1 and not out.is_dir():
        return [out]
    if out.exists() and not out.is_dir():
        raise BiounetError(f"{out}: several inputs need an output folder, not a file")
    targets = [out / f"{image_stem(f)}_{kind}{OUTPUT_FORMATS[fmt]}" for f in files]
    if len(set(targets)) != len(targets):
        raise BiounetError(f"{out}: two inputs have the same name; predict them separately")
    return targets


def predict_files(
    inputs: Sequence[str | Path],
    out: str | Path,
    model: UNet,
    *,
    runtime: Runtime | None = None,
    tiles: TileOptions | None = None,
    output: OutputOptions | None = None,
    axes: str | None = None,
    fmt: str = "tiff",
    overwrite: bool = False,
    progress: Progress = False,
    preview: bool = False,
    cluster: Any = None,
) -> Iterator[tuple[PredictSummary, Path | None]]:
    """Segment every input file; yield each summary (and preview PNG) as it is done.

    This is ``biounet predict``: inputs are files or folders of TIFFs, `out`
    a file (one input) or a folder (``<stem>_<kind>.tif`` or ``.zarr``).
    Every output is checked before the first one is computed.

    Parameters
    ----------
    inputs : sequence of path
    out : path
    model : UNet
    runtime, tiles, output, axes, overwrite, progress
        As for :func:`segment_file`.
    fmt : {'tiff', 'zarr'}
        Output format when `out` is a folder.
    preview : bool
        Also write an overlay PNG beside each output.
    cluster : DaskCluster, optional
        Predict on this Dask cluster (:func:`biounet.inference.dask.connect`)
        instead of in this process.

    Yields
    ------
    summary : PredictSummary
    preview : Path or None
    """
    output = output or model_output(model)
    tiles = tiles or TileOptions()
    files = input_files(inputs)
    out = Path(out)
    check_outputs([out], [*inputs, *files])  # nor an input folder, nor one holding it
    targets = output_paths(files, out, output.kind, fmt)
    folder = None if targets == [out] else out
    _preflight(files, targets, folder, model, tiles, axes, overwrite, preview)
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BiounetError(os_error_message(exc, folder)) from None
    run = segment_file if cluster is None else cluster.segment_file
    extra = {"check_pixels": False} if cluster is None else {}  # done by _preflight
    for done, (source, target) in enumerate(zip(files, targets, strict=True)):
        try:
            summary = run(
                source,
                target,
                model,
                runtime=runtime,
                tiles=tiles,
                output=output,
                axes=axes,
                overwrite=overwrite,
                progress=progress,
                **extra,
            )
            png = None
            if preview:
                from biounet.viz.overlay import render_overlay

                png = render_overlay(
                    source, target, preview_path(target), kind=output.kind, overwrite=overwrite
                )
        except ValueError as exc:  # e.g. an invalid window size
            raise BiounetError(f"{source}: {exc}") from None
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the command line
            finished = f"; the {done} output(s) before it are complete" if done else ""
            raise BiounetError(
                f"{source}: interrupted; {target} was not written{finished}"
            ) from None
        yield summary, png


def preview_path(target: Path) -> Path:
    """The overlay PNG written beside a prediction by ``--preview``."""
    return target.with_suffix(".png")


def _preflight(
    files: list[Path],
    targets: list[Path],
    folder: Path | None,
    model: UNet,
    tiles: TileOptions,
    axes: str | None,
    overwrite: bool,
    preview: bool,
) -> None:
    """Check every input and output before the first output is computed.

    Outputs: suffix, not an input, not existing (without `overwrite`), a
    writable folder. Inputs: readable, header sizes, channels, the window,
    finite pixels (streamed).
    """
    if folder is not None and not folder.exists():
        check_writable(folder, inputs=files)  # its parent exists and is writable
    for target in targets:
        if folder is not None and not folder.exists():
            check_output_suffix(target)  # the folder is new
            continue
        check_output(target, files, overwrite=overwrite)
        if preview:
            check_writable(preview_path(target), overwrite=overwrite, inputs=files)
    for path in files:
        with open_image(path, axes=axes) as source:
            check_channels(source, model)
            try:
                file_tiles(source, model, tiles)
            except ValueError as exc:  # e.g. an invalid window size
                raise BiounetError(f"{path}: {exc}") from None
            check_finite(source)
