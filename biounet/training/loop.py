"""Training as in the paper (Ronneberger et al. 2015, Sec. 3).

"The input images and their corresponding segmentation maps are used to
train the network with the stochastic gradient descent implementation of
Caffe. [...] we favor large input tiles over a large batch size and hence
reduce the batch to a single image. Accordingly we use a high momentum
(0.99)". The loss is the weighted cross-entropy of Eq. 1 with the weight
map of Eq. 2, over the valid output region of each tile.

:func:`train` is a plain loop (load, precompute weight maps, sample
augmented tiles, step, validate, checkpoint). Sample ``g`` of a run is a
pure function of ``(seed, g)``, whichever process draws it, so a resumed run
continues exactly where it stopped, DataLoader workers change nothing, and
``N`` ranks of DistributedDataParallel with batch ``b`` equal one process
with batch ``N * b``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biounet.device import Runtime
from biounet.errors import BiounetError
from biounet.evaluation.table import is_improvement
from biounet.inference.outputs import foreground_probability
from biounet.inference.segmentation import predict
from biounet.io.atomic import atomic_output, os_error_message, sweep
from biounet.network.checkpoint import cpu_state, load_checkpoint, save_checkpoint
from biounet.network.decision import DecisionRule
from biounet.network.normalize import normalize
from biounet.network.unet import UNet, first_mismatch
from biounet.training import ddp
from biounet.training.averaging import WeightAverage
from biounet.training.calibrate import calibrate, objective
from biounet.training.config import TrainConfig, dump_config, format_duration
from biounet.training.data import Sample, load_pairs
from biounet.training.loss import weighted_cross_entropy
from biounet.training.runlog import LOG_NAME, PLOT_NAME, append_log, plot_log, truncate_log
from biounet.training.schedule import learning_rate
from biounet.training.tiles import DeviceTiles, TileDataset, tiles_on_device

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
LATEST = "latest.pt"
BEST = "best.pt"


class _Indices(torch.utils.data.Sampler):
    """Global sample indices of this rank from `start` step on (see :mod:`biounet.training.ddp`)."""

    def __init__(self, start: int, stop: int, batch: int, rank: int, world: int) -> None:
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self):
        for step in range(self.start, self.stop):
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch


@dataclass(frozen=True)
class TrainSummary:
    """What a call of :func:`train` did."""

    run_dir: Path
    steps: int
    seconds: float  # training time of the whole run, earlier sessions included
    last_loss: float
    best: dict[str, float]
    unfinished: bool = False  # stopped before config.iterations (time limit, stop_after)


def load_data(config: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """The training and validation pairs of a run, read and checked.

    Raises
    ------
    BiounetError
        Missing or unreadable files, labels that do not fit the images,
        images with NaN or infinite pixels, too few pairs to hold some out.
    """
    d = config.data
    if not d.images:
        raise BiounetError("no training images given (--images)")
    samples = load_pairs(
        d.images, d.labels or None, label_kind=d.label_kind, foreground=d.foreground
    )
    if d.val_images:
        val = load_pairs(
            d.val_images, d.val_labels or None, label_kind=d.label_kind, foreground=d.foreground
        )
        return samples, val
    if d.val_count >= len(samples):
        raise BiounetError(f"{d.images}: {len(samples)} pairs, cannot hold out {d.val_count}")
    cut = len(samples) - d.val_count
    return samples[:cut], samples[cut:]


def validate(
    model: UNet,
    images: list[np.ndarray],
    truth: list[np.ndarray],
    runtime: Runtime,
    label_kind: str = "binary",
) -> tuple[dict[str, float], DecisionRule]:
    """Score the model on whole held-out images, with its decision rule calibrated on them.

    Parameters
    ----------
    model : UNet
    images : list of ndarray of shape (C, M, N)
        Held-out images as stored (the model normalises them).
    truth : list of ndarray of shape (M, N), int
        For ``binary``: the object masks after separation (1-px gaps between
        touching objects), so that the 4-connected cells are the objects. For
        ``instance``: the instance labels.
    runtime : Runtime
    label_kind : {'binary', 'instance'}

    Returns
    -------
    scores : dict
        ``val_rand_error`` (binary) or ``val_seg`` (instance) with the
        calibrated rule, ``val_pixel_error`` at its threshold.
    rule : DecisionRule
        See :func:`biounet.training.calibrate.calibrate`.
    """
    model.eval()
    probs = []
    for image in images:
        p = predict(image, model, axes="CYX", runtime=runtime)[0]
        probs.append(foreground_probability(p))
    rule, scores = calibrate(probs, truth, label_kind)
    return scores, rule


def _train_state(
    step: int,
    optimizer: torch.optim.Optimizer,
    best: dict[str, float],
    config: TrainConfig,
    scaler: Any,
    raw: UNet | None,
) -> dict[str, Any]:
    """A checkpoint's training state; `raw`: the trained weights when the model is an average."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "best": best,
        "config": config.to_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    if raw is not None:
        state["raw_model"] = cpu_state(raw)
    return {"train_state": state}


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


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    runtime: Runtime,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
    data: tuple[list[Sample], list[Sample]] | None = None,
) -> TrainSummary:
    """Train a U-Net; write checkpoints, the metrics log and plots to `run_dir`.

    Parameters
    ----------
    config : TrainConfig
    run_dir : path
        Created by :func:`prepare_run` (or an existing run when resuming).
    runtime : Runtime
        Device and precision.
    resume : bool
        Continue from ``run_dir/latest.pt``.
    progress : bool
        Show a progress bar with the loss and iterations per second.
    stop_after : int, optional
        Stop after this many steps of this call (the run stays resumable).
    data : (list of Sample, list of Sample), optional
        The pairs of :func:`load_data`, if already read.

    Returns
    -------
    TrainSummary
    """
    run_dir = Path(run_dir)
    rank, world = ddp.rank(), ddp.world_size()
    main = rank == 0
    train_set, val_set = data if data is not None else load_data(config)
    targets = _targets(config, train_set, run_dir)
    val_images = [s.image for s in val_set]
    if config.data.label_kind == "instance":
        val_truth = [s.instances for s in val_set]
    else:
        val_truth = [t.classes for t in _targets(config, val_set, run_dir)] if val_set else []
    select_by = objective(config.data.label_kind)
    images = [normalize(s.image, config.normalization) for s in train_set]
    torch.manual_seed(config.seed)
    model = UNet(config.model, config.normalization)
    start, best, elapsed = 0, {}, 0.0
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda") if runtime.amp_dtype == torch.float16 else None
    averaged_state = None
    if resume:
        start, best, averaged_state = _restore(run_dir, model, optimizer, scaler)
        if main:
            elapsed = truncate_log(run_dir, start)
    model = runtime.prepare(model)
    average = WeightAverage(model, config.ema, averaged_state) if config.ema else None
    shipped = average.model if average is not None else model  # validated and saved
    raw = model if average is not None else None
    _move_optimizer_state(optimizer, runtime.device)
    net = ddp.wrap(model, runtime) if world > 1 else model
    stop = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    on_device = tiles_on_device(config, runtime)
    cut = DeviceTiles(images, targets, config, runtime.device) if on_device else None
    loader = torch.utils.data.DataLoader(
        TileDataset(images, targets, config, plans=on_device),
        batch_size=config.batch_size,
        sampler=_Indices(start, stop, config.batch_size, rank, world),
        num_workers=config.workers,
        pin_memory=runtime.is_cuda,
        persistent_workers=False,
        generator=torch.Generator(),
        worker_init_fn=quiet_broken_connections if config.workers else None,
    )
    if main:
        log.info(
            f"training {len(train_set)} image(s), validating on {len(val_set)}; "
            f"steps {start} -> {stop} of {config.iterations}; {runtime.describe()}"
            + ("; tiles cut on the device" if on_device else "")
            + (f"; {world} ranks" if world > 1 else "")
        )
    with _bar(start, stop, progress and main) as bar:  # closed also on an interrupt
        t0, window, loss_value, step = time.perf_counter(), [], math.nan, start
        tick = time.perf_counter()
        for step, batch in enumerate(loader, start + 1):
            net.train()
            x, y, w = cut(batch) if cut is not None else batch
            x = runtime.tensor(x)
            y, w = y.to(runtime.device, non_blocking=True), w.to(runtime.device, non_blocking=True)
            with runtime.autocast():
                logits = net(x)
            loss = weighted_cross_entropy(logits, y, w)
            rate = learning_rate(
                step,
                lr=config.lr,
                iterations=config.iterations,
                schedule=config.lr_schedule,
                warmup=config.warmup,
            )
            for group in optimizer.param_groups:
                group["lr"] = rate
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if average is not None:
                average.update(model, step)
            window.append(loss.detach())  # no host synchronisation per step
            bar.update(1)
            at_log = step % config.log_every == 0 or step == stop
            out_of_time = at_log and _time_is_up(
                config.time_limit, time.perf_counter() - t0, world, runtime.device
            )
            last = step == stop or out_of_time
            checks = step % config.val_every == 0 or step % config.checkpoint_every == 0
            if at_log or last or checks:  # the losses reach the host: check them
                values = torch.stack(window).float().cpu().numpy()
                if not np.isfinite(values).all():
                    first_bad = int(np.argmin(np.isfinite(values)))
                    bad_step = step - len(values) + 1 + first_bad
                    raise BiounetError(
                        f"step {bad_step}: the loss is {values[first_bad]}; lower --lr"
                    )
            if at_log or last:
                loss_value = float(values[-1])
                bar.set_postfix_str(f"loss {float(values.mean()):.4f}", refresh=False)
                now = time.perf_counter()
                if main:
                    append_log(
                        run_dir,
                        {
                            "step": step,
                            "loss": float(values.mean()),
                            "lr": rate,
                            "it_per_s": len(values) / (now - tick),
                            "seconds": elapsed + now - t0,
                        },
                    )
                window, tick = [], now
            if main and val_set and (step % config.val_every == 0 or last):
                scores, shipped.decision = validate(
                    shipped, val_images, val_truth, runtime, config.data.label_kind
                )
                rule = {
                    "threshold": shipped.decision.threshold,
                    "min_size": shipped.decision.min_size,
                }
                append_log(run_dir, {"step": step, **scores, "decision": rule})
                if is_improvement(select_by, scores[select_by], best.get(select_by)):
                    best = {"step": step, **scores}
                    save_checkpoint(
                        run_dir / BEST,
                        shipped,
                        **_train_state(step, optimizer, best, config, scaler, raw),
                    )
                title = (
                    f"{run_dir.name}: {config.model.features} features, "
                    f"lr {config.lr} ({config.lr_schedule})"
                )
                plot_log(run_dir, title=title)
                tick = time.perf_counter()
            if main and (step % config.checkpoint_every == 0 or last):
                save_checkpoint(
                    run_dir / LATEST,
                    shipped,
                    **_train_state(step, optimizer, best, config, scaler, raw),
                )
            if out_of_time:
                if main:
                    log.info(
                        f"{run_dir}: time limit of {format_duration(config.time_limit)} reached "
                        f"at step {step}; continue with biounet train --resume {run_dir}"
                    )
                break
    if world > 1:  # leave together: gloo aborts a rank whose peer tears down first
        torch.distributed.barrier()
    return TrainSummary(
        run_dir,
        step,
        elapsed + time.perf_counter() - t0,
        loss_value,
        best,
        step < config.iterations,
    )


def _time_is_up(limit: float | None, seconds: float, world: int, device: torch.device) -> bool:
    """Whether this call has trained for `limit` seconds; all ranks agree (rank 0's clock)."""
    if limit is None:
        return False
    up = seconds >= limit
    if world > 1:
        flag = torch.tensor([float(up)], device=device)
        torch.distributed.broadcast(flag, src=0)
        up = bool(flag.item())
    return up


def _targets(config: TrainConfig, samples: list[Sample], run_dir: Path) -> list[Any]:
    from biounet.training.weight_map import weight_maps

    return weight_maps([s.instances for s in samples], config.weights, cache_dir=run_dir / "cache")


def _restore(
    run_dir: Path, model: UNet, optimizer: torch.optim.Optimizer, scaler: Any
) -> tuple[int, dict[str, float], dict[str, Any] | None]:
    """Load the run's latest state into `model` (the trained weights) and `optimizer`.

    Returns the step, the best scores so far, and the averaged weights when
    the run keeps a weight average (else None).
    """
    path = run_dir / LATEST
    if not path.exists():
        raise BiounetError(f"{run_dir}: no {LATEST} to resume from")
    ckpt = load_checkpoint(path)
    state = ckpt.get("train_state")
    if not isinstance(state, dict) or not state:
        raise BiounetError(f"{path}: holds no training state")
    averaged = ckpt.get("model_state") if "raw_model" in state else None
    try:
        model.load_state_dict(state.get("raw_model", ckpt.get("model_state")))
    except RuntimeError as exc:
        raise BiounetError(
            f"{path}: does not fit this run's model ({first_mismatch(exc)})"
        ) from None
    except (TypeError, AttributeError, KeyError) as exc:
        raise BiounetError(f"{path}: damaged training state (weights: {exc})") from None
    try:
        model.decision = DecisionRule(**ckpt.get("decision", {}))
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"]), dict(state["best"]), averaged
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise BiounetError(
            f"{path}: damaged training state ({type(exc).__name__}: {reason}); "
            "it cannot be resumed, start again with --out"
        ) from None


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                state[key] = value.to(device)


def quiet_broken_connections(worker_id: int | None = None) -> None:
    """DataLoader worker set-up: no traceback when the main process goes away.

    A worker hands each batch's shared memory to the main process over a
    connection (``multiprocessing.resource_sharer``). If training is stopped
    (Ctrl-C, SIGTERM) while the main process is receiving one, the worker's
    sharing thread finds the connection closed and prints a traceback through
    ``sys.excepthook``; that is expected and not worth showing. Other errors
    are printed as before.
    """
    import sys

    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, (BrokenPipeError, ConnectionResetError, EOFError)):
            return
        previous(kind, value, tb)

    sys.excepthook = hook


def _bar(start: int, stop: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=stop, initial=start, unit="it", disable=not enabled, dynamic_ncols=True)
