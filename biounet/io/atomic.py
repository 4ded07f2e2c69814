"""Write-then-rename, so that an interrupted run never leaves a partial file.

Every file biounet writes (checkpoints, predictions, figures, logs) goes to a
temporary name beside its final path and is renamed when complete. A rename
within one folder is atomic on POSIX file systems, so a reader sees either
the old file or the complete new one, never half of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from biounet.errors import BiounetError


def check_writable(path: str | Path, *, overwrite: bool = False) -> Path:
    """Fail early, with a one-line message, if `path` cannot be written.

    Raises
    ------
    BiounetError
        If `path` exists and `overwrite` is false, or its folder is missing
        or not writable.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise BiounetError(f"{path}: already exists (use --overwrite to replace it)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BiounetError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BiounetError(f"{path}: folder {folder} is not writable")
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` on success.

    The temporary name keeps the suffix of `path` (``out.tif`` is written as
    ``.out.tif.<pid>.partial.tif``) so that writers that look at the suffix
    choose the same format. On an exception the temporary file or folder is
    removed and `path` is left untouched.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_output(folder / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (folder / "a.txt").read_text()
    'done'
    """
    path = check_writable(path, overwrite=overwrite)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
