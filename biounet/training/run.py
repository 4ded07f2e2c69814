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
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from biounet.device import Runtime
from biounet.errors import BiounetError, OutOfMemory, is_out_of_memory
from biounet.io.atomic import WriteError, atomic_output, os_error_message, sweep
from biounet.io.boundary import check_outputs
from biounet.network.checkpoint import load_checkpoint
from biounet.signals import terminate_as_interrupt
from biounet.training import ddp
from biounet.training.config import TrainConfig, dump_config, load_config
from biounet.training.loop import BEST, CONFIG_NAME, LATEST, TrainSummary, load_data, train
from biounet.training.runlog import LOG_NAME, PLOT_NAME, append_log, read_log, training_seconds
from biounet.training.stall import restart_config

log = logging.getLogger(__name__)


class TrainingInterrupted(BiounetError):
    """Ctrl-C or SIGTERM stopped a run; the message says how to continue it."""


def run_config(run_dir: str | Path) -> TrainConfig:
    """The config of an existing run folder (its ``config.yaml``)."""
    return load_config(Path(run_dir) / CONFIG_NAME)


def saved_config(run_dir: str | Path) -> TrainConfig:
    """The config saved in the run's ``latest.pt``: what its weights were trained with.

    Raises
    ------
    BiounetError
        No ``latest.pt``, or one whose training state is missing or damaged.
    """
    run_dir = Path(run_dir)
    latest = run_dir / LATEST
    if not latest.is_file():
        raise BiounetError(f"{run_dir}: no {LATEST} to resume from; start again with --out")
    state = load_checkpoint(latest).get("train_state")
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise BiounetError(
            f"{latest}: holds no readable training state (no saved configuration); "
            "it cannot be resumed, start again with --out"
        )
    try:
        return TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as exc:
        raise BiounetError(
            f"{latest}: the saved configuration is damaged ({exc}); start again with --out"
        ) from None


def data_inputs(config: TrainConfig) -> list[Path]:
    """The files and folders of a run's data (images, labels, validation pairs), as given."""
    d = config.data
    return [Path(p) for p in (d.images, d.labels, d.val_images, d.val_labels) if p]


def check_run_boundary(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool,
    inputs: tuple[str | Path, ...] = (),
) -> None:
    """Refuse a run whose outputs overlap its inputs, before anything is written.

    A new run's folder must not be, hold or lie inside any input (the data,
    the config file it was read from); ``--overwrite`` would otherwise
    remove an input with the old record. A resumed run replaces only its
    own record (:data:`~biounet.training.loop.RECORD` and ``cache/``), which
    must not hold the data or an extra input such as a ``--config`` file.
    """
    run_dir = Path(run_dir)
    sources = [*(Path(p) for p in inputs if p), *data_inputs(config)]  # compared as real paths
    if resume:
        check_outputs([run_dir / name for name in (*RECORD, "cache")], sources)
    else:
        check_outputs([run_dir], sources, inside=True)


def run_training(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    runtime: Runtime,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    accept_changes: bool = False,
    inputs: tuple[str | Path, ...] = (),
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
    accept_changes : bool
        Resume although `config` changes settings saved in the checkpoint
        (other than :data:`RESUMABLE_CHANGES`); they are logged.
    inputs : tuple of path
        Further input files (the ``--config`` file) that no output may overlap.

    Returns
    -------
    TrainSummary

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C or SIGTERM, after the last checkpoint was written.
    BiounetError
        A non-empty folder without `overwrite`, bad data, an unreadable run,
        an output that overlaps an input, changed settings on resume.
    """
    run_dir = Path(run_dir)
    check_run_boundary(config, run_dir, resume=resume, inputs=inputs)
    if resume:
        changes = check_resume(config, run_dir, accept_changes=accept_changes)
        if changes and ddp.rank() == 0:
            log.warning(f"{run_dir}: resuming with changed settings: {changes}")
    elif ddp.rank() == 0:
        check_new_run(run_dir, overwrite=overwrite)
    data = load_data(config)  # the inputs are checked before the run folder appears
    created = False
    fresh = not run_dir.is_dir() or not any(run_dir.iterdir())  # nothing here is someone's
    if ddp.rank() == 0:
        if not resume:
            created = prepare_run(config, run_dir, overwrite=overwrite)
        elif _recorded(run_dir) != config:  # record the new total
            with atomic_output(run_dir / CONFIG_NAME, overwrite=True) as tmp:
                tmp.write_text(dump_config(config))
    if ddp.world_size() > 1:
        import torch.distributed as dist

        dist.barrier()
    try:
        with terminate_as_interrupt(quiet_children=True):
            return train_with_restarts(
                config, run_dir, runtime=runtime, resume=resume, progress=progress, data=data
            )
    except BaseException as exc:
        if not resume and ddp.rank() == 0:
            discard_unstarted(run_dir, created, fresh=fresh)
        if isinstance(exc, KeyboardInterrupt):
            raise TrainingInterrupted(interrupted_message(run_dir)) from None
        if isinstance(exc, OSError):  # a full disk, a folder made read-only meanwhile
            raise BiounetError(os_error_message(exc, run_dir) + _continue(run_dir)) from None
        if isinstance(exc, WriteError):  # the same, met while writing a checkpoint or plot
            raise BiounetError(str(exc) + _continue(run_dir)) from None
        if is_out_of_memory(exc):  # MemoryError, torch's "out of memory" RuntimeError
            raise OutOfMemory(str(run_dir), _continue(run_dir)) from None
        raise


#: The files of a run's record; ``--overwrite`` removes them (and only them).
RECORD = (CONFIG_NAME, LATEST, BEST, LOG_NAME, PLOT_NAME)


def check_new_run(run_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Check, without creating anything, that a new run can start in `run_dir`.

    Raises
    ------
    BiounetError
        A file where the folder should be, a non-empty folder without
        `overwrite`, or a folder that cannot be created or written.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise BiounetError(f"{run_dir}: is a file, not a run folder; choose another --out")
    if run_dir.is_dir():
        sweep(run_dir)
        if any(run_dir.iterdir()) and not overwrite:
            raise BiounetError(
                f"{run_dir}: folder is not empty (resume with --resume {run_dir}, "
                "start over with --overwrite, or choose another --out)"
            )
        if not os.access(run_dir, os.W_OK):
            raise BiounetError(f"{run_dir}: folder is not writable")
        return run_dir
    parent = next((p for p in run_dir.absolute().parents if p.exists()), Path("/"))
    if not parent.is_dir():
        raise BiounetError(f"{run_dir}: {parent} is a file, not a folder; choose another --out")
    if not os.access(parent, os.W_OK):
        raise BiounetError(f"{run_dir}: cannot create the folder, {parent} is not writable")
    return run_dir


def prepare_run(config: TrainConfig, run_dir: Path, *, overwrite: bool = False) -> bool:
    """Create a new run folder holding ``config.yaml``; check the data first.

    With `overwrite` a non-empty folder is allowed and the previous run's
    record (:data:`RECORD`) is removed, so the new run starts a clean log;
    other files are left alone. ``config.yaml`` is created exclusively: of
    two runs started in one folder at once, one is refused.

    Returns
    -------
    bool
        Whether the folder was created (and may be removed again if the run
        fails before its first checkpoint).

    Raises
    ------
    BiounetError
        A file where the folder should be, a non-empty folder without
        `overwrite`, a folder that cannot be created or written.
    """
    run_dir = check_new_run(run_dir, overwrite=overwrite)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in RECORD:
                (run_dir / name).unlink(missing_ok=True)
    except OSError as exc:
        raise BiounetError(os_error_message(exc, run_dir)) from None
    try:
        with atomic_output(run_dir / CONFIG_NAME, overwrite=False) as tmp:
            tmp.write_text(dump_config(config))
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise
    return created


def discard_unstarted(run_dir: Path, created: bool, *, fresh: bool | None = None) -> None:
    """Remove the record of a new run that failed before its first checkpoint.

    Such a run has nothing to resume from; removing it lets the corrected
    command start in the same folder. Its weight-map cache goes too if the
    folder was `fresh` (made by this run, or empty before it: the cache is
    then this run's own; default: `created`). The folder itself goes if this
    run created it and nothing else is in it.
    """
    if (run_dir / LATEST).exists():
        return
    for name in RECORD:
        with contextlib.suppress(OSError):
            (run_dir / name).unlink(missing_ok=True)
    if created if fresh is None else fresh:
        shutil.rmtree(run_dir / "cache", ignore_errors=True)
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()


def train_with_restarts(
    config: TrainConfig,
    run_dir: Path,
    *,
    runtime: Runtime,
    resume: bool,
    progress: bool,
    data: tuple[list, list],
) -> TrainSummary:
    """:func:`biounet.training.loop.train`, restarted from scratch when it stalls.

    A stalled run (:mod:`biounet.training.stall`) starts again with a new
    seed and a warm-up (:func:`restart_run`), at most
    ``config.stall_restarts`` times over the run's life (restarts logged
    before a resume count too); the time limit covers all attempts of one
    call. After the last restart a stalled run ends as it is, saying so; under
    ``torchrun`` it ends at the first stall.
    """
    limit, t0 = config.time_limit, time.perf_counter()
    summary = train(config, run_dir, runtime=runtime, resume=resume, progress=progress, data=data)
    while summary.stalled is not None:
        if ddp.world_size() > 1:  # the ranks would have to agree on every restart
            log.warning(f"{run_dir}: no restart under torchrun; start it again with another --seed")
            return summary
        done = restart_count(run_dir)
        left = None if limit is None else limit - (time.perf_counter() - t0)
        if done >= config.stall_restarts or (left is not None and left <= 0):
            log.warning(
                f"{run_dir}: still stalled after {done} restart(s); for low-contrast images try "
                "normalization: {mode: fit}, else another --lr or --seed"
            )
            return summary
        config = restart_run(config, run_dir, summary.steps, summary.stalled)
        summary = train(
            config, run_dir, runtime=runtime, progress=progress, data=data, time_limit=left
        )
    return summary


def restart_count(run_dir: Path) -> int:
    """How often the run in `run_dir` was restarted after a stall (its ``restart`` records)."""
    return sum(1 for r in read_log(run_dir) if "restart" in r)


def restart_run(config: TrainConfig, run_dir: Path, step: int, reason: str) -> TrainConfig:
    """Start a stalled run again from scratch in its folder; the new attempt's config.

    One process only (:func:`train_with_restarts` makes no restarts under ``torchrun``).

    The checkpoints go, ``config.yaml`` records the new seed and warm-up
    (:func:`biounet.training.stall.restart_config`), and ``metrics.jsonl``
    keeps the stalled attempt's records followed by one ``restart`` record
    (``{"step", "restart", "seed", "warmup", "reason"}``), after which the
    new attempt's records start again at step 1.
    """
    new = restart_config(config)
    number = restart_count(run_dir) + 1
    for name in (LATEST, BEST):
        (run_dir / name).unlink(missing_ok=True)
    with atomic_output(run_dir / CONFIG_NAME, overwrite=True) as tmp:
        tmp.write_text(dump_config(new))
    append_log(
        run_dir,
        {
            "step": step,
            "restart": number,
            "seed": new.seed,
            "warmup": new.warmup,
            "reason": reason,
        },
    )
    log.warning(
        f"{run_dir}: restart {number} of at most {config.stall_restarts} from scratch, "
        f"seed {new.seed}, warm-up {new.warmup} steps"
    )
    return new


#: What a resumed run may change: when it stops, how often it reports, and what
#: leaves the trained weights' trajectory as it is (where tiles are cut: the same
#: tiles; weight averaging: only what is validated and saved).
RESUMABLE_CHANGES = (
    "iterations",
    "time_limit",
    "val_every",
    "checkpoint_every",
    "log_every",
    "workers",
    "augment_on",
    "ema",
)


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_settings(saved: TrainConfig, config: TrainConfig) -> list[str]:
    """``"key: old -> new"`` for every setting `config` changes, but :data:`RESUMABLE_CHANGES`.

    Examples
    --------
    >>> changed_settings(TrainConfig(lr=0.001), TrainConfig(lr=0.01, iterations=5))
    ['lr: 0.001 -> 0.01']
    """
    old, new = _flat(saved.to_dict()), _flat(config.to_dict())
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in dict.fromkeys([*old, *new])
        if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key)
    ]


def check_resume(config: TrainConfig, run_dir: str | Path, *, accept_changes: bool = False) -> str:
    """Refuse to resume a run with settings that would change what it computes.

    `config` (the run's ``config.yaml``, perhaps edited, with the command's
    options) is compared with the configuration saved in ``latest.pt``, the
    one its weights were trained with.

    Returns
    -------
    str
        The changed settings (``"lr: 0.001 -> 0.01; ..."``), empty if none.

    Raises
    ------
    BiounetError
        Without `accept_changes`, naming every changed setting other than
        :data:`RESUMABLE_CHANGES` with its saved and its new value.
    """
    run_dir = Path(run_dir)
    changes = changed_settings(saved_config(run_dir), config)
    if changes and not accept_changes:
        listed = "; ".join(c.replace(": ", " is ", 1).replace(" -> ", " in latest.pt, not ", 1)
                           for c in changes)  # fmt: skip
        raise BiounetError(
            f"{run_dir}: a resumed run keeps its settings; {listed} (start a new run with "
            "--out to change them, or continue anyway with --accept-changes)"
        )
    return "; ".join(changes)


def _recorded(run_dir: Path) -> TrainConfig | None:
    """The run's ``config.yaml``, or None if it cannot be read (it is then written again)."""
    try:
        return run_config(run_dir)
    except BiounetError:
        return None


def _continue(run_dir: Path) -> str:
    """How to continue after a failure: from the last checkpoint, if there is one."""
    latest = run_dir / LATEST
    if not latest.is_file():
        return ""
    try:
        step = saved_step(latest)
    except BiounetError:
        return ""
    return f"; {LATEST} holds step {step}, continue with biounet train --resume {run_dir}"


def finish_run(
    config: TrainConfig, run_dir: str | Path, *, runtime: Runtime, progress: bool = False
) -> int:
    """Bring the run in `run_dir` to its last step: start it, resume it, or see it is done.

    What pipelines call for every training stage, so that calling them again
    continues where they stopped. A resumed run keeps its own recorded config
    but takes `config`'s ``iterations`` and ``time_limit``; the time limit is
    the run's whole budget, so a run that has spent it (its log's training
    time) is done and is not trained again.

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
    step = saved_step(latest)
    if step >= config.iterations:
        return step
    left = config.time_limit
    if left is not None:
        left -= training_seconds(read_log(run_dir))
        if left <= 0:
            log.info(f"{run_dir}: its time limit is spent at step {step}; done")
            return step
    recorded = run_config(run_dir)
    resumed = replace(recorded, time_limit=left, iterations=config.iterations)
    return run_training(resumed, run_dir, runtime=runtime, resume=True, progress=progress).steps


def interrupted_message(run_dir: str | Path) -> str:
    """The one-line message for an interrupted run: where it can continue from."""
    latest = Path(run_dir) / LATEST
    try:
        step = saved_step(latest) if latest.is_file() else None
    except BiounetError:
        step = None
    if step is None:
        return f"{run_dir}: interrupted before the first checkpoint; start again"
    return (
        f"{run_dir}: interrupted; {LATEST} holds step {step}; continue with "
        f"biounet train --resume {run_dir}"
    )


def saved_step(latest: str | Path) -> int:
    """The step a checkpoint's training state holds.

    Raises
    ------
    BiounetError
        A checkpoint without a readable training state.
    """
    state = load_checkpoint(latest).get("train_state")
    step = state.get("step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise BiounetError(f"{latest}: holds no readable training state (no step)")
    return step


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
        if summary.unfinished and summary.stalled is None
        else ""
    )
    if summary.stalled is not None:
        more = f"; stalled on the trivial answer ({summary.stalled})"
    return (
        f"{summary.run_dir}: {summary.steps} steps, {summary.seconds / 60:.1f} min of training, "
        f"last loss {summary.last_loss:.4f}{best_text}{more}"
    )
