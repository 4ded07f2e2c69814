"""Segment TIFFs of any size into TIFFs or OME-Zarr, streaming from disk to disk.

The files' side of the one prediction core (:mod:`biounet.inference.segmentation`):
inputs are found, outputs checked once, every input opened once and planned
before the first output is computed, then each goes through
:func:`~biounet.inference.segmentation.segment_into` into a
:class:`~biounet.inference.sinks.FileSink`. The input is read one tile window
at a time, the output written one tile at a time, and instance labelling
works block by block, so peak memory depends on the tile size, not on the
image size. The result goes to a temporary name and is renamed when complete.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biounet.device import Runtime
from biounet.errors import BiounetError
from biounet.inference.outputs import model_output
from biounet.inference.progress import Progress
from biounet.inference.segmentation import (
    Plan,
    ProbabilityStream,
    plan_segmentation,
    segment_into,
    stream_probabilities,
)
from biounet.inference.sinks import FileSink
from biounet.io.atomic import check_writable, os_error_message
from biounet.io.boundary import check_outputs
from biounet.io.read import ImageSource, check_finite, is_zarr, open_image
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


def summarize(
    source: ImageSource, output_path: Path, plan: Plan, seconds: float, objects: int | None
) -> PredictSummary:
    """The :class:`PredictSummary` of one prediction of `source`."""
    return PredictSummary(
        Path(source.path or source.name),
        output_path,
        tuple(source.data.shape),
        source.axes,
        source.n_planes,
        plan.n_tiles,
        plan.spec.window,
        seconds,
        objects,
    )


def predict_into_file(
    source: ImageSource,
    target: Path,
    model: UNet,
    plan: Plan,
    *,
    output: OutputOptions,
    overwrite: bool = False,
    inputs: Sequence[Path] = (),
    progress: Progress = False,
    stream: ProbabilityStream = stream_probabilities,
) -> PredictSummary:
    """:func:`.segmentation.segment_into` an opened, planned source into the file `target`."""
    start = time.perf_counter()
    with FileSink(target, overwrite=overwrite, inputs=inputs or [source.path]) as sink:
        objects = segment_into(
            source, model, sink, plan, output=output, progress=progress, stream=stream
        )
    return summarize(source, Path(target), plan, time.perf_counter() - start, objects)


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
        Default: instance labels with the model's decision rule.
    axes : str, optional
        Override the input's axes (e.g. ``"CYX"``).
    overwrite : bool
        Replace an existing output.
    progress : bool or callable
        ``True`` for a progress bar, or ``progress(done, total)`` per tile.

    Returns
    -------
    PredictSummary

    Raises
    ------
    BiounetError
        Bad input (NaN pixels included), an existing output without
        `overwrite`, an unwritable folder, or a model that does not fit the
        input's channels.
    """
    output = output or model_output(model)
    target = check_output(output_path, input_path, overwrite=overwrite)
    with open_image(input_path, axes=axes) as source:
        plan = plan_segmentation(source, model, tiles, runtime)
        check_finite(source)
        return predict_into_file(
            source, target, model, plan, output=output, overwrite=overwrite, progress=progress
        )


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
    """The images named by `paths`: TIFFs and OME-Zarr stores as they are, folders by their TIFFs.

    Raises
    ------
    BiounetError
        A missing path, or a folder without TIFF files.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not is_zarr(path):
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
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_paths(files: list[Path], out: Path, kind: str, fmt: str = "tiff") -> list[Path]:
    """One output path per input: `out` itself, or ``out/<stem>_<kind>.<ext>`` for several.

    A `out` named ``*.zarr`` is one OME-Zarr store (existing or not), never a
    folder of outputs. The folder is not created here (see :func:`predict_files`).

    Raises
    ------
    BiounetError
        Several inputs and `out` a file or store, or two inputs with the same name.
    """
    store = out.suffix.lower() == ".zarr"
    if len(files) == 1 and (store or not out.is_dir()):
        return [out]
    if store or (out.exists() and not out.is_dir()):
        kind_of = "an OME-Zarr store" if store else "a file"
        raise BiounetError(f"{out}: several inputs need an output folder, not {kind_of}")
    targets = [out / f"{image_stem(f)}_{kind}{OUTPUT_FORMATS[fmt]}" for f in files]
    if len(set(targets)) != len(targets):
        raise BiounetError(f"{out}: two inputs have the same name; predict them separately")
    return targets


#: ``preview(input, output, png, kind=..., overwrite=...)``: writes an overlay PNG.
PreviewFn = Callable[..., Path]


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
    preview: PreviewFn | None = None,
    cluster: Any = None,
) -> Iterator[tuple[PredictSummary, Path | None]]:
    """Segment every input file; yield each summary (and preview PNG) as it is done.

    This is ``biounet predict``: inputs are files or folders of TIFFs, `out`
    a file or OME-Zarr store (one input) or a folder (``<stem>_<kind>.tif``
    or ``.zarr``). Every output is checked, and every input opened, checked
    and planned, before the first one is computed; each input is opened once.

    Parameters
    ----------
    inputs : sequence of path
    out : path
    model : UNet
    runtime, tiles, output, axes, overwrite, progress
        As for :func:`segment_file`.
    fmt : {'tiff', 'zarr'}
        Output format when `out` is a folder.
    preview : callable, optional
        Writes an overlay PNG beside each output
        (:func:`biounet.viz.overlay.render_overlay` for ``--preview``).
    cluster : DaskCluster, optional
        Compute the probabilities on this Dask cluster
        (:func:`biounet.inference.dask.connect`) instead of in this process.

    Yields
    ------
    summary : PredictSummary
    preview : Path or None
    """
    output = output or model_output(model)
    files = input_files(inputs)
    out = Path(out)
    check_outputs([out], [*inputs, *files])  # nor an input folder, nor one holding it
    targets = output_paths(files, out, output.kind, fmt)
    folder = None if targets == [out] else out
    check_targets(files, targets, folder, overwrite, preview is not None)
    stream = stream_probabilities if cluster is None else cluster.stream
    with contextlib.ExitStack() as opened:
        sources = [opened.enter_context(open_image(path, axes=axes)) for path in files]
        plans = [plan_segmentation(source, model, tiles, runtime) for source in sources]
        for source in sources:
            check_finite(source)
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BiounetError(os_error_message(exc, folder)) from None
        for done, (source, plan, target) in enumerate(zip(sources, plans, targets, strict=True)):
            try:
                summary = predict_into_file(
                    source, target, model, plan, output=output, overwrite=overwrite,
                    inputs=files, progress=progress, stream=stream,
                )  # fmt: skip
                png = None
                if preview is not None:
                    png = preview(source.path, target, preview_path(target), kind=output.kind,
                                  overwrite=overwrite)  # fmt: skip
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the command line
                finished = f"; the {done} output(s) before it are complete" if done else ""
                raise BiounetError(
                    f"{source.name}: interrupted; {target} was not written{finished}"
                ) from None
            yield summary, png


def preview_path(target: Path) -> Path:
    """The overlay PNG written beside a prediction by ``--preview``."""
    return target.with_suffix(".png")


def check_targets(
    files: list[Path], targets: list[Path], folder: Path | None, overwrite: bool, preview: bool
) -> None:
    """Check every output once, before any work: suffix, not an input, not existing, writable.

    Raises
    ------
    BiounetError
        The first output that must not or cannot be written.
    """
    if folder is not None and not folder.exists():
        check_writable(folder, inputs=files)  # its parent exists and is writable
        for target in targets:
            check_output_suffix(target)  # the folder is new: nothing in it exists
        return
    for target in targets:
        check_output(target, files, overwrite=overwrite)
        if preview:
            check_writable(preview_path(target), overwrite=overwrite, inputs=files)
