"""The learning-rate schedule: the rate of each step, from the run's configuration.

The paper gives SGD with momentum 0.99 and no rate or schedule, so the rate
and its course over the run are choices of ours (docs/training.md, the recipe
study). The schedule is a pure function of the step, so a resumed run
continues it exactly; extending ``iterations`` on resume stretches ``step``
and ``poly`` over the new length.

- ``constant``: `lr` throughout.
- ``step``: `lr`, then `lr`/10 from 2/3 of the iterations on.
- ``poly``: `lr` * (1 - step/iterations) ** 0.9 (as nnU-Net), reaching 0 at the end.

A warm-up of `warmup` steps rises linearly from `lr`/`warmup` to the scheduled rate.
"""

from __future__ import annotations

#: Names of the schedules, for the command line and the YAML.
LR_SCHEDULES: tuple[str, ...] = ("constant", "step", "poly")
#: Exponent of the ``poly`` schedule.
POLY_POWER = 0.9
#: Where the ``step`` schedule divides the rate by 10, as a fraction of the iterations.
STEP_AT = 2 / 3


def check_schedule(schedule: str) -> None:
    """Raise ValueError unless `schedule` is one of :data:`LR_SCHEDULES`."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


def learning_rate(
    step: int, *, lr: float, iterations: int, schedule: str = "constant", warmup: int = 0
) -> float:
    """The learning rate of optimiser step `step` (1-based) of `iterations`.

    Parameters
    ----------
    step : int
        1 for the first step, `iterations` for the last.
    lr : float
        Peak rate.
    iterations : int
        Length of the run.
    schedule : {'constant', 'step', 'poly'}
    warmup : int
        Steps of linear warm-up (0: none).

    Returns
    -------
    float
        The rate; ``poly`` gives `lr` * (1 - (step - 1) / iterations) ** 0.9,
        so the last step still moves the weights.
    """
    check_schedule(schedule)
    done = (step - 1) / iterations  # fraction of the run before this step
    if schedule == "poly":
        rate = lr * max(0.0, 1.0 - done) ** POLY_POWER
    elif schedule == "step":
        rate = lr / 10 if done >= STEP_AT else lr
    else:
        rate = lr
    if warmup > 0 and step <= warmup:
        rate *= step / warmup
    return rate
