"""The one discipline for every file biounet writes: nothing lost, nothing half-written.

Every output (predictions, JSON, figures, weight maps, checkpoints, logs)
goes through :func:`atomic_output`:

- **Checked first.** :func:`check_writable` refuses, before any work, an
  output that is or holds one of the command's inputs, an existing
  output without ``--overwrite``, and a missing or read-only folder.
- **Written under a temporary name** beside the final one, never in
  ``$TMPDIR``: ``.NAME.biounet-tmp-<host>-<pid>-<token>-<check>SUFFIX`` (the
  suffix is kept, so writers that look at it choose the right format), and
  flushed to disk. ``<token>`` is random, known only to the process that
  made the name; ``<check>`` is a keyed hash of the name's other parts, so
  a file that merely looks like a temporary is never taken for one.
- **Published in one atomic step.** Without ``--overwrite`` the final name
  is created exclusively (a hard link, which fails if the name exists, or
  ``mkdir`` for a folder such as an OME-Zarr), so of two writers racing for
  one name exactly one succeeds and the other is told the name exists.
  With ``--overwrite`` the old file is replaced by a rename: a reader sees
  the old file or the complete new one, never a mixture.
- **Cleaned up.** On any error or interrupt the temporary is removed; one
  left by a process killed with ``kill -9`` is recognised by its PID and
  removed by the next biounet run that writes to the same folder
  (:func:`sweep`), which removes only names whose check value proves that
  biounet made them.

Operating-system errors (disk full, read-only file system, permissions)
become one-line :class:`~biounet.errors.BiounetError` messages that name the
file (:func:`os_error_message`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from biounet.errors import BiounetError
from biounet.io.boundary import check_outputs, overlap

#: The mark in every temporary name; :func:`sweep` looks for it.
TEMP_MARK = ".biounet-tmp-"
_TEMP = re.compile(
    r"\.biounet-tmp-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)"
    r"-(?P<token>[0-9a-f]{8})-(?P<check>[0-9a-f]{16})"
)
#: The key of the check value in temporary names (it proves that biounet formed a
#: name; it is no secret against someone who means to forge one).
_CHECK_KEY = b"biounet temporary v2"


class WriteError(BiounetError):
    """An operating-system error while writing an output (disk full, read-only, ...)."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside `path` that :func:`sweep` recognises.

    Examples
    --------
    >>> name = temp_path("out/seg.tif").name
    >>> name.startswith(".seg.tif.biounet-tmp-") and name.endswith(".tif")
    True
    """
    path = Path(path)
    while True:
        name, host, pid = path.name[:120], _host(), os.getpid()
        token = secrets.token_hex(4)
        tag = f"{TEMP_MARK}{host}-{pid}-{token}-{_check(name, host, pid, token)}"
        tmp = path.with_name(f".{name}{tag}{path.suffix}")
        if not (tmp.exists() or tmp.is_symlink()):  # never a name that is taken
            return tmp


def _check(name: str, host: str, pid: int | str, token: str) -> str:
    """The check value of a temporary name: a keyed hash of its other parts."""
    text = f"{name}\0{host}\0{pid}\0{token}".encode()
    return hashlib.blake2b(text, key=_CHECK_KEY, digest_size=8).hexdigest()


def made_by_biounet(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` if `name` is a temporary that :func:`temp_path` formed, else None.

    The check value in the name must match its other parts: a user's file
    that merely looks like a temporary (or a temporary renamed) is not one.

    Examples
    --------
    >>> made_by_biounet(temp_path("seg.tif").name)[1] == os.getpid()
    True
    >>> made_by_biounet(".seg.tif.biounet-tmp-host-12345-0123abcd-0123456789abcdef.tif")
    """
    match = _TEMP.search(name)
    if not name.startswith(".") or match is None:
        return None
    original = name[1 : match.start()]
    expected = _check(original, match["host"], match["pid"], match["token"])
    if not secrets.compare_digest(expected, match["check"]):
        return None
    return match["host"], int(match["pid"])


def published_name(path: str | Path) -> str:
    """The name a temporary of :func:`temp_path` is published under (other names as they are).

    For writers that record their own name inside the output, such as the
    ``name`` of an OME-Zarr's multiscales. Names longer than 120 characters
    come back cut to 120, as the temporary keeps them.

    Examples
    --------
    >>> published_name(temp_path("out/seg.zarr")), published_name("out/seg.zarr")
    ('seg.zarr', 'seg.zarr')
    """
    name = Path(path).name
    match = _TEMP.search(name)
    if name.startswith(".") and match:
        return name[1 : match.start()]
    return name


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (unknown counts as alive)."""
    if pid <= 1 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    """Remove a file or folder tree; retry while a storage thread still writes into it."""
    if path.is_dir() and not path.is_symlink():
        for _ in range(50):  # e.g. zarr's I/O thread finishing a chunk after an interrupt
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                break
            time.sleep(0.02)
    else:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            path.unlink()


def sweep(folder: str | Path) -> list[Path]:
    """Remove the temporaries that dead biounet processes left in `folder`.

    A temporary is removed only if its name proves that biounet made it
    (:func:`made_by_biounet`), on this machine, and its process no longer
    exists; those of running processes, of other machines and every name
    that merely looks like a temporary are kept.

    Returns
    -------
    list of Path
        What was removed.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    host = _host()
    for name in names:
        made = made_by_biounet(name)
        if made is None or made[0] != host or process_alive(made[1]):
            continue
        _remove(folder / name)
        removed.append(folder / name)
    return removed


def same_or_inside(a: str | Path, b: str | Path) -> bool:
    """Whether `a` is the file `b` (also through links) or lies inside folder `b`."""
    return overlap(a, b) in ("is", "inside")


def os_error_message(exc: OSError, path: str | Path | None = None) -> str:
    """``"<file>: <problem>"`` for an operating-system error.

    The file is the one the error names, else `path`.

    Examples
    --------
    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device"), "out.tif")
    'out.tif: no space left on device (free some space, then run again)'
    """
    name = exc.filename if exc.filename is not None else path
    code = exc.errno
    if code is None and name is not None and _nearly_full(Path(name)):
        code = errno.ENOSPC  # a short write (no errno) on a full disk
    reason = os.strerror(code) if code == errno.ENOSPC else exc.strerror
    reason = reason or str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    hint = {
        errno.ENOSPC: " (free some space, then run again)",
        errno.EDQUOT: " (free some space, then run again)",
        errno.EROFS: " (write somewhere else)",
        errno.EACCES: " (write somewhere else, or change the permissions)",
        errno.EIO: " (check the disk and free some space, then run again)",
    }.get(code or 0, "")
    return f"{name}: {reason}{hint}" if name is not None else f"{reason}{hint}"


#: What torch's writers put in the RuntimeError of a failed write (full disk, I/O error).
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "file write failed", "unexpected pos")


def write_failure(exc: RuntimeError, path: str | Path) -> BaseException:
    """A :class:`WriteError` naming `path` for torch's RuntimeError of a failed write.

    ``torch.save`` and TorchScript's ``save`` report a full disk as a
    RuntimeError ("PytorchStreamWriter failed writing file data/0: file
    write failed"), not an OSError. Other RuntimeErrors come back as they are.

    Examples
    --------
    >>> e = write_failure(RuntimeError("PytorchStreamWriter failed writing file"), "/x/a.pt")
    >>> type(e).__name__, str(e).startswith("/x/a.pt: ")
    ('WriteError', True)
    >>> type(write_failure(RuntimeError("size mismatch"), "a.pt")).__name__
    'RuntimeError'
    """
    if not any(phrase in str(exc) for phrase in _TORCH_WRITE_FAILURES):
        return exc
    code = errno.ENOSPC if _nearly_full(Path(path)) else errno.EIO
    return WriteError(os_error_message(OSError(code, os.strerror(code)), path))


def _nearly_full(path: Path) -> bool:
    """Whether the file system of `path` has less than 1 MiB free."""
    folder = path if path.is_dir() else path.parent
    while str(folder) not in ("", ".") and not folder.exists() and folder != folder.parent:
        folder = folder.parent  # a file in a folder not made yet: its file system
    try:
        return shutil.disk_usage(folder if str(folder) else ".").free < 2**20
    except OSError:
        return False


def check_writable(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Fail early, with a one-line message, if `path` must not or cannot be written.

    Parameters
    ----------
    path : path
        The output.
    overwrite : bool
        Whether an existing `path` may be replaced.
    inputs : iterable of path
        The command's inputs: `path` must be none of them and hold none of
        them (:func:`biounet.io.boundary.check_outputs`).

    Raises
    ------
    BiounetError
        If `path` overlaps an input, exists and `overwrite` is false, or its
        folder is missing, not a folder or not writable.
    """
    path = Path(path)
    check_outputs([path], inputs)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise BiounetError(f"{path}: already exists (use --overwrite to replace it)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise BiounetError(f"{path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise BiounetError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK):
        raise BiounetError(f"{path}: folder {folder} is not writable")
    return path


def _fsync(path: Path) -> None:
    """Flush a finished file to disk, so that a power cut cannot publish half of it."""
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: ``os.link`` errors of file systems without hard links (then publish by rename).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished `tmp` to `path`: exclusively unless `overwrite`."""
    if overwrite and not tmp.is_dir() and not (path.is_dir() and not path.is_symlink()):
        os.replace(tmp, path)  # a file replaces a file: last writer wins, even in a race
        return
    if overwrite and (path.exists() or path.is_symlink()):
        if tmp.is_dir() or (path.is_dir() and not path.is_symlink()):
            aside = temp_path(path)
            os.rename(path, aside)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(aside, path)
                raise
            _remove(aside)
        else:
            os.replace(tmp, path)
        return
    if tmp.is_dir():
        os.mkdir(path)  # FileExistsError if the name is taken: the atomic check
        try:
            os.rename(tmp, path)  # onto the empty folder just made
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            raise
        return
    try:
        os.link(tmp, path)  # FileExistsError if the name is taken
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(
    path: str | Path, *, overwrite: bool, inputs: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; publish it as `path` when the block succeeds.

    Parameters
    ----------
    path : path
        The final name.
    overwrite : bool
        Replace an existing `path`; otherwise `path` is created exclusively
        and an existing one (also one that appeared while writing) is an error.
    inputs : iterable of path
        Inputs that `path` must not be (see :func:`check_writable`).

    Raises
    ------
    BiounetError
        As :func:`check_writable`; if `path` appeared meanwhile; or for an
        operating-system error while writing (disk full, read-only file
        system), naming the file. The temporary is always removed.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_output(folder / "a.txt", overwrite=False) as tmp:
    ...     _ = tmp.write_text("done")
    >>> (folder / "a.txt").read_text(), os.listdir(folder)
    ('done', ['a.txt'])
    """
    path = check_writable(path, overwrite=overwrite, inputs=inputs)
    sweep(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync(tmp)
        try:
            _publish(tmp, path, overwrite)
        except FileExistsError:
            raise BiounetError(
                f"{path}: already exists (another run wrote it meanwhile; "
                "use --overwrite to replace it)"
            ) from None
    except OSError as exc:
        _remove(tmp)
        raise WriteError(os_error_message(exc, path)) from None
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def scratch_folder(near: str | Path) -> Iterator[Path]:
    """A temporary folder beside `near` (on its file system), removed afterwards.

    Its name carries this process's ID, so one left by a killed process is
    removed by :func:`sweep`.
    """
    near = Path(near)
    sweep(near.parent if str(near.parent) else Path("."))
    folder = temp_path(near.with_name("scratch"))
    try:
        folder.mkdir()
    except OSError as exc:
        raise BiounetError(os_error_message(exc, near)) from None
    try:
        yield folder
    finally:
        _remove(folder)
