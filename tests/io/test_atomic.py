"""The output discipline: exclusive publishing, temporaries swept by PID, never onto an input."""

import os
import subprocess
import sys

import pytest

from biounet.errors import BiounetError
from biounet.io.atomic import atomic_output, check_writable, scratch_folder, sweep, temp_path


def test_two_writers_of_one_name_exactly_one_wins(tmp_path):
    """Both pass the early check; the publishing step lets exactly one of them through."""
    out = tmp_path / "o.tif"
    first, second = atomic_output(out, overwrite=False), atomic_output(out, overwrite=False)
    first.__enter__().write_text("first")
    second.__enter__().write_text("second")
    first.__exit__(None, None, None)
    with pytest.raises(BiounetError, match="o.tif: already exists .another run wrote it"):
        second.__exit__(None, None, None)
    assert out.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]


def test_two_folder_writers_exactly_one_wins(tmp_path):
    out = tmp_path / "o.zarr"
    with pytest.raises(BiounetError, match="already exists"):
        with atomic_output(out, overwrite=False) as tmp:
            tmp.mkdir()
            (tmp / "chunk").write_text("mine")
            out.mkdir()  # another writer published first
            (out / "chunk").write_text("theirs")
    assert (out / "chunk").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]


def test_overwrite_replaces_file_and_folder(tmp_path):
    out = tmp_path / "o.zarr"
    out.mkdir()
    (out / "old").write_text("old")
    with atomic_output(out, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]


def test_never_onto_an_input(tmp_path):
    image = tmp_path / "a.tif"
    image.write_text("precious")
    (tmp_path / "link.tif").symlink_to(image)
    for target in (image, tmp_path / "link.tif", tmp_path / "sub" / ".." / "a.tif"):
        with pytest.raises(BiounetError, match="is an input"):
            check_writable(target, overwrite=True, inputs=[image])
    with pytest.raises(BiounetError, match="holds an input"):  # a folder that holds an input
        check_writable(tmp_path, overwrite=True, inputs=[image])
    check_writable(tmp_path / "new.tif", overwrite=True, inputs=[tmp_path])  # inside: allowed
    check_writable(tmp_path / "b.tif", overwrite=True, inputs=[image])  # a neighbour is fine
    assert image.read_text() == "precious"


def test_error_inside_removes_the_temporary(tmp_path):
    with pytest.raises(BiounetError, match="o.tif: no space left on device"):
        with atomic_output(tmp_path / "o.tif", overwrite=False) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path / "o.tif", overwrite=False) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def _made_by_a_dead_process(folder, *names, folder_names=()):
    """Temporaries (files, and folders holding a file) a biounet process made before it ended."""
    code = (
        "import sys; from pathlib import Path; from biounet.io.atomic import temp_path\n"
        "folder = Path(sys.argv[1])\n"
        f"for name in {list(names)!r}: p = temp_path(folder / name); p.write_text('x'); print(p)\n"
        f"for name in {list(folder_names)!r}:\n"
        "    p = temp_path(folder / name); p.mkdir(); (p / 'chunk').write_text('x'); print(p)\n"
        "import os; print(os.getpid())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    *paths, pid = done.stdout.split()
    return [type(folder)(p) for p in paths], int(pid)


def test_sweep_removes_only_temporaries_of_dead_processes(tmp_path):
    (theirs, their_folder), dead_pid = _made_by_a_dead_process(
        tmp_path, "a.tif", folder_names=("scratch",)
    )
    mine = temp_path(tmp_path / "a.tif")
    mine.write_text("x")
    other_host = theirs.with_name(theirs.name.replace(socket_host(), "elsewhere", 1))
    other_host.write_text("x")
    (tmp_path / "keep.tif").write_text("user file")
    assert sorted(sweep(tmp_path)) == sorted([theirs, their_folder])
    with scratch_folder(tmp_path / "o.tif") as scratch:
        assert scratch.is_dir()
        assert sweep(tmp_path) == []  # a running process's scratch folder stays
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, other_host.name, "keep.tif"]
    )


def socket_host():
    from biounet.io.atomic import made_by_biounet

    return made_by_biounet(temp_path("x").name)[0]


def test_sweep_keeps_files_that_merely_look_like_temporaries(tmp_path):
    """A user's file (or folder) named like a temporary of a dead process is not biounet's."""
    (real,), dead_pid = _made_by_a_dead_process(tmp_path, "a.tif")
    host = socket_host()
    look_alikes = [
        # the pattern of biounet's names with a made-up check value
        f".b.tif.biounet-tmp-{host}-{dead_pid}-0123abcd-0123456789abcdef.tif",
        # a real temporary's name given to another file
        real.name.replace(".a.tif.", ".c.tif.", 1),
        # the old pattern (.NAME.<pid>.partial.SUFFIX) and the old short form
        f".d.tif.{dead_pid}.partial.tif",
        f".e.tif.biounet-tmp-{host}-{dead_pid}-0123abcd.tif",
    ]
    for name in look_alikes:
        (tmp_path / name).write_text("someone's data")
    folder = tmp_path / f".f.zarr.biounet-tmp-{host}-{dead_pid}-0123abcd-fedcba9876543210.zarr"
    folder.mkdir()
    (folder / "data").write_text("someone's data")
    assert sweep(tmp_path) == [real]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*look_alikes, folder.name])
    assert (folder / "data").read_text() == "someone's data"


def test_temporary_names_are_fresh_and_never_taken(tmp_path, monkeypatch):
    import biounet.io.atomic as atomic

    tokens = iter(["00000000", "00000000", "11111111"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    first = temp_path(tmp_path / "a.tif")
    first.write_text("taken")
    second = temp_path(tmp_path / "a.tif")  # the same token again: a new one is drawn
    assert first != second and "-11111111-" in second.name and "-00000000-" in first.name


def test_overwrite_publishes_even_when_another_writer_came_first(tmp_path, monkeypatch):
    # a content-addressed cache file written by two DDP ranks at once: with
    # overwrite the last writer wins, also when the other one publishes in the
    # instant between this writer's look at the name and its own publishing
    import biounet.io.atomic as atomic

    target = tmp_path / "cache.npz"
    real_link = os.link

    def other_rank_first(src, dst, *args, **kwargs):
        target.write_text("first")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "link", other_rank_first)
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz"]
