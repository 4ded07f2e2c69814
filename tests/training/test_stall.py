"""A stalled run: the constant answer's loss, the one-class pixel errors, the verdict, restarts."""

import json
import logging

import numpy as np
import pytest
import torch
from tiny_runs import tiny_config, write_cells

from biounet.device import make_runtime
from biounet.evaluation.isbi import pixel_error
from biounet.network.checkpoint import load_checkpoint
from biounet.training.config import TrainConfig, load_config
from biounet.training.loss import weighted_cross_entropy
from biounet.training.run import run_training
from biounet.training.runlog import read_log, split_attempts, truncate_log
from biounet.training.stall import (
    TrivialAnswer,
    constant_loss,
    one_class_pixel_errors,
    restart_config,
    stall_reason,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return write_cells(folder, count=4, size=96, n_cells=6, radius=(10, 16))


def small_config(data, **changes):
    return tiny_config(data, **{"checkpoint_every": 2, **changes})


def test_constant_loss_is_the_smallest_loss_of_a_constant_prediction():
    classes = [np.array([[0, 0, 1]]), np.array([[1, 0]])]
    weights = [np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 4.0]])]
    # W_0 = 1 + 2 + 4 = 7, W_1 = 3 + 1 = 4, N = 5: -(7 log 7/11 + 4 log 4/11) / 5
    want = -(7 * np.log(7 / 11) + 4 * np.log(4 / 11)) / 5
    assert constant_loss(classes, weights) == pytest.approx(want, rel=1e-12, abs=0)

    def loss_at(p):  # Eq. 1 of a constant prediction p, by the training loss itself
        logits = torch.tensor([np.log(1 - p), np.log(p)], dtype=torch.float64)
        total = 0.0
        for c, w in zip(classes, weights, strict=True):
            x = logits[None, :, None, None].expand(1, 2, *c.shape)
            value = weighted_cross_entropy(x, torch.as_tensor(c)[None], torch.as_tensor(w)[None])
            total += float(value) * c.size
        return total / 5

    assert loss_at(4 / 11) == pytest.approx(want, rel=1e-6, abs=0)  # the loss is float32
    assert min(loss_at(p) for p in np.linspace(0.05, 0.95, 91)) >= want


def test_one_class_pixel_errors_are_the_validation_pixel_errors_of_one_class():
    truth = [np.array([[0, 0, 0, 3]]), np.array([[1, 2, 0, 0]])]  # f = 3/8
    bg, fg = one_class_pixel_errors(truth)
    assert bg == 1.0  # no object pixel found: F1 = 0
    assert fg == pytest.approx((1 - 3 / 8) / (1 + 3 / 8), rel=1e-12, abs=0)
    stack = np.stack([(g > 0).astype(np.uint8) for g in truth])
    assert fg == pixel_error(np.ones(stack.shape), stack, thresholds=(0.5,)).best


def history(losses, every=20):
    return [{"step": every * (i + 1), "loss": v} for i, v in enumerate(losses)]


TRIVIAL = TrivialAnswer(loss=0.7281, pixel_errors=(1.0, 0.5295))


def test_a_flat_loss_on_the_trivial_answer_is_a_stall():
    records = history([0.93, 0.80, 0.77, 0.75, 0.76, 0.74, 0.75, 0.76, 0.75, 0.76])
    reason = stall_reason(records, 200, 0.5295, TRIVIAL)
    # the mean over steps 120..200 (the second half): (0.74 + 0.75 + 0.76 + 0.75 + 0.76) / 5
    assert reason == (
        "loss 0.7520 (the constant answer's: 0.7281), "
        "validation pixel error 0.5295 (all foreground: 0.5295)"
    )
    assert "all background: 1.0000" in stall_reason(records, 200, 0.995, TRIVIAL)


@pytest.mark.parametrize(
    "losses, pixel, why",
    [
        ([0.93, 0.80, 0.77, 0.75, 0.76, 0.70, 0.70, 0.70, 0.70, 0.71], 0.5295, "loss falls"),
        ([0.75] * 10, 0.5100, "validation not one class"),
        ([0.93, 0.90, 0.88, 0.86, 0.85, 0.60, 0.55, 0.50, 0.48, 0.45], 0.5295, "second half"),
    ],
)
def test_no_stall_when_the_loss_falls_or_the_validation_is_not_trivial(losses, pixel, why):
    assert stall_reason(history(losses), 200, pixel, TRIVIAL) is None, why


def test_the_margin_is_two_percent_of_the_constant_loss():
    at = (1 - 0.02) * 0.7281
    assert stall_reason(history([at + 1e-4] * 10), 200, 0.5295, TRIVIAL) is not None
    assert stall_reason(history([at - 1e-4] * 10), 200, 0.5295, TRIVIAL) is None


def test_restart_config_changes_the_seed_and_adds_a_warm_up():
    cfg = TrainConfig(seed=7, iterations=3000, warmup=0)
    assert (restart_config(cfg).seed, restart_config(cfg).warmup) == (8, 200)
    assert restart_config(TrainConfig(seed=7, iterations=3000, warmup=500)).warmup == 500
    assert restart_config(TrainConfig(iterations=50)).warmup == 10


def test_truncate_keeps_the_stalled_attempts_and_cuts_the_current_one(tmp_path):
    records = [
        {"step": 10, "loss": 0.9, "seconds": 5.0},
        {"step": 10, "stall": "flat"},
        {"step": 10, "restart": 1, "seed": 1, "warmup": 2, "reason": "flat"},
        {"step": 5, "loss": 0.5, "seconds": 7.0},
        {"step": 10, "loss": 0.4, "seconds": 9.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert truncate_log(tmp_path, 5) == 7.0  # the seconds count on over the attempts
    assert read_log(tmp_path) == records[:4]
    assert split_attempts(read_log(tmp_path)) == [records[:3], records[3:4]]


def test_a_forced_stall_is_found_said_in_one_line_and_restarted(tmp_path, data, caplog):
    """lr 3 kills the small network at once: one class everywhere, a loss above the constant."""
    cfg = small_config(data, lr=3.0, iterations=8, val_every=2, stall_after=4, stall_restarts=1)
    with caplog.at_level(logging.WARNING, logger="biounet.training"):
        summary = run_training(cfg, tmp_path / "r", runtime=make_runtime("cpu"))
    lines = [r.getMessage() for r in caplog.records]
    assert summary.stalled is not None and summary.steps == 4 and summary.unfinished
    stalls = [m for m in lines if ": stalled at step 4: loss " in m]
    assert len(stalls) == 2 and all("\n" not in m for m in stalls)  # two attempts, one line each
    assert any("restart 1 of at most 1 from scratch, seed 1, warm-up 1 steps" in m for m in lines)
    assert any("still stalled after 1 restart(s)" in m for m in lines)
    records = read_log(tmp_path / "r")
    first, second = split_attempts(records)
    assert [r["step"] for r in first if "stall" in r] == [4]
    assert first[-1] == {
        "step": 4,
        "restart": 1,
        "seed": 1,
        "warmup": 1,
        "reason": next(r["stall"] for r in first if "stall" in r),
    }
    assert [r["step"] for r in second if "loss" in r] == [1, 2, 3, 4]  # counted from scratch
    assert load_config(tmp_path / "r" / "config.yaml") == restart_config(cfg)
    state = load_checkpoint(tmp_path / "r" / "latest.pt")["train_state"]
    assert state["step"] == 4 and state["config"]["seed"] == 1
    assert (tmp_path / "r" / "training.png").stat().st_size > 0


def test_no_check_before_stall_after_and_none_when_off(tmp_path, data):
    for name, after in (("late", 100), ("off", 0)):
        cfg = small_config(data, lr=3.0, iterations=4, val_every=2, stall_after=after)
        summary = run_training(cfg, tmp_path / name, runtime=make_runtime("cpu"))
        assert summary.stalled is None and summary.steps == 4
        assert not any("stall" in r or "restart" in r for r in read_log(tmp_path / name))


def test_the_summary_line_says_a_run_stalled(tmp_path):
    from biounet.training.loop import TrainSummary
    from biounet.training.run import summary_line

    summary = TrainSummary(tmp_path, 500, 60.0, 0.75, {}, True, "loss 0.7512 (...)")
    assert summary_line(summary) == (
        f"{tmp_path}: 500 steps, 1.0 min of training, last loss 0.7500; "
        "stalled on the trivial answer (loss 0.7512 (...))"
    )


def test_a_restarted_run_resumes_exactly_like_its_new_attempt_run_whole(tmp_path, data):
    from dataclasses import replace

    from biounet.training.loop import train
    from biounet.training.run import prepare_run

    cfg = small_config(data, lr=3.0, iterations=4, val_every=2, stall_after=4, stall_restarts=1)
    run_training(cfg, tmp_path / "r", runtime=make_runtime("cpu"))  # stalls, restarts, stalls
    recorded = load_config(tmp_path / "r" / "config.yaml")
    assert (recorded.seed, recorded.warmup) == (1, 0)  # 4 // 5 = 0 warm-up steps
    longer = replace(recorded, iterations=8, stall_after=0)
    train(longer, tmp_path / "r", runtime=make_runtime("cpu"), resume=True)  # steps 5..8
    prepare_run(longer, tmp_path / "whole")
    train(longer, tmp_path / "whole", runtime=make_runtime("cpu"))  # the new attempt, 1..8
    a = load_checkpoint(tmp_path / "r" / "latest.pt")["model_state"]
    b = load_checkpoint(tmp_path / "whole" / "latest.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    first, second = split_attempts(read_log(tmp_path / "r"))
    assert "restart" in first[-1]  # the stalled attempt's record is kept on resume
    assert [r["step"] for r in second if "loss" in r] == list(range(1, 9))


def test_the_plot_draws_the_stall_the_restart_and_the_constant_answer(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from biounet.training.runlog import plot_log

    records = [
        {"step": 2, "loss": 0.9},
        {"step": 4, "loss": 0.8},
        {"step": 4, "val_seg": 0.04, "val_pixel_error": 0.53},
        {"step": 4, "stall": "flat"},
        {"step": 4, "restart": 1, "seed": 1, "warmup": 1, "reason": "flat"},
        {"step": 2, "loss": 0.7},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    plot_log(tmp_path, constant_loss=0.75)
    loss_axes, val_axes = figures[0].axes
    lines = {line.get_label(): line for line in loss_axes.get_lines()}
    assert list(lines["attempt 1"].get_ydata()) == [0.9, 0.8]  # the stalled attempt, grey
    assert list(lines["constant answer"].get_ydata()) == [0.75, 0.75]
    stall_marks = [
        ln
        for ax in (loss_axes, val_axes)
        for ln in ax.get_lines()
        if ln.get_xdata()[0] == 4 and ln.get_linestyle() == "--"
    ]
    assert len(stall_marks) == 2  # the stall at step 4, on both panels
    assert loss_axes.get_title() == "training loss (restart 1, seed 1)"
    assert (tmp_path / "training.png").stat().st_size > 0
