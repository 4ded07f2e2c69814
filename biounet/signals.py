"""SIGTERM as an interruption: a command or a training ends like Ctrl-C and cleans up.

A batch system's pre-emption (SLURM, ``timeout``) sends SIGTERM, whose default
action kills the process on the spot and leaves temporaries behind. Inside
:func:`terminate_as_interrupt` it raises :class:`~biounet.errors.Terminated`
instead, so that every ``finally`` and ``except KeyboardInterrupt`` runs.
:func:`deferred_interrupts` shields a short write (a checkpoint) from both
Ctrl-C and SIGTERM: a signal that arrives inside it is delivered when the write
is complete, so no library's cleanup code runs over a half-written file and
raises an error that hides the interruption. Importable without torch (the
command line uses it).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

from biounet.errors import Terminated


@contextlib.contextmanager
def terminate_as_interrupt(*, quiet_children: bool = False) -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM while the block runs; restore the handler after.

    Parameters
    ----------
    quiet_children : bool
        Also ignore SIGCHLD once SIGTERM arrived. A SIGTERM sent to a whole
        process group kills DataLoader workers too, and torch's SIGCHLD
        handler would then raise over the clean stop (a no-op handler, not
        SIG_DFL: a SIGCHLD already pending would print a warning).

    Outside the main thread signals cannot be handled; the block runs as it is.
    """

    def handler(signum, frame):
        if quiet_children and hasattr(signal, "SIGCHLD"):
            signal.signal(signal.SIGCHLD, lambda *_: None)
        raise Terminated

    with _handlers({signal.SIGTERM: handler}):
        yield


#: The signals :func:`deferred_interrupts` holds back.
DEFERRED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM while the block runs; deliver them after it.

    The handlers in force before the block (e.g. the one of
    :func:`terminate_as_interrupt`) see the signal once the block has
    finished, as if it had arrived then. If the block raises, the signal is
    still delivered after it, and the handler's exception (``Terminated``,
    ``KeyboardInterrupt``) takes the place of the block's.

    Outside the main thread signals cannot be handled; the block runs as it is.
    """
    arrived: list[int] = []

    def hold(signum, frame):
        arrived.append(signum)

    try:
        with _handlers(dict.fromkeys(DEFERRED_SIGNALS, hold)):
            yield
    finally:  # the previous handlers are back in place
        for signum in dict.fromkeys(arrived):  # each signal once, in order of arrival
            signal.raise_signal(signum)


@contextlib.contextmanager
def _handlers(handlers: dict[int, Callable]) -> Iterator[None]:
    """Install `handlers` (signal number -> function) while the block runs; restore after.

    Outside the main thread signals cannot be handled: nothing is installed.
    """
    previous = {}
    try:
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
