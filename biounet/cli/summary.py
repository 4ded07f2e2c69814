"""``biounet summary``: print the architecture for an input size."""

from __future__ import annotations

import click

from biounet.cli.parse import Command, Number
from biounet.errors import BiounetError
from biounet.limits import MAX_FEATURES, MAX_INPUT_SIZE
from biounet.options import FLAVOURS, PADDINGS


@click.command("summary", cls=Command)
@click.option(
    "--input-size",
    type=Number(int, 1, MAX_INPUT_SIZE),
    default=572,
    show_default=True,
    help="Square input tile size in pixels.",
)
@click.option(
    "--features",
    type=Number(int, 1, MAX_FEATURES),
    default=64,
    show_default=True,
    help="Channels of the first level (doubles per level).",
)
@click.option(
    "--depth", type=Number(int, 1), default=4, show_default=True, help="Number of poolings."
)
@click.option(
    "--padding",
    type=click.Choice(PADDINGS),
    default="valid",
    show_default=True,
    help="valid: unpadded as in the paper; same: zero-padded.",
)
@click.option(
    "--flavour",
    type=click.Choice(FLAVOURS),
    default="paper",
    show_default=True,
    help="release: the authors' Caffe network (phseg_v5).",
)
@click.option("--in-channels", type=Number(int, 1), default=1, show_default=True)
@click.option("--classes", "n_classes", type=Number(int, 2), default=2, show_default=True)
def command(
    input_size: int,
    features: int,
    depth: int,
    padding: str,
    flavour: str,
    in_channels: int,
    n_classes: int,
) -> None:
    """Print feature-map sizes, parameters, halo and valid input sizes.

    \b
    Example:
      biounet summary                      # the paper's 572 -> 388 network
      biounet summary --input-size 700 --features 16
    """
    from biounet.network.summary import architecture_table
    from biounet.network.unet import UNetConfig

    try:
        config = UNetConfig(
            in_channels=in_channels,
            n_classes=n_classes,
            features=features,
            depth=depth,
            padding=padding,
            flavour=flavour,
        )
        click.echo(architecture_table(config, input_size))
    except ValueError as exc:
        raise BiounetError(
            f"--input-size {input_size}: {exc}" if "input size" in str(exc) else str(exc)
        ) from None
