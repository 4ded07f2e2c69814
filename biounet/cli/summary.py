"""``biounet summary``: print the architecture for an input size."""

from __future__ import annotations

from pathlib import Path

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
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="Describe this checkpoint's or bioimage.io package's network. "
    "Default: the bundled model (16 features), which predict uses without --model.",
)
@click.option(
    "--paper",
    is_flag=True,
    help="Describe the paper's network (64 features, 31,030,658 parameters) instead.",
)
@click.option(
    "--features",
    type=Number(int, 1, MAX_FEATURES),
    help="Channels of the first level (doubles per level) [default: the model's].",
)
@click.option("--depth", type=Number(int, 1), help="Number of poolings [default: the model's].")
@click.option(
    "--padding",
    type=click.Choice(PADDINGS),
    help="valid: unpadded as in the paper; same: zero-padded [default: the model's].",
)
@click.option(
    "--flavour",
    type=click.Choice(FLAVOURS),
    help="release: the authors' Caffe network (phseg_v5) [default: the model's].",
)
@click.option("--in-channels", type=Number(int, 1), help="[default: the model's]")
@click.option("--classes", "n_classes", type=Number(int, 2), help="[default: the model's]")
def command(
    input_size: int,
    model_path: Path | None,
    paper: bool,
    features: int | None,
    depth: int | None,
    padding: str | None,
    flavour: str | None,
    in_channels: int | None,
    n_classes: int | None,
) -> None:
    """Print feature-map sizes, parameters, halo and valid input sizes.

    Without options it describes the bundled model, the network `biounet
    predict` runs by default; --paper the paper's network, --model a
    checkpoint's. The other options change the described network.

    \b
    Examples:
      biounet summary                      # the bundled model: 16 features
      biounet summary --paper              # the paper's 572 -> 388 network, 64 features
      biounet summary --input-size 700 --features 8
      biounet summary --model runs/isbi/best.pt
    """
    from biounet.network.summary import architecture_table, summary_config

    try:
        config, name = summary_config(
            model_path,
            paper=paper,
            features=features,
            depth=depth,
            padding=padding,
            flavour=flavour,
            in_channels=in_channels,
            n_classes=n_classes,
        )
        click.echo(architecture_table(config, input_size, name))
    except ValueError as exc:
        raise BiounetError(
            f"--input-size {input_size}: {exc}" if "input size" in str(exc) else str(exc)
        ) from None
