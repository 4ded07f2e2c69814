"""A training run as a folder: start it, resume it, stop it cleanly.

The command line (``biounet train``), the ISBI pipeline and the tests all go
through :func:`run_training`, so a new run, a resumed one and one extended
to more iterations behave the same everywhere, under ``torchrun`` too: rank 0
prepares the folder, the other ranks wait for it at a barrier. SIGTERM (a
batch system's pre-emption) stops a run like Ctrl-C; the caller gets
:class:`TrainingInterrupted` with the one line that says where to continue.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from biounet.device import Runtime
from biounet.errors import BiounetError
from biounet.network.checkpoint import load_checkpoint
from biounet.training import ddp
from biounet.training.config import TrainConfig, load_config
from biounet.training.loop import CONFIG_NAME, LATEST, TrainSummary, prepare_run, train


class TrainingInterrupted(BiounetError):
    """Ctrl-C or SIGTERM stopped a run; the message says how to continue it."""


def run_config(run_dir: str | Path) -> TrainConfig:
    """The config of an existing run folder (its ``config.yaml``)."""
    return load_config(Path(run_dir) / CONFIG_NAME)


def run_training(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    runtime: Runtime,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> TrainSummary:
    """Start a new run in `run_dir`, or continue the one there.

    Parameters
    ----------
    config : TrainConfig
        For a resumed run, the run's own config (:func:`run_config`) with any
        changed iterations; it is recorded again when it differs.
    run_dir : path
    runtime : Runtime
        Set up with :func:`biounet.training.ddp.setup` under ``torchrun``.
    resume : bool
        Continue from ``latest.pt``.
    overwrite : bool
        Start a new run in a folder that is not empty.
    progress : bool
        Show a progress bar (rank 0).

    Returns
    -------
    TrainSummary

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C or SIGTERM, after the last checkpoint was written.
    BiounetError
        A non-empty folder without `overwrite`, bad data, an unreadable run.
    """
    run_dir = Path(run_dir)
    if ddp.rank() == 0:
        if not resume:
            prepare_run(config, run_dir, overwrite=overwrite)
        elif run_config(run_dir) != config:
            prepare_run(config, run_dir, overwrite=True)  # record the new total
    if ddp.world_size() > 1:
        import torch.distributed as dist

        dist.barrier()
    try:
        with stop_on_sigterm():
            return train(config, run_dir, runtime=runtime, resume=resume, progress=progress)
    except KeyboardInterrupt:
        raise TrainingInterrupted(interrupted_message(run_dir)) from None


def finish_run(
    config: TrainConfig, run_dir: str | Path, *, runtime: Runtime, progress: bool = False
) -> int:
    """Bring the run in `run_dir` to its last step: start it, resume it, or see it is done.

    What pipelines call for every training stage, so that calling them again
    continues where they stopped. A resumed run keeps its own recorded config
    but takes `config`'s ``time_limit`` and ``iterations``.

    Returns
    -------
    int
        The step the run has reached.
    """
    run_dir = Path(run_dir)
    latest = run_dir / LATEST
    if not latest.exists():
        return run_training(
            config, run_dir, runtime=runtime, overwrite=True, progress=progress
        ).steps
    step = int(load_checkpoint(latest)["train_state"]["step"])
    if step >= config.iterations:
        return step
    recorded = run_config(run_dir)
    resumed = replace(recorded, time_limit=config.time_limit, iterations=config.iterations)
    return run_training(resumed, run_dir, runtime=runtime, resume=True, progress=progress).steps


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM (a batch system's pre-emption) like Ctrl-C while training."""

    def handler(signum, frame):
        # A SIGTERM sent to the whole process group kills the DataLoader workers
        # too; torch's SIGCHLD handler would then raise over our clean stop.
        # (A no-op, not SIG_DFL: a SIGCHLD already pending would print a warning.)
        if hasattr(signal, "SIGCHLD"):
            signal.signal(signal.SIGCHLD, lambda *_: None)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_message(run_dir: str | Path) -> str:
    """The one-line message for an interrupted run: where it can continue from."""
    latest = Path(run_dir) / LATEST
    if not latest.is_file():
        return f"{run_dir}: interrupted before the first checkpoint; start again"
    step = load_checkpoint(latest)["train_state"]["step"]
    return (
        f"{run_dir}: interrupted; {LATEST} holds step {step}; continue with "
        f"biounet train --resume {run_dir}"
    )


def summary_line(summary: TrainSummary) -> str:
    """One line for the end of a run: steps, training time, last loss, best validation."""
    best = summary.best
    names = {"val_seg": "SEG", "val_rand_error": "Rand error", "val_pixel_error": "pixel error"}
    scores = ", ".join(
        f"{names.get(k, k)} {v:.4f}" for k, v in best.items() if k.startswith("val_")
    )
    best_text = f"; best validation at step {best['step']}: {scores}" if best else ""
    more = (
        f"; stopped before the end, continue with biounet train --resume {summary.run_dir}"
        if summary.unfinished
        else ""
    )
    return (
        f"{summary.run_dir}: {summary.steps} steps, {summary.seconds / 60:.1f} min of training, "
        f"last loss {summary.last_loss:.4f}{best_text}{more}"
    )
