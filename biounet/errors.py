"""The one exception type that reaches users as a one-line message."""

from __future__ import annotations


class BiounetError(Exception):
    """An error caused by the user's input, reported without a traceback.

    The message is a single line that names the file (or option) and the
    problem, e.g. ``"scan.tif: not a TIFF file"``. The command-line layer
    prints it as ``Error: <message>`` and exits with status 1.
    """


class ParameterError(BiounetError, ValueError):
    """A library parameter given a value it cannot take.

    The message names the parameter as the library spells it (``window=100:
    ...``); the command line reports the option instead (``--window 100:
    ...``), so the library never speaks in flags.

    Parameters
    ----------
    parameter : str
        The parameter's name in the library (``"batch_size"``).
    value : object
        The value given.
    problem : str
        What is wrong with it, e.g. ``"must be at least 1"``.

    Examples
    --------
    >>> str(ParameterError("batch_size", 0, "must be at least 1"))
    'batch_size=0: must be at least 1'
    """

    def __init__(self, parameter: str, value: object, problem: str) -> None:
        self.parameter, self.value, self.problem = parameter, value, problem
        super().__init__(f"{parameter}={value!r}: {problem}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where it arrives so that a command ends like Ctrl-C and cleans up.

    A subclass, not ``KeyboardInterrupt`` itself: CPython marks a bare
    ``KeyboardInterrupt`` that passes through ``runpy`` (``python -m biounet``)
    and then exits with SIGINT's status (-2) even after the command printed its
    one-line error and chose exit status 1.
    """
