"""The one exception type that reaches users as a one-line message."""

from __future__ import annotations


class BiounetError(Exception):
    """An error caused by the user's input, reported without a traceback.

    The message is a single line that names the file (or option) and the
    problem, e.g. ``"scan.tif: not a TIFF file"``. The command-line layer
    prints it as ``Error: <message>`` and exits with status 1.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where it arrives so that a command ends like Ctrl-C and cleans up.

    A subclass, not ``KeyboardInterrupt`` itself: CPython marks a bare
    ``KeyboardInterrupt`` that passes through ``runpy`` (``python -m biounet``)
    and then exits with SIGINT's status (-2) even after the command printed its
    one-line error and chose exit status 1.
    """
