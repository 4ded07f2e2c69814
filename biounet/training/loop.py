"""Training as in the paper (Ronneberger et al. 2015, Sec. 3).

"The input images and their corresponding segmentation maps are used to
train the network with the stochastic gradient descent implementation of
Caffe. [...] we favor large input tiles over a large batch size and hence
reduce the batch to a single image. Accordingly we use a high momentum
(0.99)". The loss is the weighted cross-entropy of Eq. 1 with the weight
map of Eq. 2, over the valid output region of each tile.

:func:`train` is a plain loop of named steps (:func:`prepare_data`,
:func:`build_trainee`, :func:`make_loader`, :func:`sgd_step`,
:func:`log_losses`, :func:`validation_step`, the latest checkpoint); a run
that sits on the trivial answer is found and stopped there
(:mod:`biounet.training.stall`). The run folder around it (new, resumed,
restarted) is :mod:`biounet.training.run`. Sample ``g`` of a run is a
pure function of ``(seed, g)``, whichever process draws it, so a resumed run
continues exactly where it stopped, DataLoader workers change nothing, and
``N`` ranks of DistributedDataParallel with batch ``b`` equal one process
with batch ``N * b``.
"""

from __future__ import annotations

import logging
import math
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
from biounet.network.checkpoint import cpu_state, load_checkpoint, save_checkpoint
from biounet.network.decision import DecisionRule
from biounet.network.normalize import Normalization, fit_normalization, normalize
from biounet.network.unet import UNet, first_mismatch
from biounet.training import ddp
from biounet.training.averaging import WeightAverage
from biounet.training.calibrate import calibrate, objective
from biounet.training.config import TrainConfig, format_duration
from biounet.training.data import Sample, load_pairs
from biounet.training.loss import weighted_cross_entropy
from biounet.training.runlog import (
    append_log,
    plot_log,
    read_log,
    split_attempts,
    training_seconds,
    truncate_log,
)
from biounet.training.schedule import learning_rate
from biounet.training.stall import TrivialAnswer, stall_reason, trivial_answer
from biounet.training.tiles import DeviceTiles, TileDataset, tiles_on_device

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
LATEST = "latest.pt"
BEST = "best.pt"


class StepIndices(torch.utils.data.Sampler):
    """Global sample indices of this rank for steps ``start + 1 .. stop`` (see ddp)."""

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
    unfinished: bool = False  # stopped before config.iterations (time limit, stop_after, stall)
    stalled: str | None = None  # why the run was found stalled and stopped (biounet.training.stall)


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


@dataclass(frozen=True)
class RunData:
    """A run's pairs, ready for the loop.

    Attributes
    ----------
    images : list of ndarray of shape (C, M, N), float32
        The training images, normalised.
    targets : list of Target
        Their classes and weight maps (Eq. 2).
    val_images : list of ndarray of shape (C, M, N)
        The held-out images as stored (the model normalises them).
    val_truth : list of ndarray of shape (M, N), int
        Their instance labels (``instance``) or separated object masks (``binary``).
    trivial : TrivialAnswer
        What the answer that ignores the image scores (the stall check).
    normalization : Normalization
        The run's grey-value scaling, fitted to the training images if its
        mode is ``fit`` (what the model stores).
    """

    images: list[np.ndarray]
    targets: list[Any]
    val_images: list[np.ndarray]
    val_truth: list[np.ndarray]
    trivial: TrivialAnswer
    normalization: Normalization


def prepare_data(
    config: TrainConfig, run_dir: Path, pairs: tuple[list[Sample], list[Sample]]
) -> RunData:
    """Normalise the training images and compute the targets (cached under ``run_dir/cache``).

    Raises
    ------
    BiounetError
        A ``fit`` normalisation on constant images.
    """
    train_set, val_set = pairs
    try:
        norm = fit_normalization([s.image for s in train_set], config.normalization)
    except ValueError as exc:
        raise BiounetError(f"{config.data.images}: {exc}") from None
    targets = _targets(config, train_set, run_dir)
    if config.data.label_kind == "instance":
        val_truth = [s.instances for s in val_set]
    else:
        val_truth = [t.classes for t in _targets(config, val_set, run_dir)] if val_set else []
    return RunData(
        images=[normalize(s.image, norm) for s in train_set],
        targets=targets,
        val_images=[s.image for s in val_set],
        val_truth=val_truth,
        trivial=trivial_answer(targets, val_truth),
        normalization=norm,
    )


@dataclass
class Trainee:
    """The network being trained and what moves with it.

    Attributes
    ----------
    model : UNet
        The trained weights, on the device.
    optimizer : torch.optim.SGD
    scaler : torch.amp.GradScaler or None
        Gradient scaling (float16 only).
    average : WeightAverage or None
        The moving average of the weights, when ``config.ema`` is set.
    """

    model: UNet
    optimizer: torch.optim.Optimizer
    scaler: Any
    average: WeightAverage | None

    @property
    def shipped(self) -> UNet:
        """The model that is validated and saved: the average if there is one."""
        return self.average.model if self.average is not None else self.model

    @property
    def raw(self) -> UNet | None:
        """The trained weights when they differ from :attr:`shipped` (else None)."""
        return self.model if self.average is not None else None

    def state(self, step: int, best: dict[str, float], config: TrainConfig) -> dict[str, Any]:
        """The training state a checkpoint of `step` holds."""
        return _train_state(step, self.optimizer, best, config, self.scaler, self.raw)


def build_trainee(
    config: TrainConfig, norm: Normalization, runtime: Runtime, run_dir: Path, resume: bool
) -> tuple[Trainee, int, dict[str, float]]:
    """A fresh network seeded with ``config.seed``, or the run's latest state when resuming.

    `norm` is the run's normalisation (fitted: :attr:`RunData.normalization`).

    Returns
    -------
    trainee : Trainee
    start : int
        The step it continues from (0 for a new run).
    best : dict
        The best validation so far (empty for a new run).
    """
    torch.manual_seed(config.seed)
    model = UNet(config.model, norm)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda") if runtime.amp_dtype == torch.float16 else None
    start, best, averaged_state = 0, {}, None
    if resume:
        start, best, averaged_state = _restore(run_dir, model, optimizer, scaler)
    model = runtime.prepare(model)
    average = WeightAverage(model, config.ema, averaged_state) if config.ema else None
    _move_optimizer_state(optimizer, runtime.device)
    return Trainee(model, optimizer, scaler, average), start, best


def make_loader(
    config: TrainConfig, data: RunData, steps: tuple[int, int], on_device: bool, runtime: Runtime
) -> torch.utils.data.DataLoader:
    """The tiles of steps ``start + 1 .. stop`` of this rank, in order.

    Parameters
    ----------
    steps : (int, int)
        ``(start, stop)``.
    on_device : bool
        The workers only plan the tiles (:class:`DeviceTiles` cuts them).
    """
    start, stop = steps
    return torch.utils.data.DataLoader(
        TileDataset(data.images, data.targets, config, plans=on_device),
        batch_size=config.batch_size,
        sampler=StepIndices(start, stop, config.batch_size, ddp.rank(), ddp.world_size()),
        num_workers=config.workers,
        pin_memory=runtime.is_cuda,
        persistent_workers=False,
        generator=torch.Generator(),
        worker_init_fn=quiet_broken_connections if config.workers else None,
    )


def sgd_step(
    net: torch.nn.Module, trainee: Trainee, batch: Any, runtime: Runtime, rate: float
) -> torch.Tensor:
    """One optimiser step at learning rate `rate` on a batch ``(x, y, w)``; the loss (on device).

    `net` is the trained model, or its DistributedDataParallel wrapper.
    """
    net.train()
    x, y, w = batch
    x = runtime.tensor(x)
    y, w = y.to(runtime.device, non_blocking=True), w.to(runtime.device, non_blocking=True)
    with runtime.autocast():
        logits = net(x)
    loss = weighted_cross_entropy(logits, y, w)
    optimizer, scaler = trainee.optimizer, trainee.scaler
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
    return loss


def finite_losses(window: list[torch.Tensor], step: int) -> np.ndarray:
    """The losses of the steps up to `step` on the host; an error at the first that is not finite.

    Raises
    ------
    BiounetError
        ``step N: the loss is nan; lower --lr``.
    """
    values = torch.stack(window).float().cpu().numpy()
    if not np.isfinite(values).all():
        first_bad = int(np.argmin(np.isfinite(values)))
        bad_step = step - len(values) + 1 + first_bad
        raise BiounetError(f"step {bad_step}: the loss is {values[first_bad]}; lower --lr")
    return values


def validation_step(
    config: TrainConfig,
    run_dir: Path,
    trainee: Trainee,
    data: RunData,
    step: int,
    best: dict[str, float],
    runtime: Runtime,
) -> tuple[dict[str, float], str | None]:
    """Validate, calibrate the decision rule, keep ``best.pt``, check for a stall, plot.

    Returns
    -------
    best : dict
        The best validation so far (this one if it improved).
    stall : str or None
        Why the run is stalled (:func:`biounet.training.stall.stall_reason`),
        when it is checked (from ``config.stall_after`` steps on) and is.
    """
    shipped = trainee.shipped
    scores, shipped.decision = validate(
        shipped, data.val_images, data.val_truth, runtime, config.data.label_kind
    )
    rule = {"threshold": shipped.decision.threshold, "min_size": shipped.decision.min_size}
    append_log(run_dir, {"step": step, **scores, "decision": rule})
    select_by = objective(config.data.label_kind)
    if is_improvement(select_by, scores[select_by], best.get(select_by)):
        best = {"step": step, **scores}
        save_checkpoint(run_dir / BEST, shipped, **trainee.state(step, best, config))
    stall = None
    if config.stall_after and step >= config.stall_after:
        records = split_attempts(read_log(run_dir))[-1]
        stall = stall_reason(records, step, scores["val_pixel_error"], data.trivial)
        if stall is not None:
            append_log(run_dir, {"step": step, "stall": stall})
    title = (
        f"{run_dir.name}: {config.model.features} features, lr {config.lr} ({config.lr_schedule})"
    )
    plot_log(run_dir, title=title, constant_loss=data.trivial.loss)
    return best, stall


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    runtime: Runtime,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
    data: tuple[list[Sample], list[Sample]] | None = None,
    time_limit: float | None = None,
) -> TrainSummary:
    """Train a U-Net; write checkpoints, the metrics log and plots to `run_dir`.

    The steps: :func:`prepare_data`, :func:`build_trainee`,
    :func:`make_loader`, then per step :func:`sgd_step`, and every
    ``log_every`` steps :func:`log_losses`, every ``val_every``
    :func:`validation_step` (which may find the run stalled, and end it),
    every ``checkpoint_every`` the latest checkpoint.

    Parameters
    ----------
    config : TrainConfig
    run_dir : path
        Created by :func:`biounet.training.run.prepare_run` (or an existing run when resuming).
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
    time_limit : float, optional
        Seconds this call may train, instead of ``config.time_limit`` (what is
        left of a call's budget when a stalled run restarts).

    Returns
    -------
    TrainSummary
    """
    run_dir = Path(run_dir)
    world, main = ddp.world_size(), ddp.rank() == 0
    pairs = data if data is not None else load_data(config)
    prepared = prepare_data(config, run_dir, pairs)
    trainee, start, best = build_trainee(config, prepared.normalization, runtime, run_dir, resume)
    elapsed = 0.0
    if main:  # a resumed run drops the records after its checkpoint; a restart keeps counting
        elapsed = truncate_log(run_dir, start) if resume else training_seconds(read_log(run_dir))
    net = ddp.wrap(trainee.model, runtime) if world > 1 else trainee.model
    stop = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    on_device = tiles_on_device(config, runtime)
    cut = (
        DeviceTiles(prepared.images, prepared.targets, config, runtime.device)
        if on_device
        else None
    )
    loader = make_loader(config, prepared, (start, stop), on_device, runtime)
    if main:
        log.info(
            f"training {len(pairs[0])} image(s), validating on {len(pairs[1])}; "
            f"steps {start} -> {stop} of {config.iterations}; {runtime.describe()}"
            + ("; tiles cut on the device" if on_device else "")
            + (f"; {world} ranks" if world > 1 else "")
        )
    limit = config.time_limit if time_limit is None else time_limit
    stall = None
    with _bar(start, stop, progress and main) as bar:  # closed also on an interrupt
        t0, window, loss_value, step = time.perf_counter(), [], math.nan, start
        tick = time.perf_counter()
        for step, batch in enumerate(loader, start + 1):
            rate = learning_rate(
                step,
                lr=config.lr,
                iterations=config.iterations,
                schedule=config.lr_schedule,
                warmup=config.warmup,
            )
            loss = sgd_step(net, trainee, cut(batch) if cut is not None else batch, runtime, rate)
            if trainee.average is not None:
                trainee.average.update(trainee.model, step)
            window.append(loss.detach())  # no host synchronisation per step
            bar.update(1)
            at_log = step % config.log_every == 0 or step == stop
            out_of_time = at_log and _time_is_up(
                limit, time.perf_counter() - t0, world, runtime.device
            )
            last = step == stop or out_of_time
            at_val = step % config.val_every == 0 or last
            if at_log or last or at_val or step % config.checkpoint_every == 0:
                values = finite_losses(window, step)  # the losses reach the host: check them
            if at_log or last:
                loss_value = float(values[-1])
                bar.set_postfix_str(f"loss {float(values.mean()):.4f}", refresh=False)
                now = time.perf_counter()
                if main:
                    log_losses(run_dir, step, values, rate, now - tick, elapsed + now - t0)
                window, tick = [], now
            if main and pairs[1] and at_val:
                best, stall = validation_step(
                    config, run_dir, trainee, prepared, step, best, runtime
                )
                tick = time.perf_counter()
            stall = _agree(stall, world, runtime.device) if at_val else None
            if main and (step % config.checkpoint_every == 0 or last or stall):
                save_checkpoint(
                    run_dir / LATEST, trainee.shipped, **trainee.state(step, best, config)
                )
            if stall:
                break
            if out_of_time:
                if main:
                    log.info(
                        f"{run_dir}: time limit of {format_duration(limit)} reached "
                        f"at step {step}; continue with biounet train --resume {run_dir}"
                    )
                break
    if stall and main:  # after the progress bar has closed: a line of its own
        log.warning(f"{run_dir}: stalled at step {step}: {stall}")
    if world > 1:  # leave together: gloo aborts a rank whose peer tears down first
        torch.distributed.barrier()
    return TrainSummary(
        run_dir,
        step,
        elapsed + time.perf_counter() - t0,
        loss_value,
        best,
        step < config.iterations,
        stall,
    )


def log_losses(
    run_dir: Path, step: int, values: np.ndarray, rate: float, window_s: float, seconds: float
) -> None:
    """Append a training record: mean loss of the window, rate, iterations per second, time."""
    append_log(
        run_dir,
        {
            "step": step,
            "loss": float(values.mean()),
            "lr": rate,
            "it_per_s": len(values) / window_s,
            "seconds": seconds,
        },
    )


def _agree(stall: str | None, world: int, device: torch.device) -> str | None:
    """Rank 0's stall verdict, on every rank (only rank 0 validates)."""
    if world <= 1:
        return stall
    flag = torch.tensor([float(stall is not None)], device=device)
    torch.distributed.broadcast(flag, src=0)
    return (stall or "stalled (rank 0)") if flag.item() else None


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
