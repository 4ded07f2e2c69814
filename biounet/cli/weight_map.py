"""``biounet weight-map``: the loss weight map of Eq. 2 for a label image or stack."""

from __future__ import annotations

import click

from biounet.cli.parse import (
    FOREGROUND,
    LABEL_KIND,
    Command,
    Number,
    parse_class_weights,
    parse_crop,
)
from biounet.errors import BiounetError
from biounet.limits import MAX_SIGMA, MAX_W0


@click.command(
    "weight-map",
    cls=Command,
    files=("labels", "image"),
    memory_hint="smaller label images, or fewer planes at a time",
)
@click.argument("labels", type=click.Path(path_type=str))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=str), help="TIFF to write."
)
@click.option("--png", "figure", type=click.Path(path_type=str), help="Also write a figure.")
@click.option("--image", type=click.Path(path_type=str), help="Image(s) shown in the figure.")
@click.option(
    "--plane", type=Number(int, 0), default=0, show_default=True, help="Plane the figure shows."
)
@click.option("--crop", help="Region the figure shows, ROW0:ROW1,COL0:COL1.")
@click.option(
    "--w0", type=Number(float, 0, MAX_W0), default=10.0, show_default=True, help="Border weight w0."
)
@click.option(
    "--sigma",
    type=Number(float, 0, MAX_SIGMA, above=True),
    default=5.0,
    show_default=True,
    help="Border width, px.",
)
@click.option(
    "--class-weights",
    default="balanced",
    show_default=True,
    help="balanced (inverse frequency), none, or BACKGROUND,OBJECTS.",
)
@click.option(
    "--separate/--no-separate",
    default=True,
    show_default=True,
    help="Cut 1-px gaps between touching objects.",
)
@click.option(
    "--label-kind",
    type=LABEL_KIND,
    default="auto",
    show_default=True,
    help="auto: the kind the file states, else instances if it has more than two values.",
)
@click.option(
    "--foreground",
    type=FOREGROUND,
    default="high",
    show_default=True,
    help="Binary masks: objects are the high (ISBI) or the low value.",
)
@click.option(
    "--dpi", type=Number(int, 20, 600), default=80, show_default=True, help="Figure resolution."
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def command(
    labels: str,
    output: str,
    figure: str | None,
    image: str | None,
    plane: int,
    crop: str | None,
    w0: float,
    sigma: float,
    class_weights: str,
    separate: bool,
    label_kind: str,
    foreground: str,
    dpi: int,
    overwrite: bool,
) -> None:
    """Write the weight map w = w_c + w0 exp(-(d1 + d2)^2 / 2 sigma^2) of LABELS.

    LABELS is a label image or stack (binary masks or instance labels).
    The class weights are balanced over all its planes.

    \b
    Example:
      biounet weight-map train-labels.tif -o weights.tif \\
          --image train-volume.tif --png weights.png
    """
    from biounet.training.weight_map import WeightMapConfig
    from biounet.viz.training_inputs import write_weight_maps

    try:
        config = WeightMapConfig(
            w0=w0, sigma=sigma, class_weights=parse_class_weights(class_weights), separate=separate
        )
    except ValueError as exc:
        raise BiounetError(str(exc)) from None
    click.echo(
        write_weight_maps(
            labels,
            output,
            config=config,
            label_kind=label_kind,
            foreground=foreground,
            image=image,
            figure=figure,
            plane=plane,
            crop=parse_crop(crop),
            dpi=dpi,
            overwrite=overwrite,
        )
    )
