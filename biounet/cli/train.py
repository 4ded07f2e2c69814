"""``biounet train``: train a U-Net as in the paper, resumable, on CUDA or the CPU."""

from __future__ import annotations

from pathlib import Path

import click

from biounet.cli.parse import FOREGROUND, LABEL_KIND, Command, Number
from biounet.errors import BiounetError
from biounet.limits import (
    MAX_BATCH,
    MAX_FEATURES,
    MAX_INPUT_SIZE,
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_SIGMA,
    MAX_W0,
    max_workers,
)
from biounet.options import FLAVOURS, PADDINGS, PRECISIONS
from biounet.training.schedule import LR_SCHEDULES


@click.command(
    "train",
    cls=Command,
    files=("config_path", "images", "resume"),
    memory_hint="a smaller --input-size or --batch-size, or fewer --workers",
)
@click.option(
    "--images",
    help="Training images: a TIFF stack, an image, or a folder "
    "(Cell Tracking Challenge: the sequence folder, e.g. 01/).",
)
@click.option(
    "--labels",
    help="Matching labels (stack, image or folder); leave out for "
    "the CTC layout (01_GT/SEG is found next to 01/).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    help="Run folder for config.yaml, checkpoints, metrics.jsonl and training.png.",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    help="Continue the run in this folder from its latest checkpoint.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML file with training options (see docs/training.md); command-line "
    "options override it. With --resume: instead of the run's config.yaml.",
)
@click.option("--val-images", help="Held-out validation images.")
@click.option("--val-labels", help="Their labels.")
@click.option(
    "--val-count", type=Number(int, 0), help="Without --val-images: hold out the last N pairs."
)
@click.option(
    "--label-kind",
    type=LABEL_KIND,
    help="binary masks (objects = 4-connected components) or instance labels; auto [default]: "
    "the kind the file states, else instances if it has more than two values.",
)
@click.option(
    "--foreground",
    type=FOREGROUND,
    help="Which value of a binary mask marks objects (ISBI: high, 255 = cell).",
)
@click.option(
    "--features", type=Number(int, 1, MAX_FEATURES), help="Channels of the first level [64]."
)
@click.option("--depth", type=Number(int, 1), help="Poolings [4].")
@click.option("--padding", type=click.Choice(PADDINGS), help="[valid]")
@click.option("--flavour", type=click.Choice(FLAVOURS), help="[paper]")
@click.option(
    "--input-size", type=Number(int, 1, MAX_INPUT_SIZE), help="Input tile per sample [572]."
)
@click.option("--batch-size", type=Number(int, 1, MAX_BATCH), help="Tiles per step [1].")
@click.option(
    "--iterations",
    type=Number(int, 1, MAX_ITERATIONS),
    help="Total steps (also extends a resumed run).",
)
@click.option(
    "--lr",
    type=Number(float, 0, above=True),
    help="SGD learning rate [0.001]; the peak, with a schedule.",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(LR_SCHEDULES),
    help="constant [default], step (/10 from 2/3 of the iterations) or poly (to 0 at the end).",
)
@click.option(
    "--warmup",
    type=Number(int, 0, MAX_ITERATIONS),
    help="Steps of linear learning-rate warm-up [0].",
)
@click.option("--momentum", type=Number(float, 0, 1), help="SGD momentum [0.99].")
@click.option(
    "--ema",
    type=Number(float, 0, 1),
    help="Weight averaging: EMA decay; checkpoints hold the average [0.999; 0: off].",
)
@click.option(
    "--w0", type=Number(float, 0, MAX_W0), help="Border weight of Eq. 2 [10]; 0 switches it off."
)
@click.option(
    "--sigma", type=Number(float, 0, MAX_SIGMA, above=True), help="Border width of Eq. 2 in px [5]."
)
@click.option(
    "--annotated-margin",
    type=Number(float, 0, above=True),
    help="Partially annotated labels (e.g. Cell Tracking Challenge gold truth): background "
    "farther than this many px from every annotated object gets weight 0 [off].",
)
@click.option("--elastic/--no-elastic", default=None, help="Elastic deformation [on].")
@click.option("--val-every", type=Number(int, 1), help="Validate every N steps.")
@click.option("--checkpoint-every", type=Number(int, 1), help="Write latest.pt every N steps.")
@click.option(
    "--seed",
    type=Number(int, 0, MAX_SEED),
    help="Seed of samples, initial weights and dropout [0].",
)
@click.option(
    "--workers",
    type=Number(int, 0, max_workers, why="the CPU cores of this machine"),
    help="DataLoader worker processes [1].",
)
@click.option(
    "--time-limit",
    help="Stop cleanly after this much training in this call (e.g. 45m, 2h, 1h30m, or "
    "seconds), with a checkpoint; continue with --resume.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: bf16 (else fp16) on CUDA; on the CPU bf16 where it has AVX512-BF16 "
    "or AMX (2-3x faster there), else fp32.",
)
@click.option("--overwrite", is_flag=True, help="Start over in a non-empty --out folder.")
@click.option(
    "--accept-changes",
    is_flag=True,
    help="With --resume: continue although the settings differ from those saved in "
    "latest.pt (an edited config.yaml, --config or options); the changes are logged.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(
    images,
    labels,
    out,
    resume,
    config_path,
    val_images,
    val_labels,
    val_count,
    label_kind,
    foreground,
    features,
    depth,
    padding,
    flavour,
    input_size,
    batch_size,
    iterations,
    lr,
    lr_schedule,
    warmup,
    momentum,
    ema,
    w0,
    sigma,
    annotated_margin,
    elastic,
    val_every,
    checkpoint_every,
    seed,
    workers,
    time_limit,
    device,
    precision,
    overwrite,
    accept_changes,
    progress,
) -> None:
    """Train a U-Net on labelled images (Ronneberger et al. 2015, Sec. 3).

    Weighted cross-entropy with the border weight map (Eq. 2), elastic
    deformation, shift, rotation and grey-value augmentation, SGD with
    momentum 0.99, one large tile per step. Writes RUN/config.yaml,
    RUN/latest.pt, RUN/best.pt (lowest validation Rand error),
    RUN/metrics.jsonl and RUN/training.png; an interrupted run continues
    with --resume RUN.

    \b
    Examples:
      biounet train --images train-volume.tif --labels train-labels.tif \\
          --val-count 4 --out runs/isbi --features 16 --iterations 5000
      biounet train --resume runs/isbi --iterations 8000
      torchrun --nproc-per-node 2 -m biounet train --config run.yaml --out runs/ddp
    """
    from biounet.device import make_runtime
    from biounet.training import ddp
    from biounet.training.config import TrainConfig, apply_overrides, load_config
    from biounet.training.run import run_config, run_training, summary_line

    if (out is None) == (resume is None):
        raise BiounetError("give either --out RUN_DIR for a new run or --resume RUN_DIR")
    if resume is not None and overwrite:
        raise BiounetError(
            f"--overwrite: a resumed run continues its record in {resume}; to start over, "
            f"give --out {resume} --overwrite instead of --resume"
        )
    if resume is None and accept_changes:
        raise BiounetError("--accept-changes: only with --resume RUN_DIR")
    ddp.check_launch()
    run_dir = resume or out
    if config_path is not None:
        config = load_config(config_path)
    elif resume is not None:
        config = run_config(resume)
    else:
        config = TrainConfig()
    try:
        config = apply_overrides(
            config,
            top={
                "input_size": input_size,
                "batch_size": batch_size,
                "iterations": iterations,
                "lr": lr,
                "lr_schedule": lr_schedule,
                "warmup": warmup,
                "momentum": momentum,
                "ema": ema,
                "val_every": val_every,
                "checkpoint_every": checkpoint_every,
                "seed": seed,
                "workers": workers,
                "time_limit": time_limit,
            },
            model={"features": features, "depth": depth, "padding": padding, "flavour": flavour},
            data={
                "images": images,
                "labels": labels,
                "val_images": val_images,
                "val_labels": val_labels,
                "val_count": val_count,
                "label_kind": label_kind,
                "foreground": foreground,
            },
            weights={"w0": w0, "sigma": sigma, "annotated_margin": annotated_margin},
            augment={"elastic": elastic},
        )
    except (TypeError, ValueError) as exc:
        raise BiounetError(str(exc)) from None
    runtime = ddp.setup(make_runtime(device, precision, training=True))
    try:
        summary = run_training(
            config,
            run_dir,
            runtime=runtime,
            resume=resume is not None,
            overwrite=overwrite,
            progress=progress,
            accept_changes=accept_changes,
            inputs=(config_path,) if config_path is not None else (),
        )
    finally:
        ddp.teardown()
    if ddp.rank() == 0:
        click.echo(summary_line(summary))
