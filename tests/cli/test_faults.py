"""Faults: a full disk, a read-only file system, SIGTERM and kill -9, two writers at once.

Each test checks the exit status, the one line on stderr and what the
folder holds afterwards: complete outputs or nothing, never a temporary.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from tiny_runs import tiny_config, write_cells

from biounet.cli import main
from biounet.network.checkpoint import load_checkpoint, save_checkpoint
from biounet.network.unet import UNet, UNetConfig
from biounet.training.config import dump_config

NO_SPACE = "no space left on device"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    save_checkpoint(root / "model.pt", UNet(UNetConfig(features=4, depth=3)))
    rng = np.random.default_rng(0)
    tifffile.imwrite(root / "small.tif", rng.integers(0, 255, (64, 64)).astype(np.uint8))
    tifffile.imwrite(root / "big.tif", rng.integers(0, 255, (1024, 1024)).astype(np.uint8))
    names = ("cells.tif", "cells_labels.tif")
    return write_cells(root, count=3, size=64, n_cells=4, radius=(8, 12), rng=rng, names=names)


def train_config(files: Path, **changes) -> str:
    defaults = {"iterations": 3, "checkpoint_every": 1, "val_every": 1000}
    return dump_config(
        tiny_config(files, ("cells.tif", "cells_labels.tif"), **{**defaults, **changes})
    )


def _cli(*args):
    return CliRunner().invoke(main, ["-q", *map(str, args)])


def _one_error_line(result, *parts):
    lines = result.stderr.splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _predict(files: Path, out: Path, *extra):
    return _cli(
        "predict", files / "small.tif", "-o", out, "--model", files / "model.pt",
        "--tile-size", "116", "--no-progress", *extra,
    )  # fmt: skip


# -- a full disk ---------------------------------------------------------------------------


def test_full_disk_during_predict_is_one_line_and_leaves_nothing(files, tmp_path, monkeypatch):
    import biounet.io.write as write

    def full(path, tiles, layout, **kw):
        Path(path).write_bytes(b"half a tiff")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write, "write_tiff", full)
    for kind in ("labels", "probabilities"):  # labels: also a scratch store
        r = _predict(files, tmp_path / "o.tif", "--kind", kind)
        _one_error_line(r, f"{tmp_path / 'o.tif'}: {NO_SPACE}")
        assert _names(tmp_path) == []


def fail_the_second_save(monkeypatch, error: Exception):
    """Make torch.save write half a checkpoint and raise `error` on its second call.

    Returns the real torch.save.
    """
    import biounet.network.checkpoint as checkpoint

    saves = []
    real_save = torch.save

    def save(obj, fh):
        saves.append(1)
        if len(saves) == 2:
            fh.write(b"half a checkpoint")
            raise error
        real_save(obj, fh)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    return real_save


def test_full_disk_during_training_keeps_the_last_checkpoint(files, tmp_path, monkeypatch):
    import biounet.network.checkpoint as checkpoint

    (tmp_path / "run.yaml").write_text(train_config(files))
    real_save = fail_the_second_save(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    run = tmp_path / "run"
    r = _cli("train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress")
    _one_error_line(r, NO_SPACE, "latest.pt holds step 1", f"--resume {run}")
    assert load_checkpoint(run / "latest.pt")["train_state"]["step"] == 1
    assert not [n for n in _names(run) if "biounet-tmp" in n]
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    r = _cli("train", "--resume", run, "--no-progress")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run / "latest.pt")["train_state"]["step"] == 3


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the patched full-disk tests cover this")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_and_read_only_disk(files, small_disk):
    big = files / "big.tif"  # float32 probabilities, 4 MiB uncompressed > 256 KiB
    r = _cli(
        "predict", big, "-o", small_disk / "p.tif", "--model", files / "model.pt",
        "--kind", "probabilities", "--compression", "none", "--no-progress",
    )  # fmt: skip
    _one_error_line(r, f"{small_disk / 'p.tif'}: {NO_SPACE}")
    assert _names(small_disk) == []
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    _one_error_line(_predict(files, small_disk / "o.tif"), "is not writable")
    r = _cli(
        "train", "--images", files / "cells.tif", "--labels", files / "cells_labels.tif",
        "--label-kind", "instance", "--out", small_disk / "run", "--no-progress",
    )  # fmt: skip
    _one_error_line(r, f"{small_disk / 'run'}: cannot create the folder")
    assert _names(small_disk) == []


# -- signals -------------------------------------------------------------------------------


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "biounet", "-q", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc, found, timeout=120):
    deadline = time.monotonic() + timeout
    while not found() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    assert found()


def _predict_big(files, out, cwd):
    return _start(
        ["predict", files / "big.tif", "-o", out, "--model", files / "model.pt",
         "--tile-size", "116", "--no-progress"],
        cwd,
    )  # fmt: skip


def _scratch(folder):
    return lambda: any("biounet-tmp" in n for n in os.listdir(folder))


def test_sigterm_ends_predict_with_one_line_and_no_debris(files, tmp_path):
    proc = _predict_big(files, tmp_path / "o.tif", tmp_path)
    _wait_for(proc, _scratch(tmp_path))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.splitlines() == [
        f"Error: {files / 'big.tif'}: interrupted; {tmp_path / 'o.tif'} was not written"
    ]
    assert _names(tmp_path) == []


def test_kill_9_debris_is_swept_by_the_next_run(files, tmp_path):
    proc = _predict_big(files, tmp_path / "o.tif", tmp_path)
    _wait_for(proc, _scratch(tmp_path))
    proc.kill()
    proc.communicate(timeout=60)
    left = _names(tmp_path)
    assert left and all("biounet-tmp" in n for n in left)  # what kill -9 leaves
    r = _predict(files, tmp_path / "o.tif")
    assert r.exit_code == 0, r.output
    assert _names(tmp_path) == ["o.tif"]  # the dead process's temporaries are gone


def test_kill_9_during_training_then_resume_with_a_torn_log(files, tmp_path):
    (tmp_path / "run.yaml").write_text(train_config(files, iterations=400))
    run = tmp_path / "run"
    proc = _start(
        ["train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress"], tmp_path
    )
    _wait_for(proc, lambda: (run / "latest.pt").exists())
    time.sleep(0.3)
    proc.kill()
    proc.communicate(timeout=60)
    step = load_checkpoint(run / "latest.pt")["train_state"]["step"]
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"step": 99999, "lo')  # a line cut by the crash
    r = _cli("train", "--resume", run, "--iterations", step + 2, "--no-progress")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run / "latest.pt")["train_state"]["step"] == step + 2
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [eval(x)["step"] for x in lines if '"loss"' in x][-2:] == [step + 1, step + 2]
    assert not [n for n in _names(run) if "biounet-tmp" in n]


def test_failed_start_leaves_no_run_folder_and_overwrite_starts_clean(files, tmp_path):
    (tmp_path / "run.yaml").write_text(
        train_config(files, lr=1e30, iterations=2, checkpoint_every=100)
    )
    run = tmp_path / "run"
    r = _cli("train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress")
    _one_error_line(r, "the loss is")
    assert not run.exists()  # the corrected command can use the same --out
    (tmp_path / "run.yaml").write_text(train_config(files, iterations=2))
    assert (
        _cli("train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress").exit_code
        == 0
    )
    (run / "notes.txt").write_text("mine")
    r = _cli(
        "train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress", "--overwrite"
    )
    assert r.exit_code == 0, r.output
    steps = [eval(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [
        1,
        2,
        2,
    ]  # a clean record (2: loss and validation), not the old one with the new appended
    assert (run / "notes.txt").read_text() == "mine"


# -- two writers ---------------------------------------------------------------------------


def test_two_concurrent_predictions_to_one_name(files, tmp_path):
    procs = [
        _start(
            [
                "predict",
                files / "small.tif",
                "-o",
                tmp_path / "o.tif",
                "--model",
                files / "model.pt",
                "--tile-size",
                "116",
                "--no-progress",
            ],
            tmp_path,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = sorted((p.wait(timeout=120), p.communicate()[1]) for p in procs)
    assert [rc for rc, _ in results] == [0, 1], results
    assert (
        results[1][1].splitlines()
        == [f"Error: {tmp_path / 'o.tif'}: already exists (use --overwrite to replace it)"]
        or "another run wrote it meanwhile" in results[1][1]
    )
    assert _names(tmp_path) == ["o.tif"]
    assert tifffile.imread(tmp_path / "o.tif").shape == (64, 64)


# -- resources: out of memory, torch's write failures ---------------------------------------


def test_out_of_memory_names_the_file_and_only_the_commands_options(files, tmp_path, monkeypatch):
    import biounet.io.read as read

    def no_memory(self, plane, rows, cols):
        with read.working_on(self.path):
            raise MemoryError

    monkeypatch.setattr(read.ImageSource, "read", no_memory)
    line = _one_error_line(_predict(files, tmp_path / "o.tif"))
    assert line == (
        f"Error: {files / 'small.tif'}: out of memory; try a smaller --window or --batch-size, "
        "or a lower --memory"
    )
    assert _names(tmp_path) == []


def test_torch_out_of_memory_in_training_names_the_run(files, tmp_path, monkeypatch):
    import biounet.training.loop as loop

    (tmp_path / "run.yaml").write_text(train_config(files))
    calls = []
    real = loop.weighted_cross_entropy

    def loss(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                "can't allocate memory: you tried to allocate 8589934592 bytes."
            )
        return real(*args)

    monkeypatch.setattr(loop, "weighted_cross_entropy", loss)
    run = tmp_path / "run"
    r = _cli("train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress")
    line = _one_error_line(r)
    assert line == (
        f"Error: {run}: out of memory; try a smaller --input-size or --batch-size, or fewer "
        f"--workers; latest.pt holds step 1, continue with biounet train --resume {run}"
    )


def test_memory_hints_name_only_options_the_command_has():
    import re

    from biounet.cli.parse import Command

    for name, command in main.commands.items():
        assert isinstance(command, Command), name
        options = {opt for p in command.params for opt in p.opts}
        for option in re.findall(r"--[a-z-]+", command.memory_hint):
            assert option in options, (name, option)


def test_a_full_disk_as_torchs_runtime_error_during_training(files, tmp_path, monkeypatch):
    import biounet.io.atomic as atomic

    (tmp_path / "run.yaml").write_text(train_config(files))
    torch_error = "[enforce fail at inline_container.cc:672] . unexpected pos 7 vs 5"
    fail_the_second_save(monkeypatch, RuntimeError(torch_error))
    monkeypatch.setattr(atomic, "_nearly_full", lambda path: True)
    run = tmp_path / "run"
    r = _cli("train", "--config", tmp_path / "run.yaml", "--out", run, "--no-progress")
    _one_error_line(r, f"{run / 'latest.pt'}: {NO_SPACE}", "latest.pt holds step 1")
    assert load_checkpoint(run / "latest.pt")["train_state"]["step"] == 1
    assert not [n for n in _names(run) if "biounet-tmp" in n]


def test_out_of_memory_reading_a_whole_file_names_it(files, tmp_path, monkeypatch):
    import tifffile as tf

    def no_memory(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(tf.TiffFile, "asarray", no_memory)
    line = _one_error_line(_cli("evaluate", files / "small.tif", files / "small.tif"))
    assert line == (
        f"Error: {files / 'small.tif'}: out of memory; try fewer --metrics, or smaller images"
    )


def test_out_of_memory_anywhere_names_the_commands_inputs(files, tmp_path, monkeypatch):
    """A MemoryError no library function attributed to a file: the command's own inputs."""
    import biounet.viz.training_inputs as training_inputs

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(training_inputs, "weight_maps", no_memory)
    labels = files / "cells_labels.tif"
    line = _one_error_line(_cli("weight-map", labels, "-o", tmp_path / "w.tif"))
    assert (
        line
        == f"Error: {labels}: out of memory; try smaller label images, or fewer planes at a time"
    )
    assert _names(tmp_path) == []
    import biounet.network.summary as summary

    monkeypatch.setattr(summary, "architecture_table", no_memory)
    line = _one_error_line(_cli("summary"))
    assert (
        line
        == "Error: summary: out of memory; close other programs or use a machine with more memory"
    )
