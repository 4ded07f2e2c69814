"""``biounet augment``: a grid of augmented training tiles, to check settings before a run."""

from __future__ import annotations

import click

from biounet.cli.parse import FOREGROUND, LABEL_KIND, Command, Number, parse_class_weights
from biounet.errors import BiounetError
from biounet.limits import (
    MAX_AUGMENT_TILES,
    MAX_ELASTIC_GRID,
    MAX_ELASTIC_SIGMA,
    MAX_INPUT_SIZE,
    MAX_SEED,
    MAX_SIGMA,
    MAX_W0,
)
from biounet.options import PADDINGS


@click.command(
    "augment",
    cls=Command,
    files=("images", "labels"),
    memory_hint="a smaller --input-size or --n",
)
@click.argument("images", type=click.Path(path_type=str))
@click.argument("labels", type=click.Path(path_type=str), required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="PNG to write.")
@click.option(
    "--n",
    "n",
    type=Number(int, 1, MAX_AUGMENT_TILES),
    default=8,
    show_default=True,
    help="Number of tiles.",
)
@click.option(
    "--seed", type=Number(int, 0, MAX_SEED), default=0, show_default=True, help="Random seed."
)
@click.option(
    "--input-size",
    type=Number(int, 1, MAX_INPUT_SIZE),
    default=572,
    show_default=True,
    help="Input tile, px.",
)
@click.option(
    "--depth", type=Number(int, 1), default=4, show_default=True, help="Poolings of the network."
)
@click.option(
    "--padding",
    type=click.Choice(PADDINGS),
    default="valid",
    show_default=True,
    help="valid: output = input - 184 px (paper); same: output = input.",
)
@click.option(
    "--label-kind",
    type=LABEL_KIND,
    default="auto",
    show_default=True,
    help="auto: the kind the file states, else instances if it has more than two values.",
)
@click.option("--foreground", type=FOREGROUND, default="high", show_default=True)
@click.option("--elastic/--no-elastic", default=True, show_default=True)
@click.option(
    "--elastic-sigma",
    type=Number(float, 0, MAX_ELASTIC_SIGMA),
    default=10.0,
    show_default=True,
    help="px",
)
@click.option(
    "--elastic-grid",
    type=Number(int, 2, MAX_ELASTIC_GRID),
    default=3,
    show_default=True,
    help="Control points.",
)
@click.option(
    "--rotation",
    type=Number(float, 0, 180),
    default=180.0,
    show_default=True,
    help="Max angle, deg.",
)
@click.option("--flip/--no-flip", default=True, show_default=True)
@click.option("--shift/--no-shift", default=True, show_default=True)
@click.option("--gray/--no-gray", default=True, show_default=True, help="Grey-value curves.")
@click.option("--image-order", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--w0", type=Number(float, 0, MAX_W0), default=10.0, show_default=True)
@click.option(
    "--sigma", type=Number(float, 0, MAX_SIGMA, above=True), default=5.0, show_default=True
)
@click.option("--class-weights", default="balanced", show_default=True)
@click.option(
    "--dpi", type=Number(int, 20, 600), default=60, show_default=True, help="Figure resolution."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing figure.")
def command(
    images: str,
    labels: str | None,
    output: str,
    n: int,
    seed: int,
    input_size: int,
    depth: int,
    padding: str,
    label_kind: str,
    foreground: str,
    elastic: bool,
    elastic_sigma: float,
    elastic_grid: int,
    rotation: float,
    flip: bool,
    shift: bool,
    gray: bool,
    image_order: str,
    w0: float,
    sigma: float,
    class_weights: str,
    dpi: int,
    overwrite: bool,
) -> None:
    """Show augmented training tiles of IMAGES/LABELS with their targets and weights.

    IMAGES and LABELS are as for training: two TIFF stacks, two folders, or
    a Cell Tracking Challenge sequence folder (LABELS left out).

    \b
    Example:
      biounet augment train-volume.tif train-labels.tif -o augment.png --n 8
    """
    from biounet.network.shapes import output_size
    from biounet.training.augment import AugmentConfig
    from biounet.training.weight_map import WeightMapConfig
    from biounet.viz.training_inputs import write_augment_grid

    try:
        out_size = output_size(input_size, depth=depth, padding=padding)
    except ValueError as exc:
        raise BiounetError(f"--input-size {input_size}: {exc}") from None
    try:
        augment = AugmentConfig(
            elastic=elastic,
            elastic_sigma=elastic_sigma,
            elastic_grid=elastic_grid,
            rotation=rotation,
            flip=flip,
            shift=shift,
            gray=gray,
            image_order=int(image_order),
        )
        weights = WeightMapConfig(
            w0=w0, sigma=sigma, class_weights=parse_class_weights(class_weights)
        )
    except ValueError as exc:
        raise BiounetError(str(exc)) from None
    click.echo(
        write_augment_grid(
            images,
            labels,
            output,
            input_size=input_size,
            output_size=out_size,
            augment=augment,
            weights=weights,
            n=n,
            seed=seed,
            label_kind=label_kind,
            foreground=foreground,
            dpi=dpi,
            overwrite=overwrite,
        )
    )
