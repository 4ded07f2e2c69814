"""SIGTERM as an interruption: a command or a training ends like Ctrl-C and cleans up.

A batch system's pre-emption (SLURM, ``timeout``) sends SIGTERM, whose default
action kills the process on the spot and leaves temporaries behind. Inside
:func:`terminate_as_interrupt` it raises :class:`~biounet.errors.Terminated`
instead, so that every ``finally`` and ``except KeyboardInterrupt`` runs.
Importable without torch (the command line uses it).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

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

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
