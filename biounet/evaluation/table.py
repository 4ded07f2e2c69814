"""The one table of metrics: name, result key, which direction is better, what it measures.

``biounet evaluate`` (its ``--metrics`` help and its table), :func:`biounet.evaluate_isbi`
and training validation all read :data:`METRICS`; a new metric is added here
first, then computed in :mod:`biounet.evaluation.isbi`. :class:`MetricResult`
is what every metric returns over a threshold sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes
    ----------
    name : str
        What ``--metrics`` and :func:`biounet.evaluate_isbi` accept.
    key : str
        Its key in results and JSON.
    better : {'lower', 'higher'}
    help : str
        One line for the command line and docs.
    """

    name: str
    key: str
    better: str
    help: str


METRICS: tuple[Metric, ...] = (
    Metric("pixel", "pixel_error", "lower", "1 - max F-score of pixel classification"),
    Metric("rand", "rand_error", "lower", "1 - max F-score of Rand (foreground-restricted)"),
    Metric("warping", "warping_error", "lower", "topological errors (splits and mergers)"),
    Metric("vrand", "vrand", "higher", "V_rand after border thinning (new leaderboard)"),
    Metric("vinfo", "vinfo", "higher", "V_info after border thinning (new leaderboard)"),
    Metric("seg", "seg", "higher", "Cell Tracking Challenge SEG (instance labels)"),
    Metric(
        "ap",
        "ap",
        "higher",
        "average precision TP/(TP+FP+FN), mean over IoU 0.5, 0.6, ..., 0.9 (instance labels)",
    ),
)
#: name -> result key.
METRIC_KEYS: dict[str, str] = {m.name: m.key for m in METRICS}
#: The five ISBI 2012 metrics (the default of evaluate for binary ground truth).
ISBI_METRICS: tuple[str, ...] = ("pixel", "rand", "warping", "vrand", "vinfo")
#: The object measures (the default of evaluate for instance-label ground truth).
INSTANCE_METRICS: tuple[str, ...] = ("seg", "ap")


def better(key: str) -> str:
    """``'lower'`` or ``'higher'`` for a result key (or a name; ``val_`` prefixes allowed).

    Examples
    --------
    >>> better("val_rand_error"), better("seg"), better("warping_error_classic")
    ('lower', 'higher', 'lower')
    """
    key = key.removeprefix("val_")
    for m in METRICS:
        if key in (m.name, m.key):
            return m.better
    if key.startswith("warping_error"):
        return "lower"
    raise KeyError(f"unknown metric {key!r}")


def is_improvement(key: str, new: float, old: float | None) -> bool:
    """Whether `new` beats `old` for metric `key` (anything beats None)."""
    if old is None:
        return True
    return new < old if better(key) == "lower" else new > old


def metrics_help() -> str:
    """``name: meaning (direction)`` for every metric, for ``--help`` texts."""
    return "; ".join(f"{m.name}: {m.help} ({m.better} is better)" for m in METRICS) + "."


def threshold_key(level: float) -> str:
    """The printed name of a threshold, rounded to 6 decimals.

    Examples
    --------
    >>> threshold_key(0.30000000000000004), threshold_key(0.9999999999999999), threshold_key(0.25)
    ('0.3', '1.0', '0.25')
    """
    return repr(round(float(level), 6))


@dataclass(frozen=True)
class MetricResult:
    """A metric over a threshold sweep.

    Attributes
    ----------
    best : float
        The lowest error (or highest score) over the thresholds.
    threshold : float or None
        Where `best` was reached (the lowest such threshold), rounded to 6
        decimals (0.3 for 0.30000000000000004); None for a label image, which
        is scored as it is.
    per_threshold : dict of float to float
        The value at every threshold (rounded likewise); empty for labels.
    """

    best: float
    threshold: float | None
    per_threshold: dict[float, float] = field(default_factory=dict)

    @classmethod
    def from_sweep(
        cls, values: Mapping[float | None, float], *, lower_is_better: bool
    ) -> MetricResult:
        """Pick the best of ``{level: value}`` (a single None level for labels).

        Examples
        --------
        >>> MetricResult.from_sweep({0.0: 0.3, 0.1: 0.2, 0.2: 0.2}, lower_is_better=True)
        MetricResult(best=0.2, threshold=0.1, per_threshold={0.0: 0.3, 0.1: 0.2, 0.2: 0.2})
        """
        levels = list(values)
        vals = np.array([values[k] for k in levels], np.float64)
        i = int(np.argmin(vals) if lower_is_better else np.argmax(vals))
        if levels == [None]:
            return cls(float(vals[0]), None, {})
        per = {round(float(k), 6): float(v) for k, v in zip(levels, vals, strict=True)}
        return cls(float(vals[i]), round(float(levels[i]), 6), per)

    def __str__(self) -> str:
        where = "(labels)" if self.threshold is None else f"at threshold {self.threshold}"
        return f"{self.best:.6g} {where}"
