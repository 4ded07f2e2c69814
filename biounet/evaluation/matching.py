"""Instance metrics: the Cell Tracking Challenge SEG measure and average precision.

SEG (the paper's Table 2 "IOU"; PAPER.md section 3.5): a reference object R
is matched to the result object S with ``|R & S| > 0.5 |R|`` (at most one S
can qualify; exactly half does **not** match); its score is the Jaccard index
``|R & S| / |R | S|``, or 0 without a match. SEG is the mean over all
reference objects of all slices. Label 0 is background on both sides. This is
not the pixel-wise foreground IoU.

Average precision at an IoU threshold t (the definition of stardist's
``matching`` and cellpose's ``average_precision``): reference and result
objects are matched one-to-one, maximising the number of pairs with
``IoU >= t`` (``scipy.optimize.linear_sum_assignment``; ties go to the higher
IoU); ``AP(t) = TP / (TP + FP + FN)`` with TP the matched pairs, FP the
unmatched result objects and FN the unmatched reference objects, each summed
over slices.

References
----------
.. [1] V. Ulman et al., "An objective comparison of cell-tracking
       algorithms", Nature Methods 14, 2017 (SEG).
.. [2] U. Schmidt et al., "Cell Detection with Star-convex Polygons",
       MICCAI 2018 (stardist); C. Stringer et al., Nature Methods 18, 2021
       (cellpose).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from biounet.evaluation.proposal import as_stack

#: IoU thresholds of :func:`average_precision`: 0.5, 0.55, ..., 0.95.
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _dense(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel the non-zero values of a 1-D array to 1..n (0 stays 0)."""
    labels = labels.astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        raise ValueError("labels: negative values")
    if labels.size and labels.max() <= 4 * labels.size + 1024:
        present = np.bincount(labels) > 0  # small labels: an O(n) lookup table
        present[0] = False
        table = np.cumsum(present)
        return table[labels], int(table[-1])
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    if values.size and values[0] == 0:
        return inverse, values.size - 1
    return inverse + 1, values.size


def overlaps(labels: np.ndarray, reference: np.ndarray):
    """Overlapping object pairs of two 2-D label images.

    Returns
    -------
    ref, res, inter : ndarray of shape (K,), int
        Reference object index (0..R-1), result object index (0..S-1) and
        their intersection in pixels, for every pair that overlaps.
    ref_sizes : ndarray of shape (R,), int
    res_sizes : ndarray of shape (S,), int

    Examples
    --------
    >>> overlaps(np.array([5, 5, 0, 7]), np.array([2, 2, 2, 0]))[:3]
    (array([0]), array([0]), array([2]))
    """
    res, n_res = _dense(np.asarray(labels).ravel())
    ref, n_ref = _dense(np.asarray(reference).ravel())
    if res.shape != ref.shape:
        raise ValueError(f"labels {np.shape(labels)} and reference {np.shape(reference)} differ")
    both = (res > 0) & (ref > 0)
    width = max(n_res, 1)
    keys = (ref[both] - 1) * width + (res[both] - 1)
    if n_ref * width <= 4 * keys.size + 1024:
        pairs = np.bincount(keys, minlength=n_ref * width)
        k = np.flatnonzero(pairs)
        inter = pairs[k]
    else:  # many objects: count only the pairs that occur
        k, inter = np.unique(keys, return_counts=True)
    ref_sizes = np.bincount(ref, minlength=n_ref + 1)[1:]
    res_sizes = np.bincount(res, minlength=n_res + 1)[1:]
    return k // width, k % width, inter, ref_sizes, res_sizes


def _seg_matches(labels: np.ndarray, reference: np.ndarray):
    """SEG's matched reference objects (indices), their Jaccard scores, and the count of all."""
    ref, res, inter, ref_sizes, res_sizes = overlaps(labels, reference)
    match = 2 * inter > ref_sizes[ref]  # strictly more than half of R
    jaccard = inter[match] / (ref_sizes[ref[match]] + res_sizes[res[match]] - inter[match])
    return ref[match], jaccard, int(ref_sizes.size)


def seg_sums(labels: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Sum of the SEG Jaccard scores of one slice, and its number of reference objects."""
    _, jaccard, count = _seg_matches(labels, reference)
    return float(jaccard.sum()), count


def seg_per_object(labels: np.ndarray, reference: np.ndarray) -> dict[int, float]:
    """SEG's score of every reference object of one slice: its label -> Jaccard (0 unmatched).

    Parameters
    ----------
    labels, reference : ndarray of shape (M, N), int
        Result and reference objects (0 = background).

    Returns
    -------
    dict
        Every reference label, in increasing order, and its Jaccard index with
        the result object covering more than half of it, or 0.0 without one.
        Their mean is the slice's SEG.

    Examples
    --------
    >>> seg_per_object(np.array([[1, 1, 1, 0]]), np.array([[4, 4, 0, 7]]))
    {4: 0.6666666666666666, 7: 0.0}
    """
    matched, jaccard, count = _seg_matches(labels, reference)
    scores = np.zeros(count)
    scores[matched] = jaccard
    ids = np.unique(np.asarray(reference)[np.asarray(reference) > 0])
    return {int(i): float(j) for i, j in zip(ids, scores, strict=True)}


def seg_score(labels: np.ndarray, reference: np.ndarray) -> float:
    """The Cell Tracking Challenge SEG measure of a label image or stack.

    Parameters
    ----------
    labels : ndarray of shape (M, N) or (P, M, N), int
        Result objects (0 = background).
    reference : ndarray, same shape, int
        Reference objects (0 = background).

    Returns
    -------
    seg : float
        Mean Jaccard index over all reference objects of all slices.

    Raises
    ------
    ValueError
        If the shapes differ or there is no reference object.

    Examples
    --------
    >>> ref = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> seg_score(np.array([[3, 3, 3, 0, 0, 4, 0]]), ref)   # (3/4 + 0) / 2: 1 of 2 is half
    0.375
    """
    res, ref = as_stack(labels, "labels"), as_stack(reference, "reference")
    if res.shape != ref.shape:
        raise ValueError(f"labels {res.shape} and reference {ref.shape} differ")
    total, count = 0.0, 0
    for z in range(ref.shape[0]):
        s, n = seg_sums(res[z], ref[z])
        total, count = total + s, count + n
    if count == 0:
        raise ValueError("reference: no objects, SEG is undefined")
    return total / count


def _true_positives(iou: np.ndarray, ref: np.ndarray, res: np.ndarray, t: float) -> int:
    from scipy.optimize import linear_sum_assignment

    ok = iou >= t
    if not ok.any():
        return 0
    rows, r = np.unique(ref[ok], return_inverse=True)
    cols, c = np.unique(res[ok], return_inverse=True)
    if rows.size == r.size and cols.size == c.size:  # no object in two candidate pairs
        return int(r.size)
    score = np.zeros((rows.size, cols.size))
    score[r, c] = 1.0 + iou[ok] / 2.0  # every match counts first, then its IoU
    i, j = linear_sum_assignment(score, maximize=True)
    return int(np.count_nonzero(score[i, j]))


def average_precision(
    labels: np.ndarray,
    reference: np.ndarray,
    *,
    iou_thresholds: Iterable[float] = IOU_THRESHOLDS,
) -> dict[float, float]:
    """Average precision ``TP / (TP + FP + FN)`` at IoU thresholds.

    Parameters
    ----------
    labels, reference : ndarray
        As for :func:`seg_score`.
    iou_thresholds : iterable of float
        A pair matches when ``IoU >= t``; default 0.5, 0.55, ..., 0.95.

    Returns
    -------
    ap : dict of float to float
        AP at every threshold; 1.0 where there is no object on either side.

    Examples
    --------
    >>> ref = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 0]])
    >>> res = np.array([[1, 1, 0, 0, 0, 2, 2, 0, 3]])
    >>> average_precision(res, ref, iou_thresholds=(0.5, 0.6))   # IoU 0.5, 1 and none
    {0.5: 0.6666666666666666, 0.6: 0.25}
    """
    res, ref = as_stack(labels, "labels"), as_stack(reference, "reference")
    if res.shape != ref.shape:
        raise ValueError(f"labels {res.shape} and reference {ref.shape} differ")
    thresholds = [float(t) for t in iou_thresholds]
    tp = np.zeros(len(thresholds), np.int64)
    n_ref = n_res = 0
    for z in range(ref.shape[0]):
        r, s, inter, ref_sizes, res_sizes = overlaps(res[z], ref[z])
        iou = inter / (ref_sizes[r] + res_sizes[s] - inter)
        n_ref, n_res = n_ref + ref_sizes.size, n_res + res_sizes.size
        for k, t in enumerate(thresholds):
            tp[k] += _true_positives(iou, r, s, t)
    out = {}
    for k, t in enumerate(thresholds):
        denominator = n_ref + n_res - tp[k]  # TP + FP + FN
        out[t] = float(tp[k] / denominator) if denominator else 1.0
    return out
