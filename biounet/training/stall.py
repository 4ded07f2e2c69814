"""A stalled run: training that sits on the trivial answer, found early and said so.

A U-Net trained with SGD and momentum 0.99 can stay on the answer that
ignores the image: one class everywhere (for cells, one object covering the
frame). Its loss then stays at the loss of the best *constant* prediction,
which the weight maps fix exactly: with ``W_c`` the summed weight of the
pixels of class ``c`` and ``N`` the number of pixels, the constant answer
``p_c = W_c / W`` has the smallest weighted cross-entropy,
``-sum_c W_c log(W_c / W) / N``. Its validation pixel error (``1 - F1`` of
the object class) is 1 for all background and ``(1 - f) / (1 + f)`` for all
foreground, ``f`` the objects' share of the pixels. A run is *stalled* at a
validation step when both hold:

1. the mean training loss over the second half of the steps so far is not
   below the constant answer's loss by more than :data:`LOSS_MARGIN` of it;
2. the validation pixel error is within :data:`PIXEL_MARGIN` of the pixel
   error of "all foreground" or "all background".

Either alone is not enough: early in a healthy run the validation can still
be one class while the loss already falls, and a network that has not learned
yet (a random one) need not give a one-class answer. The loop checks from
``TrainConfig.stall_after`` steps on; :mod:`biounet.training.run` restarts a
stalled run from scratch with a new seed and a warm-up
(:func:`restart_config`), at most ``TrainConfig.stall_restarts`` times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from biounet.evaluation.isbi import pixel_error

#: Relative margin below the constant answer's loss that counts as learning.
LOSS_MARGIN = 0.02
#: Absolute margin of the validation pixel error around a one-class answer.
PIXEL_MARGIN = 0.01
#: Warm-up steps a restarted run gets (at most a fifth of its iterations).
RESTART_WARMUP = 200


@dataclass(frozen=True)
class TrivialAnswer:
    """What the answer that ignores the image scores on a run's data.

    Attributes
    ----------
    loss : float
        Weighted cross-entropy of the best constant prediction on the training targets.
    pixel_errors : tuple of float
        Validation pixel error of all background and of all foreground.
    """

    loss: float
    pixel_errors: tuple[float, float]


def constant_loss(classes: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> float:
    """Weighted cross-entropy of the best constant prediction.

    Parameters
    ----------
    classes : sequence of ndarray of shape (M, N), int
        Class of each pixel (0 background, 1 foreground, ...).
    weights : sequence of ndarray of shape (M, N), float
        The weight map of each image (Eq. 2).

    Returns
    -------
    float
        ``-sum_c W_c log(W_c / W) / N`` with ``W_c`` the summed weight of class
        ``c``, ``W = sum_c W_c`` and ``N`` the number of pixels.

    Examples
    --------
    >>> c = np.array([[0, 0, 1, 1]]); w = np.array([[1.0, 1.0, 1.0, 1.0]])
    >>> round(constant_loss([c], [w]), 6) == round(float(np.log(2)), 6)
    True
    """
    n_classes = int(max(int(c.max()) for c in classes)) + 1
    totals = np.zeros(n_classes)
    pixels = 0
    for c, w in zip(classes, weights, strict=True):
        totals += np.bincount(c.ravel(), weights=w.ravel().astype(np.float64), minlength=n_classes)
        pixels += c.size
    present = totals[totals > 0]
    return float(-(present * np.log(present / present.sum())).sum() / pixels)


def one_class_pixel_errors(truth: Sequence[np.ndarray]) -> tuple[float, float]:
    """Validation pixel error of "all background" and of "all foreground".

    The pixel error as validation reports it (``1 - F1`` of the object class,
    :func:`biounet.evaluation.isbi.pixel_error`, counts summed over images of
    one size and averaged over sizes): 1 for all background, ``(1 - f) / (1 + f)``
    for all foreground with ``f`` the objects' fraction of the pixels.

    Parameters
    ----------
    truth : sequence of ndarray of shape (M, N)
        Objects > 0.

    Examples
    --------
    >>> one_class_pixel_errors([np.array([[0, 0, 0, 3]])])  # f = 1/4: 0.75 / 1.25
    (1.0, 0.6)
    """
    if not truth:  # no validation images: nothing to compare with
        return math.nan, math.nan
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for g in truth:
        groups.setdefault(g.shape, []).append((g > 0).astype(np.uint8))
    errors = []
    for level in (0.0, 1.0):
        errors.append(
            float(
                np.mean(
                    [
                        pixel_error(
                            np.full((len(gs), *shape), level), np.stack(gs), thresholds=(0.5,)
                        ).best
                        for shape, gs in groups.items()
                    ]
                )
            )
        )
    return errors[0], errors[1]


def trivial_answer(targets: Sequence[Any], val_truth: Sequence[np.ndarray]) -> TrivialAnswer:
    """The :class:`TrivialAnswer` of a run's targets (objects with ``classes`` and ``weights``)."""
    loss = constant_loss([t.classes for t in targets], [t.weights for t in targets])
    return TrivialAnswer(loss, one_class_pixel_errors(val_truth))


def stall_reason(
    records: list[dict[str, Any]], step: int, pixel_error: float, trivial: TrivialAnswer
) -> str | None:
    """Why the run is stalled at validation `step`, or None if it is not.

    Parameters
    ----------
    records : list of dict
        The current attempt's log (:func:`biounet.training.runlog.split_attempts`); the training
        records (``{"step", "loss"}``) with ``step > step / 2`` are used.
    step : int
        The step just validated.
    pixel_error : float
        Its validation pixel error.
    trivial : TrivialAnswer

    Returns
    -------
    str or None
        One line such as ``"loss 0.7512 (the constant answer's: 0.7281), validation
        pixel error 0.5295 (all foreground: 0.5295)"``.
    """
    losses = [r["loss"] for r in records if "loss" in r and step / 2 < r["step"] <= step]
    if not losses:
        return None
    loss = float(np.mean(losses))
    if loss < (1.0 - LOSS_MARGIN) * trivial.loss:
        return None
    names = ("all background", "all foreground")
    gaps = [abs(pixel_error - e) for e in trivial.pixel_errors]
    nearest = int(np.argmin(gaps))
    if gaps[nearest] > PIXEL_MARGIN:
        return None
    return (
        f"loss {loss:.4f} (the constant answer's: {trivial.loss:.4f}), validation pixel error "
        f"{pixel_error:.4f} ({names[nearest]}: {trivial.pixel_errors[nearest]:.4f})"
    )


def restart_config(config: Any) -> Any:
    """The config that restarts a stalled run of `config` from scratch.

    The known remedies (docs/training.md#recipe-study): another seed, and a
    linear warm-up of :data:`RESTART_WARMUP` steps (at most a fifth of the
    iterations) if the run had less.

    Examples
    --------
    >>> from biounet.training.config import TrainConfig
    >>> c = restart_config(TrainConfig(seed=3, iterations=3000))
    >>> c.seed, c.warmup
    (4, 200)
    >>> restart_config(TrainConfig(seed=3, iterations=100, warmup=0)).warmup
    20
    """
    warmup = max(config.warmup, min(RESTART_WARMUP, config.iterations // 5))
    return replace(config, seed=config.seed + 1, warmup=warmup)
