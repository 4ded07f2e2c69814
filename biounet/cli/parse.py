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
    if min(*rows, *cols) < 0 or rows[0] >= rows[1] or cols[0] >= cols[1]:
        raise BiounetError(
            f"--crop {text}: need 0 <= ROW0 < ROW1 and 0 <= COL0 < COL1 (an empty region)"
        )
    return slice(*rows), slice(*cols)


class OutOfRange(click.BadParameter):
    """A number outside its option's range; it keeps the value for the one-line message."""

    def __init__(self, message: str, value: object, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.value = value


class Number(click.ParamType):
    """An integer or float option with a range, checked where it is parsed.

    Parameters
    ----------
    kind : {int, float}
    low, high : number or callable, optional
        Inclusive bounds; a callable is asked when a value is parsed (host limits
        such as the CPU cores).
    above : bool
        `low` itself is excluded.
    why : str
        Says where `high` comes from, e.g. ``"the CPU cores of this machine"``.

    Examples
    --------
    >>> Number(int, 1, 4).convert("3", None, None)
    3
    """

    def __init__(self, kind: type, low=None, high=None, *, above: bool = False, why: str = ""):
        self.kind, self.low, self.high, self.above, self.why = kind, low, high, above, why
        self.name = "integer" if kind is int else "number"

    def convert(self, value, param, ctx):  # noqa: D102
        import math

        from biounet.limits import number_text

        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a valid {self.name}", param, ctx)
        low = self.low() if callable(self.low) else self.low
        high = self.high() if callable(self.high) else self.high
        if not math.isfinite(number):
            raise OutOfRange("must be a finite number", number, ctx=ctx, param=param)
        if low is not None and (number <= low if self.above else number < low):
            least = "greater than" if self.above else "at least"
            raise OutOfRange(f"must be {least} {number_text(low)}", number, ctx=ctx, param=param)
        if high is not None and number > high:
            why = f" ({self.why})" if self.why else ""
            raise OutOfRange(
                f"must be at most {number_text(high)}{why}", number, ctx=ctx, param=param
            )
        return number


def usage_message(exc: click.UsageError) -> str:
    """The one line for a usage error: ``<option>: <problem> (see <command> --help)``.

    The convention of every biounet command: usage errors are reported like
    any other bad input, in one line with exit status 1.
    """
    command = exc.ctx.command_path if exc.ctx is not None else "biounet"
    see = f" (see {command} --help)"
    if isinstance(exc, click.BadParameter) and exc.param is not None:
        param = exc.param
        name = param.opts[0] if param.opts else param.human_readable_name
        if isinstance(param, click.Argument):
            name = param.human_readable_name
        if isinstance(exc, click.MissingParameter):
            return f"{name}: missing{see}"
        if isinstance(exc, OutOfRange):
            return f"{name} {exc.value}: {exc.message}"
        return f"{name}: {_sentence(exc.message)}{see}"
    if isinstance(exc, click.NoSuchOption):
        return f"{exc.option_name}: no such option{see}"
    return f"{command}: {_sentence(exc.format_message())}{see}"


def _sentence(text: str) -> str:
    """One line, without click's closing full stop, first letter lower case."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = " ".join(lines).rstrip(".") or "invalid usage"
    return line[:1].lower() + line[1:]


class Command(click.Command):
    """A biounet command: knows its input files and what to try when memory runs out.

    Parameters
    ----------
    files : tuple of str
        The parameters that name the command's input files, for messages
        about a failure that no library function attributed to a file.
    memory_hint : str
        What to try after running out of memory, naming only this command's
        options (``tests/cli`` checks that they exist).
    """

    def __init__(self, *args, files: tuple[str, ...] = (), memory_hint: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.files, self.memory_hint = files, memory_hint

    def invoke(self, ctx: click.Context):  # noqa: D102
        ctx.meta["biounet.command"] = self  # shared with the group's context
        ctx.meta["biounet.params"] = dict(ctx.params)
        return super().invoke(ctx)

    def input_names(self, params: dict) -> str:
        """The input files given to this call, as text ('' if none)."""
        names = []
        for key in self.files:
            value = params.get(key)
            values = value if isinstance(value, tuple | list) else (value,)
            names += [str(v) for v in values if v is not None]
        return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


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
