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
    with pytest.raises(BiounetError, match="is an input"):  # a folder that holds an input
        check_writable(tmp_path, overwrite=True, inputs=[image])
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


def test_sweep_removes_only_temporaries_of_dead_processes(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    mine = temp_path(tmp_path / "a.tif")
    theirs = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{dead_pid}-"))
    other_host = tmp_path / f".b.tif.biounet-tmp-elsewhere-{dead_pid}-0123abcd.tif"
    legacy = tmp_path / f".c.tif.{dead_pid}.partial.tif"
    for path in (mine, theirs, other_host, legacy):
        path.write_text("x")
    (tmp_path / "keep.tif").write_text("user file")
    assert sorted(sweep(tmp_path)) == sorted([theirs, legacy])
    with scratch_folder(tmp_path / "o.tif") as scratch:
        assert scratch.is_dir()
        dead_scratch = scratch.with_name(scratch.name.replace(f"-{os.getpid()}-", f"-{dead_pid}-"))
        dead_scratch.mkdir()
        (dead_scratch / "p.zarr").mkdir()
        assert sweep(tmp_path) == [dead_scratch]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, other_host.name, "keep.tif"]
    )


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
