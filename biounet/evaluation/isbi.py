"""ISBI 2012 segmentation metrics: pixel error, Rand error, V_rand, V_info, warping.

Definitions follow Fiji's Trainable Segmentation metrics as used by the ISBI
2012 challenge (PAPER.md section 3; the paper's Table 1 reports the old
leaderboard's warping, Rand and pixel errors):

- evaluation is per 2-D slice of a (P, M, N) stack;
- the proposal is a probability map in [0, 1] with **larger = cell**
  (``p > threshold`` is cell), or an integer label image scored as it is;
- the ground truth is binarised with ``> 0`` and its cells are 4-connected;
- pixel error and Rand error are ``1 - max F`` with TP, FP and FN summed over
  slices (micro-average); V_rand and V_info are ``max`` over thresholds of the
  per-slice mean (macro-average), after border thinning;
- thresholds 0.0, 0.1, ..., 1.0 (11 levels; warping: 0.0, ..., 0.9).

See :mod:`biounet.evaluation.contingency` for the pair counts (self-pairs, singletons),
:mod:`biounet.evaluation.thinning` for border thinning,
:mod:`biounet.evaluation.warping_error` for the
warping error and :mod:`biounet.evaluation.matching` for the Cell Tracking Challenge SEG
measure and average precision.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net", MICCAI 2015, Table 1.
.. [2] I. Arganda-Carreras et al., Front. Neuroanat. 9:142, 2015.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from biounet.evaluation.contingency import RandCounts, contingency, information, rand_counts
from biounet.evaluation.proposal import (
    THRESHOLDS,
    WARPING_THRESHOLDS,
    Proposal,
    binary_ground_truth,
    instance_ground_truth,
    label_cells,
)
from biounet.evaluation.table import ISBI_METRICS, METRIC_KEYS, MetricResult, threshold_key
from biounet.evaluation.thinning import thin_boundaries
from biounet.evaluation.warping_error import warping_errors


def _inputs(prediction, ground_truth, kind: str) -> tuple[Proposal, np.ndarray]:
    proposal = Proposal.from_array(prediction, kind=kind)
    gt = binary_ground_truth(ground_truth)
    if gt.shape != proposal.shape:
        raise ValueError(f"prediction {proposal.shape} and ground truth {gt.shape} differ")
    return proposal, gt


def _f1(tp: int, fp: int, fn: int) -> float:
    total = 2 * tp + fp + fn
    return 2.0 * tp / total if total else 1.0


def _pixel_sweep(proposal: Proposal, gt: np.ndarray, levels) -> dict:
    values = {}
    for level in levels:
        tp = fp = fn = 0
        for z in range(gt.shape[0]):
            fg = proposal.foreground(z, level)
            both = int(np.count_nonzero(fg & gt[z]))
            tp += both
            fp += int(np.count_nonzero(fg)) - both
            fn += int(np.count_nonzero(gt[z])) - both
        values[level] = 1.0 - _f1(tp, fp, fn)
    return values


def pixel_error(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: Iterable[float] = THRESHOLDS,
    kind: str = "auto",
) -> MetricResult:
    """Pixel error: ``1 - max F1`` of the cell class, TP/FP/FN summed over slices.

    Parameters
    ----------
    prediction : ndarray of shape (M, N) or (P, M, N)
        Probability map (float, high = cell) or label image (integer, 0 =
        boundary); see :class:`biounet.evaluation.proposal.Proposal`.
    ground_truth : ndarray, same shape
        Cells > 0 (e.g. 255), membranes 0.
    thresholds : iterable of float
        Default 0.0, 0.1, ..., 1.0 (cell where ``p > threshold``).
    kind : {"auto", "probabilities", "labels"}

    Returns
    -------
    MetricResult

    Examples
    --------
    >>> gt = np.array([[255, 255, 0, 0]], np.uint8)
    >>> prob = np.array([[0.9, 0.4, 0.3, 0.0]])
    >>> print(pixel_error(prob, gt))          # F1 = 1 at threshold 0.3
    0 at threshold 0.3
    """
    proposal, gt = _inputs(prediction, ground_truth, kind)
    values = _pixel_sweep(proposal, gt, proposal.levels(tuple(thresholds)))
    return MetricResult.from_sweep(values, lower_is_better=True)


def _rand_sweep(proposal: Proposal, gt: np.ndarray, levels, *, old: bool, new: bool) -> dict:
    """Per level: summed RandCounts (old) and per-slice thinned V_rand, V_info (new)."""
    cells = [label_cells(g) for g in gt]
    if not any(c.any() for c in cells):
        raise ValueError("ground truth: no cell pixels (> 0), the Rand scores are undefined")
    out = {}
    for level in levels:
        counts, vrand, vinfo = RandCounts(0, 0, 0), [], []
        for z, ref in enumerate(cells):
            if not ref.any():
                continue  # no cells in this slice: nothing to score
            seg = proposal.segments(z, level)
            if old:
                counts = counts + rand_counts(contingency(seg, ref))
            if new:
                table = contingency(thin_boundaries(seg), ref)
                vrand.append(rand_counts(table).fscore)
                vinfo.append(information(table).vinfo)
        out[level] = (counts, vrand, vinfo)
    return out


def rand_error(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: Iterable[float] = THRESHOLDS,
    kind: str = "auto",
) -> MetricResult:
    """Foreground-restricted Rand error of the old ISBI leaderboard.

    ``1 - max F`` of the pair counts of :func:`biounet.evaluation.contingency.rand_counts`
    (self-pairs, proposal-boundary pixels as singletons), summed over slices.
    Proposal segments are the 4-connected cells of ``p > threshold`` (or the
    labels), without thinning. Parameters as in :func:`pixel_error`.

    Examples
    --------
    >>> gt = np.array([[255, 255, 0, 255, 255]], np.uint8)
    >>> merged = np.array([[1.0, 1.0, 0.6, 1.0, 1.0]])   # membrane only below 0.6
    >>> print(rand_error(merged, gt))
    0 at threshold 0.6
    """
    proposal, gt = _inputs(prediction, ground_truth, kind)
    sweep = _rand_sweep(proposal, gt, proposal.levels(tuple(thresholds)), old=True, new=False)
    values = {level: 1.0 - c.fscore for level, (c, _, _) in sweep.items()}
    return MetricResult.from_sweep(values, lower_is_better=True)


def _vscores(prediction, ground_truth, thresholds, kind) -> tuple[MetricResult, MetricResult]:
    proposal, gt = _inputs(prediction, ground_truth, kind)
    sweep = _rand_sweep(proposal, gt, proposal.levels(tuple(thresholds)), old=False, new=True)
    vrand = {level: float(np.mean(v)) for level, (_, v, _) in sweep.items()}
    vinfo = {level: float(np.mean(v)) for level, (_, _, v) in sweep.items()}
    return (
        MetricResult.from_sweep(vrand, lower_is_better=False),
        MetricResult.from_sweep(vinfo, lower_is_better=False),
    )


def vrand(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: Iterable[float] = THRESHOLDS,
    kind: str = "auto",
) -> MetricResult:
    """V_rand after border thinning (new ISBI leaderboard; higher is better).

    The Rand F-score of each slice after :func:`biounet.evaluation.thinning.thin_boundaries`,
    averaged over the slices that have cells, maximised over thresholds.
    Parameters as in :func:`pixel_error`.

    Examples
    --------
    >>> gt = np.array([[255, 255, 0, 0, 255, 255]], np.uint8)
    >>> print(vrand(gt, gt))       # thick membranes are thinned: still perfect
    1 (labels)
    """
    return _vscores(prediction, ground_truth, thresholds, kind)[0]


def vinfo(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: Iterable[float] = THRESHOLDS,
    kind: str = "auto",
) -> MetricResult:
    """V_info after border thinning (higher is better).

    ``2 I(S;T) / (H(S) + H(T))`` of each slice (natural logarithm, same
    restriction and singletons as V_rand), averaged over slices with cells,
    maximised over thresholds. Parameters as in :func:`pixel_error`.
    """
    return _vscores(prediction, ground_truth, thresholds, kind)[1]


def seg_measure(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: Iterable[float] = THRESHOLDS,
    kind: str = "auto",
) -> MetricResult:
    """The Cell Tracking Challenge SEG measure, swept for a probability map.

    Objects are the 4-connected cells of ``p > threshold`` (or the labels);
    reference objects are the ground-truth labels (or the 4-connected cells
    of a binary mask). See :func:`biounet.evaluation.matching.seg_score`.
    """
    from biounet.evaluation.matching import seg_sums

    proposal = Proposal.from_array(prediction, kind=kind)
    ref = instance_ground_truth(ground_truth)
    if ref.shape != proposal.shape:
        raise ValueError(f"prediction {proposal.shape} and ground truth {ref.shape} differ")
    values = {}
    for level in proposal.levels(tuple(thresholds)):
        total, count = 0.0, 0
        for z in range(ref.shape[0]):
            s, n = seg_sums(proposal.segments(z, level), ref[z])
            total, count = total + s, count + n
        if count == 0:
            raise ValueError("ground truth: no reference objects, SEG is undefined")
        values[level] = total / count
    return MetricResult.from_sweep(values, lower_is_better=False)


#: IoU thresholds of the ``ap`` metric (its value is the mean over these).
AP_IOUS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def ap_measure(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: Iterable[float] = THRESHOLDS,
    kind: str = "auto",
    iou_thresholds: Iterable[float] = AP_IOUS,
) -> tuple[MetricResult, dict[str, float]]:
    """Average precision, mean over IoU thresholds, swept for a probability map.

    Objects are as for :func:`seg_measure`; at every probability threshold the
    AP ``TP / (TP + FP + FN)`` of :func:`biounet.evaluation.matching.average_precision`
    is computed at each IoU threshold and averaged.

    Returns
    -------
    result : MetricResult
        The mean AP over the IoU thresholds, per probability threshold.
    per_iou : dict of str to float
        The AP at each IoU threshold (``"0.5"``: ...) at the best probability
        threshold (or for the labels).
    """
    from biounet.evaluation.matching import average_precision

    proposal = Proposal.from_array(prediction, kind=kind)
    ref = instance_ground_truth(ground_truth)
    if ref.shape != proposal.shape:
        raise ValueError(f"prediction {proposal.shape} and ground truth {ref.shape} differ")
    ious = tuple(float(t) for t in iou_thresholds)
    values, per = {}, {}
    for level in proposal.levels(tuple(thresholds)):
        stack = np.stack([proposal.segments(z, level) for z in range(ref.shape[0])])
        ap = average_precision(stack, ref, iou_thresholds=ious)
        values[level], per[level] = float(np.mean(list(ap.values()))), ap
    result = MetricResult.from_sweep(values, lower_is_better=False)
    best = (
        None
        if result.threshold is None
        else next(k for k in values if round(float(k), 6) == result.threshold)
    )
    return result, {threshold_key(t): v for t, v in per[best].items()}


def _entry(result: MetricResult) -> tuple[float, float | None, dict[str, float]]:
    per = {threshold_key(k): v for k, v in result.per_threshold.items()}
    return result.best, result.threshold, per


def evaluate_isbi(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    metrics: Iterable[str] | None = None,
    kind: str = "auto",
    thresholds: Iterable[float] = THRESHOLDS,
    warping_thresholds: Iterable[float] = WARPING_THRESHOLDS,
) -> dict:
    """Every requested metric of a (P, M, N) stack as a JSON-ready dict.

    Parameters
    ----------
    prediction : ndarray of shape (M, N) or (P, M, N)
        Probability map (float, high = cell) or label image (integer).
    ground_truth : ndarray, same shape
        Binary cells (> 0) and membranes (0); instance labels for ``seg``.
    metrics : iterable of str, optional
        Any of ``pixel, rand, warping, vrand, vinfo, seg``. Default: the five
        ISBI metrics, plus ``seg`` if the ground truth has more than one
        non-zero label.
    kind : {"auto", "probabilities", "labels"}
    thresholds, warping_thresholds : iterable of float
        The sweeps (defaults: 11 levels 0.0..1.0 and 10 levels 0.0..0.9).

    Returns
    -------
    result : dict
        One number per metric under ``pixel_error``, ``rand_error``,
        ``warping_error`` (splits and mergers), ``vrand``, ``vinfo``,
        ``seg``; ``threshold`` and ``per_threshold`` map each of these keys
        (and ``warping_error_classic``) to the best threshold and to
        ``{"0.0": value, ...}``; ``details`` holds the input kind and shape,
        the classic warping error and the split and merge pixel counts.

    Examples
    --------
    >>> gt = np.zeros((2, 8, 8), np.uint8); gt[:, 1:7, 1:3] = gt[:, 1:7, 4:7] = 255
    >>> r = evaluate_isbi(gt.astype(np.float32) / 255, gt)
    >>> {k: r[k] for k in ("pixel_error", "rand_error", "warping_error", "vrand", "vinfo")}
    {'pixel_error': 0.0, 'rand_error': 0.0, 'warping_error': 0.0, 'vrand': 1.0, 'vinfo': 1.0}
    >>> r["threshold"]["pixel_error"], r["per_threshold"]["vrand"]["1.0"]
    (0.0, 1.0)
    """
    proposal, gt = _inputs(prediction, ground_truth, kind)
    thresholds = tuple(thresholds)
    if isinstance(metrics, str):
        metrics = [metrics]
    if metrics is None:
        metrics = list(ISBI_METRICS)
        labels = np.asarray(ground_truth)
        if np.unique(labels[labels > 0]).size > 1:
            metrics.append("seg")
    metrics = list(dict.fromkeys(metrics))
    unknown = [m for m in metrics if m not in METRIC_KEYS]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(unknown)} (known: {', '.join(METRIC_KEYS)})")
    results: dict[str, MetricResult] = {}
    levels = proposal.levels(thresholds)
    if "pixel" in metrics:
        values = _pixel_sweep(proposal, gt, levels)
        results["pixel_error"] = MetricResult.from_sweep(values, lower_is_better=True)
    old, new = "rand" in metrics, bool({"vrand", "vinfo"} & set(metrics))
    if old or new:
        sweep = _rand_sweep(proposal, gt, levels, old=old, new=new)
        if old:
            values = {k: 1.0 - c.fscore for k, (c, _, _) in sweep.items()}
            results["rand_error"] = MetricResult.from_sweep(values, lower_is_better=True)
        for i, name in ((1, "vrand"), (2, "vinfo")):
            if name in metrics:
                values = {k: float(np.mean(v[i])) for k, v in sweep.items()}
                results[name] = MetricResult.from_sweep(values, lower_is_better=False)
    details: dict = {"kind": proposal.kind, "shape": list(proposal.shape)}
    if "warping" in metrics:
        w = warping_errors(proposal.data, gt, thresholds=tuple(warping_thresholds))
        results["warping_error"] = MetricResult.from_sweep(
            w["splits_mergers"], lower_is_better=True
        )
        classic = MetricResult.from_sweep(w["classic"], lower_is_better=True)
        results["warping_error_classic"] = classic
        details["warping_error_classic"] = classic.best
        for name in ("splits", "mergers"):
            details[f"warping_{name}"] = {
                ("labels" if k is None else threshold_key(k)): v for k, v in w[name].items()
            }
    if "seg" in metrics:
        results["seg"] = seg_measure(proposal.data, ground_truth, thresholds=thresholds)
    if "ap" in metrics:
        results["ap"], details["ap_per_iou"] = ap_measure(
            proposal.data, ground_truth, thresholds=thresholds
        )
    out: dict = {}
    for name in metrics:
        out[METRIC_KEYS[name]] = results[METRIC_KEYS[name]].best
    out["threshold"] = {k: _entry(r)[1] for k, r in results.items()}
    out["per_threshold"] = {k: _entry(r)[2] for k, r in results.items()}
    out["details"] = details
    return out
