"""``biounet evaluate``: ISBI 2012 and Cell Tracking Challenge metrics of a prediction."""

from __future__ import annotations

import click

from biounet.cli.parse import Command
from biounet.evaluation.table import INSTANCE_METRICS, ISBI_METRICS, METRICS, metrics_help

PREDICTION_KINDS = ("auto", "probabilities", "labels")


@click.command(
    "evaluate",
    cls=Command,
    files=("prediction", "ground_truth"),
    memory_hint="fewer --metrics, or smaller images",
)
@click.argument("prediction", type=click.Path(dir_okay=False))
@click.argument("ground_truth", type=click.Path(dir_okay=False))
@click.option(
    "--metrics",
    default=None,
    metavar="LIST",
    help=f"Comma-separated, from {','.join(m.name for m in METRICS)} "
    f"[default: {','.join(ISBI_METRICS)} for a binary ground truth, "
    f"{','.join(INSTANCE_METRICS)} for instance labels]. " + metrics_help(),
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the results (one number per metric plus per-threshold values) here.",
)
@click.option(
    "--kind",
    type=click.Choice(PREDICTION_KINDS),
    default="auto",
    show_default=True,
    help="auto: float = probability map, integer = label image. probabilities with an "
    "integer file divides by the type's maximum (uint8 255 -> 1.0).",
)
@click.option(
    "--invert",
    is_flag=True,
    help="Score 1 - p: for a membrane-probability map (high = membrane).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
def command(
    prediction: str,
    ground_truth: str,
    metrics: str | None,
    json_path: str | None,
    kind: str,
    invert: bool,
    overwrite: bool,
) -> None:
    """Score PREDICTION against GROUND_TRUTH (TIFF images or Z-stacks).

    Polarity: a probability map must be in [0, 1] with HIGH = CELL (the ISBI
    convention: cell where p > threshold). A membrane-probability map must be
    inverted: pass --invert. Probability maps are scored at the thresholds
    0.0, 0.1, ..., 1.0 (warping: 0.0, ..., 0.9) and the best value is
    reported; integer label images (0 = boundary) are scored as they are.

    The ground truth is a binary mask, cells > 0 (e.g. 255) and membranes 0,
    for the ISBI metrics (pixel error, Rand error, warping error, V_rand,
    V_info), or instance labels (more than two values, or a file that states
    it, such as the labels of biounet predict), which are scored by default
    with seg (the Cell Tracking Challenge SEG measure) and ap (average
    precision at IoU 0.5 to 0.9). Every slice of a stack is scored in 2-D.

    \b
    Example:
      biounet evaluate cells-prob.tif train-labels.tif --json scores.json
      biounet evaluate membrane-prob.tif train-labels.tif --invert
      biounet evaluate labels.tif gt-instances.tif
    """
    from biounet.evaluation.files import evaluate_files, format_table, parse_metrics

    result = evaluate_files(
        prediction,
        ground_truth,
        metrics=parse_metrics(metrics),
        kind=kind,
        invert=invert,
        json_path=json_path,
        overwrite=overwrite,
    )
    click.echo(format_table(result))
    if json_path:
        click.echo(f"wrote {json_path}")
