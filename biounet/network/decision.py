"""The decision rule a model carries: how its probabilities become masks and objects.

Training calibrates it on the held-out images (the threshold and the smallest
object that maximise the validation score; see
:func:`biounet.training.calibrate.calibrate`), because class balancing (w_c of
Eq. 1) moves the best threshold away from 0.5. It travels with the model: it
is saved in every checkpoint and in every bioimage.io package biounet exports
(``config.biounet.decision``), and it is the default of ``biounet predict``,
:func:`biounet.segment`, the Dask path and the napari widget;
``--threshold``, ``--min-size`` and ``--instances`` override it. Checkpoints
written before it existed get the neutral rule (0.5, no minimum size,
connected components).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from biounet.options import INSTANCE_METHODS, InstanceOptions


@dataclass(frozen=True)
class DecisionRule:
    """Threshold, instance method and minimum object size for a model's foreground probability.

    Attributes
    ----------
    threshold : float
        Foreground is ``probability > threshold``.
    min_size : int
        Objects smaller than this many pixels are removed.
    chosen_by : str
        What it was calibrated for, e.g. ``"val_rand_error 0.2101 on 4 images"``;
        empty for the neutral rule.
    method : {'components', 'watershed', 'distance'}
        How foreground becomes objects: connected components, a watershed
        from the components of ``probability > seed_threshold`` (splits
        touching cells where the probability dips between them), or a split
        at the necks of the foreground's shape (the distance to the
        background, for cells touching with a confident contact).
    seed_threshold : float
        The watershed's seed level.
    split_depth, split_radius : float
        The distance split's depth and smallest cell radius in pixels
        (:class:`biounet.options.InstanceOptions`).
    """

    threshold: float = 0.5
    min_size: int = 0
    chosen_by: str = ""
    method: str = "components"
    seed_threshold: float = 0.9
    split_depth: float = 2.0
    split_radius: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold < 1.0):
            raise ValueError(f"decision threshold must be in [0, 1), got {self.threshold}")
        if self.min_size < 0:
            raise ValueError(f"decision min_size must be >= 0, got {self.min_size}")
        if self.method not in INSTANCE_METHODS:
            raise ValueError(
                f"decision method must be one of {INSTANCE_METHODS}, not {self.method!r}"
            )
        if not 0.0 <= self.seed_threshold <= 1.0:
            raise ValueError(
                f"decision seed_threshold must be in [0, 1], got {self.seed_threshold}"
            )

    def instances(self, **overrides: object) -> InstanceOptions:
        """The :class:`InstanceOptions` this rule gives, with fields in `overrides` replaced.

        An override of ``None`` keeps the rule's value, so callers can pass
        unset user options straight through.

        Examples
        --------
        >>> DecisionRule(0.25, 10).instances(min_size=None, threshold=0.4)
        InstanceOptions(method='components', threshold=0.4, seed_threshold=0.9, min_size=10, \
connectivity=1, split_depth=2.0, split_radius=0.0)
        """
        base = InstanceOptions(
            self.method,
            self.threshold,
            self.seed_threshold,
            self.min_size,
            split_depth=self.split_depth,
            split_radius=self.split_radius,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def describe(self, used: InstanceOptions | None = None) -> str:
        """One phrase for messages: the rule `used` (default: this one), overrides marked.

        Examples
        --------
        >>> rule = DecisionRule(0.25, 0, "val_rand_error 0.1 on 4 image(s)")
        >>> rule.describe()
        'threshold 0.25, min size 0, calibrated for val_rand_error 0.1 on 4 image(s)'
        >>> rule.describe(rule.instances(threshold=0.5))
        'threshold 0.5 (model: 0.25), min size 0, calibrated for val_rand_error 0.1 on 4 image(s)'
        """
        used = used or self.instances()
        parts = []
        for label, mine, theirs in (
            ("threshold", self.threshold, used.threshold),
            ("min size", self.min_size, used.min_size),
        ):
            parts.append(f"{label} {theirs:g}" + ("" if theirs == mine else f" (model: {mine:g})"))
        if used.method == "watershed":
            parts.append(f"watershed from seeds > {used.seed_threshold:g}")
        elif used.method == "distance":
            radius = f", cells of radius >= {used.split_radius:g} px" if used.split_radius else ""
            parts.append(f"split at necks of depth >= {used.split_depth:g} px{radius}")
        if used.method != self.method and self.method != "components":
            parts.append(f"(model: {self.method})")
        if self.chosen_by:
            parts.append(f"calibrated for {self.chosen_by}")
        return ", ".join(parts)
