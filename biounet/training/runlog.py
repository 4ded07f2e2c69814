"""The record of a training run: a JSON-lines metrics log and its plots.

``metrics.jsonl`` holds one JSON object per line: training records
(``{"step", "loss", "lr", "it_per_s", "seconds"}``) every ``log_every``
steps and validation records (``{"step", "val_pixel_error",
"val_rand_error", ...}``). A run found stalled adds ``{"step", "stall"}``,
and a restart from scratch ``{"step", "restart", "seed", "warmup",
"reason"}``, after which the new attempt's records count from step 1 again
(:mod:`biounet.training.stall`). ``training.png`` plots all of it. A resumed
run first drops the records of its attempt written after its checkpoint, so
the log matches the weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from biounet.errors import BiounetError
from biounet.io.atomic import atomic_output, os_error_message

LOG_NAME = "metrics.jsonl"
PLOT_NAME = "training.png"


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's log (empty if there is none).

    A last line cut short by a crash (no newline, not valid JSON) is left
    out: the run continues from its checkpoint and rewrites the log.

    Raises
    ------
    BiounetError
        A damaged line elsewhere, naming the file and the line.
    """
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        return []
    try:
        lines = path.read_text(errors="replace").split("\n")
    except OSError as exc:
        raise BiounetError(os_error_message(exc, path)) from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # torn last line
                break
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise BiounetError(f"{path}: line {number} is not a metrics record; the log is damaged")
        records.append(record)
    return records


def truncate_log(run_dir: str | Path, step: int) -> float:
    """Keep only the records up to and including `step` (used on resume).

    Records of earlier, stalled attempts (up to the last ``restart`` record)
    are all kept; the step applies to the current attempt.

    Returns
    -------
    float
        The training seconds logged up to `step`, from which a resumed run
        continues counting.
    """
    records = read_log(run_dir)
    starts = [i for i, r in enumerate(records) if "restart" in r]
    keep = starts[-1] + 1 if starts else 0
    records = records[:keep] + [r for r in records[keep:] if r["step"] <= step]
    with atomic_output(Path(run_dir) / LOG_NAME, overwrite=True) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return training_seconds(records)


def training_seconds(records: list[dict[str, Any]]) -> float:
    """Wall-clock training time of a log, summed over its sessions.

    Each record's ``seconds`` counts from the start of the run; a log whose
    count restarts (written by a resumed run of biounet 0.1.0 before the
    count carried over) is summed session by session.
    """
    total, last = 0.0, 0.0
    for seconds in (r["seconds"] for r in records if "seconds" in r):
        if seconds < last:
            total += last
        last = seconds
    return total + last


def split_attempts(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A log's records per attempt: each earlier attempt ends with its ``restart`` record.

    Examples
    --------
    >>> split_attempts([{"step": 5}, {"step": 5, "restart": 1}, {"step": 1}])
    [[{'step': 5}, {'step': 5, 'restart': 1}], [{'step': 1}]]
    """
    attempts: list[list[dict[str, Any]]] = [[]]
    for record in records:
        attempts[-1].append(record)
        if "restart" in record:
            attempts.append([])
    return attempts


def append_log(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Add one record (one line, flushed)."""
    with open(Path(run_dir) / LOG_NAME, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def plot_log(run_dir: str | Path, *, title: str = "", constant_loss: float | None = None) -> Path:
    """Write ``training.png``: training loss and validation errors against steps.

    Earlier, stalled attempts are drawn in grey, stalls as red dashed lines,
    and `constant_loss` (the loss of the answer that ignores the image,
    :func:`biounet.training.stall.constant_loss`) as a dotted line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attempts = split_attempts(read_log(run_dir))
    records = attempts[-1]
    train = [r for r in records if "loss" in r]
    val = [r for r in records if any(k.startswith("val_") for k in r)]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for number, earlier in enumerate(attempts[:-1], 1):  # stalled attempts, in grey
        points = [(r["step"], r["loss"]) for r in earlier if "loss" in r]
        if points:
            ax_loss.plot(*zip(*points, strict=True), lw=1, color="0.7", label=f"attempt {number}")
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, color="C0")
    if constant_loss is not None and math.isfinite(constant_loss):
        ax_loss.axhline(constant_loss, color="0.4", ls=":", lw=1, label="constant answer")
    stalls = [r for attempt in attempts for r in attempt if "stall" in r]
    for r in stalls:
        for ax in (ax_loss, ax_val):
            ax.axvline(r["step"], color="C3", ls="--", lw=1)
        ax_loss.text(
            r["step"],
            0.98,
            " stalled",
            color="C3",
            fontsize=8,
            va="top",
            transform=ax_loss.get_xaxis_transform(),
        )
    if len(attempts) > 1:
        restart = attempts[-2][-1]
        ax_loss.set_title(f"training loss (restart {restart['restart']}, seed {restart['seed']})")
    if len(attempts) > 1 or constant_loss is not None:
        ax_loss.legend(fontsize=7)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("weighted cross-entropy")
    ax_loss.set_yscale("log")
    if len(attempts) == 1:
        ax_loss.set_title("training loss" + (" (stalled)" if stalls else ""))
    for key in sorted({k for r in val for k in r if k.startswith("val_")}):
        points = [(r["step"], r[key]) for r in val if key in r]
        ax_val.plot(*zip(*points, strict=True), marker="o", ms=3, label=key[4:])
    ax_val.set_xlabel("step")
    ax_val.set_title("validation")
    if val:
        ax_val.legend()
    ax_val.grid(alpha=0.3)
    ax_loss.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(run_dir) / PLOT_NAME
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
