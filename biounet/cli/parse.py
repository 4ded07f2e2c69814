"""Option types and parsers shared by several commands."""

from __future__ import annotations

import click

from biounet.errors import BiounetError, ParameterError
from biounet.options import FOREGROUNDS, LABEL_KINDS

LABEL_KIND = click.Choice(LABEL_KINDS)
FOREGROUND = click.Choice(FOREGROUNDS)


def parse_class_weights(text: str, option: str = "--class-weights"):
    """'balanced', 'none' or 'BG,FG' -> the WeightMapConfig value."""
    if text in ("balanced", "none"):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) < 0:
        raise BiounetError(
            f"{option} {text}: use 'balanced', 'none' or two weights 'BACKGROUND,OBJECTS'"
        )
    return values


def parse_crop(text: str | None):
    """'R0:R1,C0:C1' -> (slice, slice)."""
    if text is None:
        return None
    try:
        rows, cols = (tuple(int(v) for v in part.split(":")) for part in text.split(","))
        if len(rows) != 2 or len(cols) != 2:
            raise ValueError
    except ValueError:
        raise BiounetError(f"--crop {text}: use ROW0:ROW1,COL0:COL1, e.g. 0:256,0:256") from None
    return slice(*rows), slice(*cols)


#: Library parameters whose option is not ``--`` + the name with dashes, and how the
#: option states the value: (option, value as typed from the library's value).
OPTIONS = {
    "memory_bytes": ("--memory", lambda v: f"{v / 2**20:g}"),
    "method": ("--instances", str),
    "kind": ("--kind", str),
}


def option_message(exc: ParameterError) -> str:
    """The library's :class:`ParameterError` told in terms of the command's option.

    Examples
    --------
    >>> option_message(ParameterError("batch_size", 0, "must be at least 1"))
    '--batch-size 0: must be at least 1'
    >>> option_message(ParameterError("memory_bytes", 0, "must be at least 1 MiB"))
    '--memory 0: must be at least 1 MiB'
    """
    default = ("--" + exc.parameter.replace("_", "-"), str)
    option, shown = OPTIONS.get(exc.parameter, default)
    return f"{option} {shown(exc.value)}: {exc.problem}"
