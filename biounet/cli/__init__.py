"""The ``biounet`` command: a thin click layer over the library.

Each sub-command lives in its own module, parses its options and calls one
library function. Errors caused by the user's input (:class:`BiounetError`)
are printed as one line, ``Error: <file>: <problem>``, with exit status 1.
"""

from __future__ import annotations

import logging
import sys

import click

from biounet import __version__
from biounet.errors import BiounetError


class _Group(click.Group):
    """A group that turns BiounetError into a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except BiounetError as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError:
            raise click.ClickException(
                "out of memory: try a smaller --window or --batch-size"
            ) from None


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("biounet")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="biounet")
@click.option("-v", "--verbose", count=True, help="Print debugging details.")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """biounet: the U-Net of Ronneberger et al. (2015) for microscopy.

    Segment TIFFs of any size with seamless overlap-tile prediction, train on
    small labelled data sets as in the paper, and score results with the
    ISBI 2012 and Cell Tracking Challenge metrics.
    """
    _setup_logging(verbose, quiet)


def _register() -> None:
    from biounet.cli import (
        augment,
        evaluate,
        export_bioimageio,
        predict,
        summary,
        train,
        weight_map,
    )

    for module in (summary, predict, train, weight_map, augment, evaluate, export_bioimageio):
        main.add_command(module.command)


_register()
