"""The boundary between a command's inputs and its outputs: no output overlaps an input.

Every command resolves its inputs (real paths: links followed, ``..``
removed) before it writes anything, and refuses, ``--overwrite`` or not, an
output that

- **is** one of its inputs (also through a link or a second hard link), or
- **holds** one (a folder output with an input inside it);

and where writing inside an input folder would change what the command
reads (a model package it exports, the data folder of a training run), an
output that

- **lies inside** an input folder (``inside=True``).

:func:`check_outputs` is called by :func:`biounet.io.atomic.check_writable`,
so every output written through :func:`biounet.io.atomic.atomic_output`
passes it; commands whose outputs are folders of several files (a training
run) call it themselves. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from biounet.errors import BiounetError


def real(path: str | Path) -> Path:
    """`path` with links followed and ``..`` resolved (also for a path that does not exist).

    Examples
    --------
    >>> real("/a/b/../c") == Path(os.path.realpath("/a/c"))
    True
    """
    return Path(os.path.realpath(os.fspath(path)))


def overlap(output: str | Path, source: str | Path) -> str | None:
    """How `output` overlaps the input `source`: ``'is'``, ``'holds'``, ``'inside'`` or None.

    Examples
    --------
    >>> overlap("/data/a.tif", "/data/a.tif"), overlap("/data", "/data/a.tif")
    ('is', 'holds')
    >>> overlap("/pkg/x.zip", "/pkg"), overlap("/data/b.tif", "/data/a.tif")
    ('inside', None)
    """
    with contextlib.suppress(OSError):
        if os.path.samefile(output, source):
            return "is"
    out, src = real(output), real(source)
    if out == src:
        return "is"
    if out in src.parents:
        return "holds"
    if src in out.parents:
        return "inside"
    return None


def check_outputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path | None], *, inside: bool = False
) -> None:
    """Refuse any output that is or holds one of `inputs` (with `inside`: or lies inside one).

    Raises
    ------
    BiounetError
        ``"<output>: is an input of this command (<input>); choose another output"``,
        or ``holds`` / ``is inside`` for a folder.
    """
    sources = [p for p in inputs if p is not None and str(p) != ""]
    for output in outputs:
        for source in sources:
            kind = overlap(output, source)
            if kind == "is":
                raise BiounetError(
                    f"{output}: is an input of this command ({source}); choose another output"
                )
            if kind == "holds":
                raise BiounetError(
                    f"{output}: holds an input of this command ({source}); choose another output"
                )
            if kind == "inside" and inside:
                raise BiounetError(
                    f"{output}: is inside {source}, an input of this command; choose another output"
                )
