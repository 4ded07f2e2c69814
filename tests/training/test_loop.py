"""Training: resume is exact, checkpoints are complete, the optimiser is Caffe's SGD."""

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from tiny_runs import tiny_config, write_cells

from biounet.cli import main
from biounet.device import make_runtime
from biounet.errors import BiounetError
from biounet.network.checkpoint import load_checkpoint
from biounet.network.unet import UNet, UNetConfig
from biounet.training.augment import AugmentConfig
from biounet.training.config import TrainConfig, dump_config, load_config
from biounet.training.loop import train
from biounet.training.run import prepare_run
from biounet.training.runlog import read_log
from biounet.training.tiles import TileDataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return write_cells(folder, count=4, size=96, n_cells=6, radius=(10, 16))


def small_config(data, **changes):
    defaults = {"iterations": 6, "lr": 0.05, "val_every": 3, "checkpoint_every": 3}
    return tiny_config(data, **{**defaults, **changes})


def weights_of(path):
    return load_checkpoint(path)["model_state"]


@pytest.mark.parametrize("schedule, ema", [("constant", 0.0), ("poly", 0.0), ("constant", 0.9)])
def test_resume_equals_uninterrupted(tmp_path, data, schedule, ema):
    cfg = small_config(data, workers=1, lr_schedule=schedule, warmup=2, ema=ema)
    rt = make_runtime("cpu")
    prepare_run(cfg, tmp_path / "a")
    train(cfg, tmp_path / "a", runtime=rt)
    prepare_run(cfg, tmp_path / "b")
    first = train(cfg, tmp_path / "b", runtime=rt, stop_after=3)
    assert first.steps == 3
    second = train(cfg, tmp_path / "b", runtime=rt, resume=True)
    assert second.steps == 6
    a, b = weights_of(tmp_path / "a" / "latest.pt"), weights_of(tmp_path / "b" / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    if ema:  # the trained weights, kept for resuming, are equal too
        raw_a = load_checkpoint(tmp_path / "a" / "latest.pt")["train_state"]["raw_model"]
        raw_b = load_checkpoint(tmp_path / "b" / "latest.pt")["train_state"]["raw_model"]
        assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    log_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [eval_step(x) for x in log_a] == [eval_step(x) for x in log_b]


def test_tiles_cut_on_the_device_train_the_same_model(tmp_path, data, caplog):
    """augment_on=device (the CUDA default), run on the CPU: the same weights, bit for bit."""
    rt = make_runtime("cpu")
    for where in ("workers", "device"):
        cfg = small_config(data, workers=1, augment_on=where, iterations=4)
        prepare_run(cfg, tmp_path / where)
        with caplog.at_level("INFO", logger="biounet.training.loop"):
            caplog.clear()
            train(cfg, tmp_path / where, runtime=rt)
        assert ("tiles cut on the device" in caplog.text) == (where == "device")
    a = weights_of(tmp_path / "workers" / "latest.pt")
    b = weights_of(tmp_path / "device" / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_with_amp_and_device_tiles(tmp_path, data, caplog):
    rt = make_runtime("cuda")
    cfg = small_config(data, workers=1, iterations=4)
    prepare_run(cfg, tmp_path / "r")
    with caplog.at_level("INFO", logger="biounet.training.loop"):
        summary = train(cfg, tmp_path / "r", runtime=rt)
    assert summary.steps == 4 and np.isfinite(summary.last_loss)
    assert "tiles cut on the device" in caplog.text and "bf16" in caplog.text
    assert UNet.from_checkpoint(tmp_path / "r" / "latest.pt").config == cfg.model


def test_checkpoints_hold_the_moving_average_of_the_weights(tmp_path, data):
    cfg = small_config(data, ema=0.75, iterations=2, checkpoint_every=1, val_every=1)
    rt = make_runtime("cpu")
    torch.manual_seed(cfg.seed)
    w0 = UNet(cfg.model, cfg.normalization).state_dict()  # the loop's initial weights
    prepare_run(cfg, tmp_path / "r")
    average = {k: v.clone() for k, v in w0.items()}
    for step in (1, 2):  # one step per call: each step's weights are in the checkpoint
        train(cfg, tmp_path / "r", runtime=rt, stop_after=1, resume=step > 1)
        ckpt = load_checkpoint(tmp_path / "r" / "latest.pt")
        raw = ckpt["train_state"]["raw_model"]
        assert not all(torch.equal(raw[k], average[k]) for k in raw)  # training moved them
        decay = min(0.75, (1 + step) / (10 + step))  # 2/11, then 3/12
        for k in average:  # a <- a + (1 - d) (w - a)
            average[k] += (1 - decay) * (raw[k] - average[k])
            torch.testing.assert_close(ckpt["model_state"][k], average[k], rtol=1e-6, atol=1e-7)
    net = UNet.from_checkpoint(tmp_path / "r" / "latest.pt")  # predicts with the average
    assert torch.equal(net.state_dict()["head.bias"], ckpt["model_state"]["head.bias"])


def test_each_step_uses_the_scheduled_rate(tmp_path, data):
    from biounet.training.schedule import learning_rate

    cfg = small_config(data, lr_schedule="poly", warmup=2, val_every=100)
    prepare_run(cfg, tmp_path / "r")
    train(cfg, tmp_path / "r", runtime=make_runtime("cpu"))
    logged = [(r["step"], r["lr"]) for r in read_log(tmp_path / "r") if "lr" in r]
    want = [
        (s, learning_rate(s, lr=0.05, iterations=6, schedule="poly", warmup=2)) for s in range(1, 7)
    ]
    assert [s for s, _ in logged] == [s for s, _ in want]
    assert [r for _, r in logged] == pytest.approx([r for _, r in want])
    assert logged[0][1] == pytest.approx(0.025) and logged[-1][1] < 0.05 / 5
    optimizer = load_checkpoint(tmp_path / "r" / "latest.pt")["train_state"]["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(want[-1][1])


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes_the_same(tmp_path, data):
    from dataclasses import replace

    cfg = small_config(data, workers=1)
    rt = make_runtime("cpu")
    prepare_run(cfg, tmp_path / "a")
    train(cfg, tmp_path / "a", runtime=rt)
    limited = replace(cfg, time_limit=0.001)  # over after the first step
    prepare_run(limited, tmp_path / "b")
    first = train(limited, tmp_path / "b", runtime=rt)
    assert (first.steps, first.unfinished) == (1, True)
    assert load_checkpoint(tmp_path / "b" / "latest.pt")["train_state"]["step"] == 1
    assert any(r.get("step") == 1 and "val_seg" in r for r in read_log(tmp_path / "b"))
    second = train(cfg, tmp_path / "b", runtime=rt, resume=True)
    assert (second.steps, second.unfinished) == (6, False)
    a, b = weights_of(tmp_path / "a" / "latest.pt"), weights_of(tmp_path / "b" / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_diverging_run_names_the_first_bad_step(tmp_path, data):
    messages = []
    for every in (1, 4):  # the loss reaches the host once per log interval
        cfg = small_config(data, lr=1e12, log_every=every)
        prepare_run(cfg, tmp_path / str(every))
        with pytest.raises(
            BiounetError, match=r"step [1-6]: the loss is (nan|inf); lower --lr"
        ) as e:
            train(cfg, tmp_path / str(every), runtime=make_runtime("cpu"))
        messages.append(str(e.value))
    assert messages[0] == messages[1]  # the same first bad step either way


def test_time_limit_text_and_bad_values():
    assert TrainConfig(time_limit="1h30m").time_limit == 5400.0
    assert TrainConfig(time_limit=90).time_limit == 90.0
    for bad in ("soon", 0, -5, "h", True, float("nan")):
        with pytest.raises(ValueError, match="time_limit"):
            TrainConfig(time_limit=bad)


def test_resumed_run_keeps_counting_time(tmp_path, data):
    from biounet.training.runlog import read_log, training_seconds

    cfg = small_config(data)
    prepare_run(cfg, tmp_path / "r")
    train(cfg, tmp_path / "r", runtime=make_runtime("cpu"), stop_after=3)
    before = training_seconds(read_log(tmp_path / "r"))
    summary = train(cfg, tmp_path / "r", runtime=make_runtime("cpu"), resume=True)
    seconds = [r["seconds"] for r in read_log(tmp_path / "r") if "seconds" in r]
    assert len(seconds) == 6 and seconds == sorted(seconds) and seconds[3] > before > 0
    assert summary.seconds >= seconds[-1] > before  # the whole run, not the last session


def test_training_seconds_sums_restarted_sessions():
    from biounet.training.runlog import training_seconds

    records = [{"seconds": 1.0}, {"val_rand_error": 0.1}, {"seconds": 4.0}, {"seconds": 2.5}]
    assert training_seconds(records) == 6.5
    assert training_seconds([]) == 0.0


def eval_step(line):
    import json

    record = json.loads(line)
    return record["step"], record.get("loss"), record.get("val_seg"), record.get("decision")


def test_checkpoint_and_run_folder(tmp_path, data):
    cfg = small_config(data)
    prepare_run(cfg, tmp_path / "r")
    summary = train(cfg, tmp_path / "r", runtime=make_runtime("cpu"))
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert {"config.yaml", "latest.pt", "best.pt", "metrics.jsonl", "training.png"} <= set(files)
    assert load_config(tmp_path / "r" / "config.yaml") == cfg
    ckpt = load_checkpoint(tmp_path / "r" / "latest.pt")
    assert ckpt["train_state"]["step"] == 6
    assert TrainConfig.from_dict(ckpt["train_state"]["config"]) == cfg
    net = UNet.from_checkpoint(tmp_path / "r" / "best.pt")
    assert net.config == cfg.model
    assert summary.best["step"] in (3, 6)


def test_samples_are_a_function_of_seed_and_index(data):
    from biounet.network.normalize import normalize
    from biounet.training.data import load_pairs
    from biounet.training.weight_map import weight_maps

    cfg = small_config(data)
    samples = load_pairs(data / "img.tif", data / "lab.tif", label_kind="instance")
    ds = TileDataset(
        [normalize(s.image, cfg.normalization) for s in samples],
        weight_maps([s.instances for s in samples]),
        cfg,
    )
    x1, y1, w1 = ds[17]
    x2, y2, w2 = ds[17]
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(w1, w2)
    assert x1.shape == (1, 76, 76) and y1.shape == (36, 36) and w1.shape == (36, 36)
    assert not torch.equal(ds[18][0], x1)


def test_sgd_is_caffes_update():
    """Caffe: v <- mu v + lr g, w <- w - v; PyTorch: v <- mu v + g, w <- w - lr v (item 20)."""
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.99)
    caffe_w, caffe_v = 2.0, 0.0
    for _ in range(20):
        opt.zero_grad()
        (0.5 * w**2).sum().backward()  # gradient = w
        caffe_v = 0.99 * caffe_v + 0.1 * caffe_w
        caffe_w -= caffe_v
        opt.step()
        assert w.item() == pytest.approx(caffe_w, rel=1e-12)


def test_loss_falls_on_learnable_data(tmp_path, data):
    cfg = small_config(
        data, iterations=80, val_every=80, checkpoint_every=80, log_every=10, lr=0.01
    ).with_overrides(augment=AugmentConfig.off())
    cfg = cfg.with_overrides(model=UNetConfig(features=8, depth=2))
    prepare_run(cfg, tmp_path / "r")
    train(cfg, tmp_path / "r", runtime=make_runtime("cpu"))
    losses = [
        r["loss"]
        for r in map(yaml.safe_load, (tmp_path / "r" / "metrics.jsonl").read_text().splitlines())
        if "loss" in r
    ]
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2]), losses


def _run(*args):
    return CliRunner().invoke(main, ["-q", *map(str, args)])


def test_cli_train_and_resume(tmp_path, data):
    (tmp_path / "run.yaml").write_text(dump_config(small_config(data, iterations=2)))
    r = _run(
        "train",
        "--config",
        tmp_path / "run.yaml",
        "--out",
        tmp_path / "r",
        "--no-progress",
        "--device",
        "cpu",
        "--ema",
        "0.9",
    )
    assert r.exit_code == 0, r.output
    assert "2 steps" in r.output and "best validation at step 2: SEG " in r.output
    assert load_config(tmp_path / "r" / "config.yaml").ema == 0.9
    assert "raw_model" in load_checkpoint(tmp_path / "r" / "latest.pt")["train_state"]
    r = _run(
        "train", "--resume", tmp_path / "r", "--iterations", "3", "--ema", "0.5", "--no-progress"
    )
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "r" / "latest.pt")["train_state"]["step"] == 3
    resumed = load_config(tmp_path / "r" / "config.yaml")
    assert resumed.iterations == 3 and resumed.ema == 0.5  # averaging may change on resume


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "give either --out"),
        (["--out", "{tmp}/r", "--resume", "{tmp}/r"], "give either --out"),
        (["--out", "{tmp}/x"], "no training images given"),
        (["--out", "{tmp}/x", "--images", "{tmp}/missing.tif"], "missing.tif"),
        (["--out", "{tmp}/x", "--config", "{tmp}/bad.yaml"], "unknown training option(s): colour"),
        (["--out", "{tmp}/x", "--input-size", "571", "--images", "a"], "571 is not a valid"),
        (["--resume", "{tmp}/nothing"], "config.yaml: cannot read"),
    ],
)
def test_cli_train_errors(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("colour: red\n")
    r = _run("train", *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error:") and message in r.output, r.output
    assert "Traceback" not in r.output


def test_non_empty_run_folder_is_refused(tmp_path, data):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("x")
    cfg = small_config(data)
    r = _run(
        "train",
        "--images",
        cfg.data.images,
        "--labels",
        cfg.data.labels,
        "--out",
        tmp_path / "r",
        "--label-kind",
        "instance",
    )
    assert r.exit_code == 1 and "folder is not empty" in r.output


@pytest.mark.parametrize("target", ["process", "group"])
def test_cli_sigterm_stops_cleanly_and_resumes(tmp_path, data, target):
    """A pre-empted run (SIGTERM) exits with one line naming its checkpoint, then resumes.

    ``group``: the signal reaches the DataLoader worker too, as with ``timeout``
    or a batch system that signals the whole job.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = small_config(
        data, iterations=400, checkpoint_every=2, val_every=1000, log_every=50, workers=1
    )
    (tmp_path / "run.yaml").write_text(dump_config(cfg))
    cmd = [sys.executable, "-m", "biounet", "-q", "train", "--config", str(tmp_path / "run.yaml")]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "r"), "--no-progress", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    latest = tmp_path / "r" / "latest.pt"
    deadline = time.monotonic() + 120
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # well inside training, DataLoader worker running
    if target == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert "interrupted; latest.pt holds step" in output and "--resume" in output, output
    step = load_checkpoint(latest)["train_state"]["step"]
    assert 2 <= step < 400
    r = _run("train", "--resume", tmp_path / "r", "--iterations", str(step + 2), "--no-progress")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(latest)["train_state"]["step"] == step + 2


def test_worker_hook_silences_only_broken_connections(monkeypatch, capsys):
    import sys

    from biounet.training.loop import quiet_broken_connections

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    quiet_broken_connections(0)
    for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(), EOFError()):
        sys.excepthook(type(error), error, None)
    assert capsys.readouterr().err == ""
    sys.excepthook(ValueError, ValueError("a real problem"), None)
    assert "ValueError: a real problem" in capsys.readouterr().err


def test_finish_run_starts_resumes_and_sees_a_finished_run(tmp_path, data):
    from dataclasses import replace

    from biounet.training.run import finish_run

    rt = make_runtime("cpu")
    cfg = small_config(data, iterations=3)
    assert finish_run(cfg, tmp_path / "r", runtime=rt) == 3
    lines = (tmp_path / "r" / "metrics.jsonl").read_text()
    assert finish_run(cfg, tmp_path / "r", runtime=rt) == 3  # done: nothing trained
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == lines
    assert finish_run(replace(cfg, iterations=6), tmp_path / "r", runtime=rt) == 6
    assert load_checkpoint(tmp_path / "r" / "latest.pt")["train_state"]["step"] == 6
    assert load_config(tmp_path / "r" / "config.yaml").iterations == 6


def test_a_fitted_normalisation_scales_the_training_images_to_mean_0_and_std_1(tmp_path, data):
    from biounet.network.normalize import Normalization, normalize
    from biounet.training.data import load_pairs

    cfg = small_config(data, iterations=2, normalization=Normalization("fit"))
    prepare_run(cfg, tmp_path / "r")
    train(cfg, tmp_path / "r", runtime=make_runtime("cpu"))
    norm = UNet.from_checkpoint(tmp_path / "r" / "latest.pt").normalization
    pixels = np.stack([s.image for s in load_pairs(data / "img.tif", data / "lab.tif")][:3])
    assert norm == Normalization("fixed", pixels.mean(), pixels.mean() + pixels.std())
    scaled = normalize(pixels, norm, dtype=np.float64)  # the three training images, not the val one
    assert (scaled.mean(), scaled.std()) == (pytest.approx(0, abs=1e-9), pytest.approx(1, rel=1e-9))
    assert load_config(tmp_path / "r" / "config.yaml").normalization.mode == "fit"


def test_an_unfitted_normalisation_refuses_to_scale():
    from biounet.network.normalize import Normalization, fit_normalization, normalize

    with pytest.raises(ValueError, match="must be fitted"):
        normalize(np.zeros(3, np.uint8), Normalization("fit"))
    with pytest.raises(ValueError, match="constant"):
        fit_normalization([np.full(4, 7, np.uint8)], Normalization("fit"))
    assert fit_normalization([np.zeros(2)], Normalization()) == Normalization()


def test_finish_run_does_not_give_a_time_limited_run_a_fresh_budget(tmp_path, data):
    from dataclasses import replace

    from biounet.training.run import finish_run

    rt = make_runtime("cpu")
    cfg = small_config(data, iterations=4, time_limit=1e-3, log_every=1, checkpoint_every=1)
    assert finish_run(cfg, tmp_path / "r", runtime=rt) == 1  # out of time at the first log
    lines = (tmp_path / "r" / "metrics.jsonl").read_text()
    assert finish_run(cfg, tmp_path / "r", runtime=rt) == 1  # its budget is spent: done
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == lines
    # a larger budget continues the run with what is left of it
    assert finish_run(replace(cfg, time_limit=3600.0), tmp_path / "r", runtime=rt) == 4
