"""The ``biounet`` command: a thin click layer over the library.

Each sub-command lives in its own module, parses its options and calls one
library function. :meth:`_Group.invoke` is the one error boundary: every
expected failure is printed as one line, ``Error: <file or option>:
<problem>``, with exit status 1, never a traceback:

- :class:`BiounetError`, the library's message for bad input;
- :class:`OSError` (disk full, read-only file system, permissions, a file
  where a folder is needed), naming the file;
- running out of memory (:class:`MemoryError`, torch's "out of memory"
  RuntimeError), naming the file and what to try with this command's options;
- usage errors (an unknown option, a value of the wrong type or out of its
  range): also one line and exit status 1, not click's usage text and 2;
- Ctrl-C and SIGTERM (which is turned into Ctrl-C while a command runs),
  after the library has removed its unfinished outputs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from biounet import __version__
from biounet.cli.parse import option_message, usage_message
from biounet.errors import BiounetError, OutOfMemory, ParameterError, is_out_of_memory
from biounet.io.atomic import os_error_message
from biounet.signals import terminate_as_interrupt


def one_line(message: str) -> str:
    """The first line of `message` (messages must never spread over several lines).

    Examples
    --------
    >>> one_line("a.tif: bad\\nsecond line")
    'a.tif: bad'
    """
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed"


#: click's "show the help" for a bare ``biounet`` (click 8.2+): left as it is.
_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _memory_message(ctx: click.Context, path: str | None, note: str = "") -> str:
    """``<file>: out of memory; try <this command's options>``."""
    command = ctx.meta.get("biounet.command")
    params = ctx.meta.get("biounet.params", {})
    name = path or (command.input_names(params) if command is not None else "")
    name = name or ctx.invoked_subcommand or "biounet"
    hint = getattr(command, "memory_hint", "")
    return (
        f"{name}: out of memory; "
        + (f"try {hint}" if hint else "close other programs or use a machine with more memory")
        + note
    )


class _Group(click.Group):
    """The error boundary: expected failures become one line and exit status 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:  # noqa: D102
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if _HELP and isinstance(exc, _HELP):
                raise
            raise click.ClickException(usage_message(exc)) from None

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            try:
                with terminate_as_interrupt():
                    return super().invoke(ctx)
            except click.UsageError as exc:
                if _HELP and isinstance(exc, _HELP):
                    raise
                raise click.ClickException(usage_message(exc)) from None
            except OutOfMemory as exc:
                raise click.ClickException(_memory_message(ctx, exc.path, exc.note)) from None
            except ParameterError as exc:  # the library names a parameter; the user typed an option
                raise click.ClickException(one_line(option_message(exc))) from None
            except BiounetError as exc:
                raise click.ClickException(one_line(str(exc))) from None
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                raise click.ClickException(_memory_message(ctx, None)) from None
            except OSError as exc:
                name = ctx.invoked_subcommand or "biounet"
                raise click.ClickException(one_line(os_error_message(exc, name))) from None
            except KeyboardInterrupt:
                name = ctx.invoked_subcommand or "biounet"
                raise click.ClickException(
                    f"{name}: interrupted; unfinished outputs were removed"
                ) from None
        except click.ClickException:
            # an interrupted zarr write leaves tasks pending on zarr's IO loop; the output
            # they belonged to is removed, so asyncio must not report them at exit
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise


def shadowing_folder(cwd: str | Path | None = None) -> Path | None:
    """The folder ``biounet`` in `cwd` if Python started there would import it, not this package.

    Python started in `cwd` (a script beside it, ``python -m``, a notebook)
    looks there first: a clone named ``biounet`` becomes an empty namespace
    package when the installed biounet is found only by an import hook (as
    ``pip install -e .`` installs it), and an other copy of the package wins
    outright (``cannot import name 'segment' from 'biounet' (unknown
    location)``). The ``biounet`` command itself is not affected, so it can
    say so. None when there is no such folder or Python would find this
    package anyway.
    """
    from importlib.machinery import PathFinder

    here = Path.cwd() if cwd is None else Path(cwd)
    folder = here / "biounet"
    if not folder.is_dir():
        return None
    package = Path(__file__).resolve().parents[1]
    rest = [p for p in sys.path if p and Path(p).resolve() != here.resolve()]
    spec = PathFinder.find_spec("biounet", [str(here), *rest])
    if spec is not None and spec.origin and Path(spec.origin).resolve().parent == package:
        return None
    return folder


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
    # tifffile warns about odd files on stderr; biounet reports what matters in one line
    logging.getLogger("tifffile").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


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
    shadow = shadowing_folder()
    if shadow is not None:
        logging.getLogger("biounet").warning(
            f"Warning: {shadow}: Python started in this folder imports this folder as biounet, "
            f"not the installed package ({Path(__file__).resolve().parents[1]}); rename it "
            "(e.g. biounet-src) or run your scripts elsewhere"
        )


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
