"""``biounet predict``: segment TIFFs of any size with overlap-tile prediction."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from biounet.errors import BiounetError

TIFF_SUFFIXES = (".tif", ".tiff")


def _inputs(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
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


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _targets(files: list[Path], out: Path, kind: str, fmt: str) -> list[Path]:
    """One output path per input: OUT itself, or OUT/<stem>_<kind>.<ext> for several."""
    if len(files) == 1 and not out.is_dir():
        return [out]
    if out.exists() and not out.is_dir():
        raise BiounetError(f"{out}: several inputs need an output folder, not a file")
    out.mkdir(parents=True, exist_ok=True)
    ext = ".zarr" if fmt == "zarr" else ".tif"
    targets = [out / f"{_stem(f)}_{kind}{ext}" for f in files]
    if len(set(targets)) != len(targets):
        raise BiounetError(f"{out}: two inputs have the same name; predict them separately")
    return targets


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file (.tif, or .zarr for OME-Zarr); a folder for several inputs.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="Checkpoint (.pt). Default: the bundled ISBI 2012 model.",
)
@click.option(
    "--output",
    "kind",
    type=click.Choice(["labels", "mask", "probabilities"]),
    default="labels",
    show_default=True,
    help="Instance labels, a 0/255 foreground mask, or class probabilities.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "uint16", "uint8"]),
    default="float32",
    show_default=True,
    help="Probabilities as floats or scaled integers.",
)
@click.option(
    "--threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Foreground is probability > threshold (mask and labels).",
)
@click.option(
    "--instances",
    type=click.Choice(["components", "watershed"]),
    default="components",
    show_default=True,
    help="Connected components, or a watershed from confident seeds.",
)
@click.option(
    "--seed-threshold",
    type=float,
    default=0.9,
    show_default=True,
    help="Watershed seeds: probability > this.",
)
@click.option(
    "--min-size",
    type=int,
    default=0,
    show_default=True,
    help="Remove objects smaller than this many pixels.",
)
@click.option("--connectivity", type=click.Choice(["4", "8"]), default="4", show_default=True)
@click.option(
    "--tta",
    type=click.Choice(["none", "d4", "rot7"]),
    default="none",
    show_default=True,
    help="Test-time averaging: 8 flips/rotations (exact), or 7 rotations by 360/7.",
)
@click.option(
    "--tile-size",
    type=int,
    help="Network input per tile (a valid size, see "
    "'biounet summary'). Default: the largest that fits --memory.",
)
@click.option(
    "--batch-size", type=int, default=1, show_default=True, help="Tiles per forward pass."
)
@click.option(
    "--memory",
    "memory_mib",
    type=int,
    help="Activation memory budget in MiB for the default tile size "
    "[default: 768 on the CPU, half the free memory on CUDA].",
)
@click.option(
    "--axes", help="Axes of the input, e.g. YX, ZYX, CYX, ZCYX (default: from the file's metadata)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="Mixed precision on CUDA only.",
)
@click.option(
    "--compression",
    type=click.Choice(["zlib", "zstd", "lzw", "none"]),
    default="zlib",
    show_default=True,
    help="TIFF compression.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tiff", "zarr"]),
    default="tiff",
    show_default=True,
    help="Output format when -o is a folder.",
)
@click.option(
    "--workers",
    type=int,
    help="Predict with a local Dask cluster of N worker "
    "processes (started and stopped by biounet).",
)
@click.option(
    "--scheduler",
    help="Predict on a running Dask cluster: the scheduler's address "
    "(e.g. tcp://10.0.0.5:8786). Inputs and outputs must be on a shared file system.",
)
@click.option("--preview", is_flag=True, help="Also write an overlay PNG beside each output.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(
    inputs,
    out,
    model_path,
    kind,
    dtype,
    threshold,
    instances,
    seed_threshold,
    min_size,
    connectivity,
    tta,
    tile_size,
    batch_size,
    memory_mib,
    axes,
    device,
    precision,
    compression,
    fmt,
    workers,
    scheduler,
    preview,
    overwrite,
    progress,
) -> None:
    """Segment INPUTS (TIFF files or folders of them) into OUTPUT.

    Each image is cut into overlapping tiles with mirrored borders (the
    paper's overlap-tile strategy), read from disk one tile at a time, and
    the result is written one tile at a time: images of any size work, and
    the output is identical to predicting the whole image at once.

    \b
    Examples:
      biounet predict cells.tif -o cells_labels.tif --preview
      biounet predict stack.tif -o stack_prob.tif --output probabilities --dtype uint8
      biounet predict slides/ -o results/ --device cuda --batch-size 4
      biounet predict slide.tif -o slide.zarr --workers 4
    """
    import logging

    from biounet.device import make_runtime
    from biounet.inference.files import OutputOptions, TileOptions, segment_file
    from biounet.inference.instances import InstanceOptions
    from biounet.network.bundled import default_model_path

    files = _inputs(inputs)
    targets = _targets(files, out, kind, fmt)
    if not overwrite:
        for target in targets:
            if target.exists():
                raise BiounetError(f"{target}: already exists (use --overwrite to replace it)")
    if batch_size < 1:
        raise BiounetError(f"--batch-size {batch_size}: must be at least 1")
    runtime = make_runtime(device, precision)
    model = _load_model(model_path or default_model_path())
    log = logging.getLogger("biounet")
    log.info(
        f"model: {model_path or 'bundled'} ({model.config.features} features, "
        f"{model.config.padding}); device: {runtime.describe()}"
    )
    try:
        output = OutputOptions(
            kind,
            dtype,
            InstanceOptions(
                instances, threshold, seed_threshold, min_size, 1 if connectivity == "4" else 2
            ),
            compression,
        )
    except ValueError as exc:
        raise BiounetError(str(exc)) from None
    memory = memory_mib * 2**20 if memory_mib else None
    tiles = TileOptions(tile_size, batch_size, memory, tta)
    run = partial(segment_file, model=model, runtime=runtime)
    client = cluster = None
    if workers or scheduler:
        from biounet.inference.dask import local_threads, predict_distributed, start_client

        if workers is not None and workers < 1:
            raise BiounetError(f"--workers {workers}: must be at least 1")
        client, cluster = start_client(scheduler, workers)
        if client.dashboard_link:
            log.info(f"Dask dashboard: {client.dashboard_link}")
        run = partial(
            predict_distributed,
            model=model,
            client=client,
            device=device,
            threads=local_threads(workers) if workers else None,
        )
    try:
        for source, target in zip(files, targets, strict=True):
            try:
                summary = run(
                    source,
                    target,
                    tiles=tiles,
                    output=output,
                    axes=axes,
                    overwrite=overwrite,
                    progress=progress,
                )
            except ValueError as exc:  # e.g. an invalid --tile-size
                raise BiounetError(f"{source}: {exc}") from None
            click.echo(summary.line())
            if preview:
                from biounet.viz.overlay import render_overlay

                png = target.with_suffix(".png")
                render_overlay(source, target, png, kind=kind)
                click.echo(f"preview: {png}")
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _load_model(path: Path):
    from biounet.network.unet import UNet

    return UNet.from_checkpoint(path)
