"""The record of a training run: a JSON-lines metrics log and its plots.

``metrics.jsonl`` holds one JSON object per line: training records
(``{"step", "loss", "lr", "it_per_s", "seconds"}``) every ``log_every``
steps and validation records (``{"step", "val_pixel_error",
"val_rand_error", ...}``). ``training.png`` plots both. A resumed run first
drops the records written after its checkpoint, so the log matches the
weights.
"""

from __future__ import annotations

import json
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

    Returns
    -------
    float
        The training seconds logged up to `step`, from which a resumed run
        continues counting.
    """
    records = [r for r in read_log(run_dir) if r["step"] <= step]
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


def append_log(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Add one record (one line, flushed)."""
    with open(Path(run_dir) / LOG_NAME, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def plot_log(run_dir: str | Path, *, title: str = "") -> Path:
    """Write ``training.png``: training loss and validation errors against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(run_dir)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if any(k.startswith("val_") for k in r)]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("weighted cross-entropy")
    ax_loss.set_yscale("log")
    ax_loss.set_title("training loss")
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
