"""Foreground-restricted contingency tables: Rand pair counts and information.

For one slice, let ``n_ij`` count the pixels of ground-truth segment i and
proposal segment j (PAPER.md section 3.2). Ground-truth rows with i = 0
(membrane) are discarded, so n is the number of ground-truth cell pixels;
proposal pixels with j = 0 (boundary) inside the cells are *singletons*, each
its own segment. With ``n0 = sum_i n_i0``, ``t_i = sum_j n_ij`` and
``s_j = sum_i n_ij`` (j >= 1), the pair counts with self-pairs included
(the N**2 normalisation of Fiji's ``getForegroundRestrictedRandIndexStatsN2``)
are::

    TP     = sum_{i, j>=1} n_ij**2 + n0
    P_pred = sum_{j>=1} s_j**2 + n0
    P_true = sum_i t_i**2

and the Rand F-score is ``2 TP / (P_pred + P_true)`` (precision TP/P_pred,
recall TP/P_true). The information scores use natural logarithms with the
same restriction and singletons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RandCounts:
    """Pair counts of one or more slices (sums of squares, self-pairs included)."""

    tp: int
    p_pred: int
    p_true: int

    def __add__(self, other: RandCounts) -> RandCounts:
        return RandCounts(
            self.tp + other.tp, self.p_pred + other.p_pred, self.p_true + other.p_true
        )

    @property
    def fscore(self) -> float:
        """``2 TP / (P_pred + P_true)``; NaN without ground-truth cells."""
        total = self.p_pred + self.p_true
        return 2.0 * self.tp / total if total else float("nan")

    @property
    def precision(self) -> float:
        """``TP / P_pred``."""
        return self.tp / self.p_pred if self.p_pred else float("nan")

    @property
    def recall(self) -> float:
        """``TP / P_true``."""
        return self.tp / self.p_true if self.p_true else float("nan")


@dataclass(frozen=True)
class Table:
    """The restricted contingency table of one slice, as counts."""

    n_ij: np.ndarray  # non-zero n_ij with i >= 1 and j >= 1
    t: np.ndarray  # ground-truth segment sizes t_i (i >= 1, non-zero)
    s: np.ndarray  # proposal segment sizes s_j (j >= 1, non-zero)
    n0: int  # proposal-boundary pixels inside ground-truth cells (singletons)

    @property
    def n(self) -> int:
        """Number of ground-truth cell pixels."""
        return int(self.t.sum())


def _counts(keys: np.ndarray) -> np.ndarray:
    if keys.size == 0:
        return np.zeros(0, np.int64)
    if keys.max() <= 4 * keys.size + 1024:
        c = np.bincount(keys)
        return c[c > 0]
    return np.unique(keys, return_counts=True)[1]


def contingency(segmentation: np.ndarray, reference: np.ndarray) -> Table:
    """Contingency table of a proposal against ground-truth segments.

    Parameters
    ----------
    segmentation : ndarray of shape (M, N), int
        Proposal segments; 0 = boundary (singletons).
    reference : ndarray of shape (M, N), int
        Ground-truth segments; 0 = membrane (ignored).

    Returns
    -------
    Table

    Examples
    --------
    >>> t = contingency(np.array([1, 1, 2, 0]), np.array([1, 1, 2, 2]))
    >>> t.n_ij.tolist(), t.t.tolist(), t.s.tolist(), t.n0
    ([2, 1], [2, 2], [2, 1], 1)
    """
    seg = np.asarray(segmentation).ravel()
    ref = np.asarray(reference).ravel()
    if seg.shape != ref.shape:
        raise ValueError(f"segmentation {seg.shape} and reference {ref.shape} differ")
    inside = ref > 0
    ref = ref[inside].astype(np.int64)
    seg = seg[inside].astype(np.int64)
    on = seg > 0
    n0 = int(seg.size - np.count_nonzero(on))
    if ref.size and ref.max() > 4 * ref.size + 1024:  # huge labels: make them dense
        ref = np.unique(ref, return_inverse=True)[1].astype(np.int64)
    ref_on, seg_on = ref[on], seg[on]
    if seg_on.size and seg_on.max() > 4 * seg_on.size + 1024:
        seg_on = np.unique(seg_on, return_inverse=True)[1].astype(np.int64)
    width = int(seg_on.max()) + 1 if seg_on.size else 1
    return Table(
        n_ij=_counts(ref_on * width + seg_on),
        t=_counts(ref),
        s=_counts(seg_on),
        n0=n0,
    )


def _sum_squares(a: np.ndarray) -> int:
    a = a.astype(np.int64)
    return int(np.dot(a, a))


def rand_counts(table: Table) -> RandCounts:
    """Pair counts with self-pairs and singletons (N**2 normalisation).

    Examples
    --------
    >>> rc = rand_counts(contingency(np.array([1, 1, 2, 0]), np.array([1, 1, 2, 2])))
    >>> rc, rc.fscore     # TP = 4 + 1 + 1, P_pred = 4 + 1 + 1, P_true = 4 + 4
    (RandCounts(tp=6, p_pred=6, p_true=8), 0.8571428571428571)
    """
    return RandCounts(
        tp=_sum_squares(table.n_ij) + table.n0,
        p_pred=_sum_squares(table.s) + table.n0,
        p_true=_sum_squares(table.t),
    )


def _entropy(counts: np.ndarray, n: int, singletons: int = 0) -> float:
    p = counts.astype(np.float64) / n
    return float(-(p * np.log(p)).sum() + singletons * np.log(n) / n)


@dataclass(frozen=True)
class Information:
    """Mutual information and entropies of one slice, in nats."""

    mutual: float  # I(S; T)
    h_pred: float  # H(S), proposal, singletons included
    h_true: float  # H(T), ground truth

    @property
    def vinfo(self) -> float:
        """``2 I / (H(S) + H(T))``; 1 when both entropies are 0, NaN without cells."""
        total = self.h_pred + self.h_true
        if np.isnan(total):
            return float("nan")
        return 2.0 * self.mutual / total if total > 0 else 1.0


def information(table: Table) -> Information:
    """Mutual information and entropies with singletons (natural logarithm).

    Examples
    --------
    >>> info = information(contingency(np.array([1, 1, 2, 0]), np.array([1, 1, 2, 2])))
    >>> round(info.mutual / float(np.log(2)), 12), round(info.vinfo, 12)   # I = log 2
    (1.0, 0.8)
    """
    n = table.n
    if n == 0:
        return Information(float("nan"), float("nan"), float("nan"))
    h_pred = _entropy(table.s, n, table.n0)
    h_true = _entropy(table.t, n)
    h_joint = _entropy(table.n_ij, n, table.n0)
    mutual = max(h_pred + h_true - h_joint, 0.0)
    return Information(mutual, h_pred, h_true)
