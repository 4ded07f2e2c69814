"""The one exception type that reaches users as a one-line message."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


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


class OutOfMemory(BiounetError):
    """The host (or the GPU) ran out of memory while working on a file.

    The message names the file (``"<file>: out of memory"``); the command line
    adds what to try, naming only options the command has.
    """

    def __init__(self, path: str, note: str = "") -> None:
        super().__init__(f"{path}: out of memory{note}")
        self.path, self.note = path, note


#: Phrases of torch's RuntimeError when an allocation fails (CUDA, the CPU allocator).
_OOM_PHRASES = ("out of memory", "can't allocate memory", "defaultcpuallocator")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` reports an allocation failure: MemoryError, or torch's RuntimeError.

    Examples
    --------
    >>> is_out_of_memory(MemoryError()), is_out_of_memory(RuntimeError("CUDA out of memory."))
    (True, True)
    >>> is_out_of_memory(RuntimeError("size mismatch"))
    False
    """
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _OOM_PHRASES)
    return False


@contextlib.contextmanager
def working_on(path: str | os.PathLike) -> Iterator[None]:
    """Turn an allocation failure inside the block into :class:`OutOfMemory` naming `path`.

    Examples
    --------
    >>> with working_on("big.tif"):
    ...     raise MemoryError
    Traceback (most recent call last):
    ...
    biounet.errors.OutOfMemory: big.tif: out of memory
    """
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise OutOfMemory(str(path)) from None
