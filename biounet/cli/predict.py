"""``biounet predict``: segment TIFFs of any size with overlap-tile prediction."""

from __future__ import annotations

from pathlib import Path

import click

from biounet.cli.parse import Command, Number
from biounet.io.write import COMPRESSIONS
from biounet.limits import MAX_BATCH, MAX_INPUT_SIZE, host_memory_mib, max_workers
from biounet.options import (
    INSTANCE_METHODS,
    OUTPUT_FORMATS,
    OUTPUT_KINDS,
    PRECISIONS,
    PROBABILITY_DTYPES,
    TTA_CHOICES,
    OutputOptions,
    TileOptions,
)

OUTPUT = OutputOptions()


def legacy_kind_options(args: list[str]) -> list[str]:
    """`args` with the old ``--output KIND`` spelled ``--kind KIND`` (and a warning on stderr).

    Before ``--kind``, ``predict --output`` chose the output kind; it is now
    the long form of ``-o``, the output path, as in every other command. A
    value that is an output kind (``labels``, ``mask``, ``probabilities``:
    never a file biounet writes, which needs ``.tif`` or ``.zarr``) is still
    read as the kind.

    Examples
    --------
    >>> legacy_kind_options(["a.tif", "-o", "b.tif", "--output=mask"])
    ['a.tif', '-o', 'b.tif', '--kind', 'mask']
    >>> legacy_kind_options(["a.tif", "--output", "b.tif"])
    ['a.tif', '--output', 'b.tif']
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        value = arg.partition("=")[2] if arg.startswith("--output=") else None
        if arg == "--output" and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        if value is not None and value in OUTPUT_KINDS:
            click.echo(
                f"Warning: --output {value} is deprecated: the output kind is --kind {value} "
                "(--output is the output path, like -o)",
                err=True,
            )
            out += ["--kind", value]
        elif value is not None and arg == "--output":
            out += [arg, value]
        else:
            out.append(arg)
        i += 1
    return out


class PredictCommand(Command):
    """``biounet predict``, which reads the old ``--output KIND`` as ``--kind KIND``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:  # noqa: D102
        return super().parse_args(ctx, legacy_kind_options(args))


@click.command(
    "predict",
    cls=PredictCommand,
    files=("inputs",),
    memory_hint="a smaller --window or --batch-size, or a lower --memory",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output path: a file (.tif, or .zarr for OME-Zarr); a folder for several inputs.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="Checkpoint (.pt) or bioimage.io package exported by biounet (.zip, folder). "
    "Default: the bundled ISBI 2012 model.",
)
@click.option(
    "--kind",
    "kind",
    type=click.Choice(OUTPUT_KINDS),
    default=OUTPUT.kind,
    show_default=True,
    help="What to write: instance labels, a 0/255 foreground mask, or class probabilities.",
)
@click.option(
    "--dtype",
    type=click.Choice(PROBABILITY_DTYPES),
    default=OUTPUT.dtype,
    show_default=True,
    help="Probabilities as floats or scaled integers.",
)
@click.option(
    "--threshold",
    type=Number(float, 0, 1),
    default=None,
    help="Foreground is probability > threshold (mask and labels) [default: the threshold "
    "calibrated in training and stored in the model; 0.5 for older models].",
)
@click.option(
    "--instances",
    type=click.Choice(INSTANCE_METHODS),
    default=None,
    help="Connected components, a watershed from confident seeds (splits cells where the "
    "probability dips between them), or a split at the necks of the cells' shape (distance) "
    "[default: the model's rule; components for older models].",
)
@click.option(
    "--seed-threshold",
    type=Number(float, 0, 1),
    default=None,
    help="Watershed seeds: probability > this [default: the model's rule; 0.9].",
)
@click.option(
    "--split-depth",
    type=Number(float, 0, above=True),
    default=None,
    help="Distance split: a neck splits two cells if it is this many pixels narrower (in "
    "half-width) than the smaller of them [default: the model's rule; 2].",
)
@click.option(
    "--split-radius",
    type=Number(float, 0),
    default=None,
    help="Distance split: a part narrower than twice this many pixels (a protrusion) is not "
    "split off as a cell [default: the model's rule; 0].",
)
@click.option(
    "--min-size",
    type=Number(int, 0),
    default=None,
    help="Remove objects smaller than this many pixels [default: the model's calibrated "
    "size; 0 for older models].",
)
@click.option(
    "--connectivity",
    type=click.Choice(["4", "8"]),
    default=None,
    help="Pixels of one object touch by edges (4) or also corners (8) [default: 4].",
)
@click.option(
    "--tta",
    type=click.Choice(TTA_CHOICES),
    default=TileOptions().tta,
    show_default=True,
    help="Test-time averaging: 8 flips/rotations (exact), or 7 rotations by 360/7.",
)
@click.option(
    "--window",
    "--tile-size",
    "window",
    type=Number(int, 1, MAX_INPUT_SIZE),
    help="Network input per tile, the window read around each output tile (a valid "
    "size, see 'biounet summary'). Default: the largest that fits --memory.",
)
@click.option(
    "--batch-size",
    type=Number(int, 1, MAX_BATCH),
    default=1,
    show_default=True,
    help="Tiles per forward pass.",
)
@click.option(
    "--memory",
    "memory_mib",
    type=Number(int, 1, host_memory_mib, why="the memory of this machine"),
    help="Activation memory budget in MiB for the default tile size "
    "[default: 768 on the CPU, half the free memory on CUDA].",
)
@click.option(
    "--axes", help="Axes of the input, e.g. YX, ZYX, CYX, ZCYX (default: from the file's metadata)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: bf16 (else fp16) on CUDA, fp32 on the CPU; "
    "bf16 on the CPU needs AVX512-BF16 or AMX.",
)
@click.option(
    "--pixel-size",
    help="Pixel size to write into the outputs, for inputs that lack it or state it wrongly: "
    "micrometres (0.5) or with a unit (4nm, 0.5um). Replaces X and Y; a stack's Z spacing is "
    "kept [default: the input's, from its OME, ImageJ or resolution metadata].",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default=OUTPUT.compression,
    show_default=True,
    help="TIFF compression.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(OUTPUT_FORMATS)),
    default="tiff",
    show_default=True,
    help="Output format when -o is a folder.",
)
@click.option(
    "--workers",
    type=Number(int, 1, max_workers, why="the CPU cores of this machine"),
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
    split_depth,
    split_radius,
    min_size,
    connectivity,
    tta,
    window,
    batch_size,
    memory_mib,
    axes,
    device,
    precision,
    pixel_size,
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
      biounet predict stack.tif -o stack_prob.tif --kind probabilities --dtype uint8
      biounet predict scan.tif -o scan.zarr --pixel-size 0.65um
      biounet predict slides/ -o results/ --device cuda --batch-size 4
      biounet predict slide.tif -o slide.zarr --workers 4
    """
    import contextlib
    import logging

    from biounet.device import make_runtime
    from biounet.inference.files import predict_files
    from biounet.inference.outputs import model_output
    from biounet.io.boundary import check_outputs
    from biounet.io.units import parse_pixel_size
    from biounet.network.unet import load_model
    from biounet.viz.overlay import render_overlay

    check_outputs([out], [model_path])  # the images are checked by predict_files
    stated = None if pixel_size is None else parse_pixel_size(pixel_size)
    runtime = make_runtime(device, precision)
    model = load_model(model_path)
    output = model_output(
        model,
        kind,
        dtype=dtype,
        compression=compression,
        pixel_size=stated,
        instances={
            "method": instances,
            "threshold": threshold,
            "seed_threshold": seed_threshold,
            "split_depth": split_depth,
            "split_radius": split_radius,
            "min_size": min_size,
            "connectivity": None if connectivity is None else int(connectivity == "8") + 1,
        },
    )
    memory = None if memory_mib is None else memory_mib * 2**20
    tiles = TileOptions(window, batch_size, memory, tta)
    log = logging.getLogger("biounet")
    log.info(
        f"model: {model_path or 'bundled'} ({model.config.features} features, "
        f"{model.config.padding}; {model.decision.describe(output.instances)}); "
        f"device: {runtime.describe()}"
    )
    with contextlib.ExitStack() as stack:
        cluster = None
        if workers is not None or scheduler:
            from biounet.inference.dask import connect

            cluster = stack.enter_context(connect(scheduler, workers, device))
            if cluster.dashboard_link:
                log.info(f"Dask dashboard: {cluster.dashboard_link}")
        for summary, png in predict_files(
            inputs,
            out,
            model,
            runtime=runtime,
            tiles=tiles,
            output=output,
            axes=axes,
            fmt=fmt,
            overwrite=overwrite,
            progress=progress,
            preview=render_overlay if preview else None,
            cluster=cluster,
        ):
            click.echo(summary.line())
            if png is not None:
                click.echo(f"preview: {png}")
