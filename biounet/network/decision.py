"""The decision rule a model carries: how its probabilities become masks and objects.

Training calibrates it on the held-out images (the threshold and the smallest
object that maximise the validation score; see
:func:`biounet.training.calibrate.calibrate`), because class balancing (w_c of
Eq. 1) moves the best threshold away from 0.5. It is saved in every checkpoint
and is the default of ``biounet predict`` and :func:`biounet.segment`;
``--threshold`` and ``--min-size`` override it. Checkpoints written before it
existed get the neutral rule (0.5, no minimum size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DecisionRule:
    """Threshold and minimum object size for a model's foreground probability.

    Attributes
    ----------
    threshold : float
        Foreground is ``probability > threshold``.
    min_size : int
        Objects smaller than this many pixels are removed.
    chosen_by : str
        What it was calibrated for, e.g. ``"val_rand_error 0.2101 on 4 images"``;
        empty for the neutral rule.
    """

    threshold: float = 0.5
    min_size: int = 0
    chosen_by: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold < 1.0):
            raise ValueError(f"decision threshold must be in [0, 1), got {self.threshold}")
        if self.min_size < 0:
            raise ValueError(f"decision min_size must be >= 0, got {self.min_size}")
