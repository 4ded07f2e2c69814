"""``biounet predict``: segment TIFFs of any size with overlap-tile prediction."""

from __future__ import annotations

from pathlib import Path

import click

from biounet.cli.parse import Command, Number
from biounet.inference.instances import InstanceOptions
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


@click.command(
    "predict",
    cls=Command,
    files=("inputs",),
    memory_hint="a smaller --window or --batch-size, or a lower --memory",
)
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
    help="Checkpoint (.pt) or bioimage.io package exported by biounet (.zip, folder). "
    "Default: the bundled ISBI 2012 model.",
)
@click.option(
    "--output",
    "kind",
    type=click.Choice(OUTPUT_KINDS),
    default=OUTPUT.kind,
    show_default=True,
    help="Instance labels, a 0/255 foreground mask, or class probabilities.",
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
    default=OUTPUT.instances.method,
    show_default=True,
    help="Connected components, or a watershed from confident seeds.",
)
@click.option(
    "--seed-threshold",
    type=Number(float, 0, 1),
    default=OUTPUT.instances.seed_threshold,
    show_default=True,
    help="Watershed seeds: probability > this.",
)
@click.option(
    "--min-size",
    type=Number(int, 0),
    default=None,
    help="Remove objects smaller than this many pixels [default: the model's calibrated "
    "size; 0 for older models].",
)
@click.option("--connectivity", type=click.Choice(["4", "8"]), default="4", show_default=True)
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
    min_size,
    connectivity,
    tta,
    window,
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
    import contextlib
    import logging

    from biounet.device import make_runtime
    from biounet.errors import BiounetError
    from biounet.inference.files import predict_files
    from biounet.io.boundary import check_outputs
    from biounet.network.unet import load_model

    check_outputs([out], [model_path])  # the images are checked by predict_files
    runtime = make_runtime(device, precision)
    model = load_model(model_path)
    rule = model.decision
    try:
        output = OutputOptions(
            kind,
            dtype,
            InstanceOptions(
                instances,
                rule.threshold if threshold is None else threshold,
                seed_threshold,
                rule.min_size if min_size is None else min_size,
                1 if connectivity == "4" else 2,
            ),
            compression,
        )
        memory = None if memory_mib is None else memory_mib * 2**20
        tiles = TileOptions(window, batch_size, memory, tta)
    except ValueError as exc:
        raise BiounetError(str(exc)) from None
    log = logging.getLogger("biounet")
    calibrated = f", calibrated for {rule.chosen_by}" if rule.chosen_by else ""
    log.info(
        f"model: {model_path or 'bundled'} ({model.config.features} features, "
        f"{model.config.padding}; threshold {output.instances.threshold:g}, min size "
        f"{output.instances.min_size}{calibrated}); device: {runtime.describe()}"
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
            preview=preview,
            cluster=cluster,
        ):
            click.echo(summary.line())
            if png is not None:
                click.echo(f"preview: {png}")
