"""DistributedDataParallel: 2 CPU ranks x batch 1 take the same step as 1 process x batch 2."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from tiny_runs import tiny_config, write_cells

from biounet.device import make_runtime
from biounet.network.checkpoint import load_checkpoint
from biounet.network.unet import UNet, UNetConfig
from biounet.training.loop import train
from biounet.training.run import prepare_run, run_training


def _config(folder, batch):
    return tiny_config(
        folder,
        val_count=0,
        model=UNetConfig(features=4, depth=2, dropout=0.0),  # dropout masks differ by rank
        batch_size=batch,
        iterations=2,
        lr=0.05,
        val_every=100,
        checkpoint_every=1,
    )


def _rank(rank, world, port, folder):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from biounet.training import ddp

    runtime = ddp.setup(make_runtime("cpu"))
    try:
        cfg = _config(folder, batch=1)
        run_training(cfg, folder / "ddp", runtime=runtime)
    finally:
        ddp.teardown()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_ranks_equal_one_process_with_double_batch(tmp_path):
    write_cells(tmp_path, count=3, size=96, n_cells=6, radius=(10, 16))
    mp.spawn(_rank, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    single = _config(tmp_path, batch=2)
    prepare_run(single, tmp_path / "single")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(single, tmp_path / "single", runtime=make_runtime("cpu"))
    finally:
        torch.set_num_threads(before)
    a = load_checkpoint(tmp_path / "ddp" / "latest.pt")
    b = load_checkpoint(tmp_path / "single" / "latest.pt")
    assert a["train_state"]["step"] == b["train_state"]["step"] == 2
    for key, value in a["model_state"].items():
        torch.testing.assert_close(value, b["model_state"][key], rtol=1e-5, atol=1e-6)
    torch.manual_seed(single.seed)
    start = UNet(single.model).state_dict()  # the weights both runs started from
    assert any(not torch.equal(start[k], a["model_state"][k]) for k in start)
    assert not (tmp_path / "ddp" / "best.pt").exists()  # no validation set, no best


LAUNCHED = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500"}  # fmt: skip


@pytest.mark.parametrize(
    "env,message",
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"),
        ({**LAUNCHED, "MASTER_ADDR": ""}, "WORLD_SIZE=2 is set but MASTER_ADDR not"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': not a non-negative integer"),
        ({"RANK": "-1"}, "RANK='-1': not a non-negative integer"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0: must be at least 1"),
        ({**LAUNCHED, "RANK": "2"}, "RANK=2: must be below WORLD_SIZE=2"),
        ({**LAUNCHED, "MASTER_PORT": "http"}, "MASTER_PORT='http': not a non-negative"),
    ],
)
def test_distributed_variables_without_a_launcher_are_refused(env, message):
    from biounet.errors import BiounetError
    from biounet.training.ddp import check_launch

    with pytest.raises(BiounetError, match=message):
        check_launch(env)


def test_consistent_or_single_process_variables_pass():
    from biounet.training.ddp import check_launch

    for env in ({}, LAUNCHED, {"WORLD_SIZE": "1", "RANK": "0"}, {"LOCAL_RANK": "0"}):
        check_launch(env)


def test_train_with_a_stray_world_size_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from biounet.cli import main

    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    r = CliRunner().invoke(
        main, ["-q", "train", "--images", "x.tif", "--out", str(tmp_path / "run"), "--no-progress"]
    )
    assert r.exit_code == 1 and r.stderr.startswith("Error: WORLD_SIZE=4 is set but RANK"), r.output
    assert r.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []
