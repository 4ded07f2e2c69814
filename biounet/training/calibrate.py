"""Calibrate the decision rule on held-out images: the threshold and the smallest object.

The network is trained with class-balanced weights (w_c of Eq. 1), which
moves its probabilities: with 5% foreground, ``p > 0.5`` paints objects
about twice their true area. So the rule that turns probabilities into
objects is chosen on the validation images, for the score that fits the
labels: the foreground-restricted Rand error for binary masks (ISBI), the
Cell Tracking Challenge SEG for instance labels. First the threshold is
swept (with every object kept), then the smallest object size at that
threshold: neither score rewards removing small false objects, so the size
is the one that keeps the best score with the best object-level average
precision (IoU 0.5). The rule goes into the checkpoint
(:class:`biounet.network.decision.DecisionRule`) and is what ``biounet
predict`` uses unless told otherwise.
"""

from __future__ import annotations

import numpy as np

from biounet.evaluation.isbi import pixel_error, rand_error, seg_measure
from biounet.evaluation.matching import average_precision, seg_score
from biounet.evaluation.proposal import label_cells
from biounet.evaluation.table import is_improvement
from biounet.inference.instances import label_stack, watershed_block
from biounet.network.decision import DecisionRule
from biounet.options import InstanceOptions

#: Thresholds tried: 0.1, 0.15, ..., 0.9.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(2, 19))
#: Smallest object sizes tried (pixels) at the best threshold.
MIN_SIZES: tuple[int, ...] = (0, 16, 64, 256)
#: Watershed seed levels tried to split touching cells (:func:`calibrate_split`).
SEED_THRESHOLDS: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 0.95)
#: Foreground thresholds tried with each seed level (those below it).
SPLIT_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Neck depths (pixels) tried by the distance split (:func:`calibrate_distance_split`).
SPLIT_DEPTHS: tuple[float, ...] = (2.0, 4.0, 8.0, 12.0, 16.0, 20.0)
#: Smallest cell radii (pixels) tried with each depth; 0: every maximum may seed.
SPLIT_RADII: tuple[float, ...] = (0.0, 8.0, 12.0, 16.0, 20.0)


def objective(label_kind: str) -> str:
    """The validation key that chooses the rule and best.pt for a label kind.

    Examples
    --------
    >>> objective("binary"), objective("instance")
    ('val_rand_error', 'val_seg')
    """
    return "val_seg" if label_kind == "instance" else "val_rand_error"


def components(probability: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """4-connected objects of ``probability > threshold`` without those under `min_size` pixels.

    Parameters
    ----------
    probability : ndarray of shape (P, M, N)

    Returns
    -------
    ndarray of shape (P, M, N), int64
        Labels 1..K per plane, 0 elsewhere.
    """
    labels = np.stack([label_cells(plane > threshold) for plane in probability])
    return remove_small(labels, min_size)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects of fewer than `min_size` pixels to 0, plane by plane, in place; `labels`.

    Parameters
    ----------
    labels : ndarray of shape (P, M, N), int
    """
    if min_size > 0:
        for plane in labels:
            sizes = np.bincount(plane.ravel())
            small = sizes < min_size
            small[0] = True
            plane[small[plane]] = 0
    return labels


def split_cells(
    probability: np.ndarray, threshold: float, min_size: int, seed_threshold: float
) -> np.ndarray:
    """Objects of ``probability > threshold``, touching cells split by a seeded watershed.

    The seeds are the 4-connected components of ``probability > seed_threshold``;
    each floods ``1 - probability`` within the foreground (as ``biounet predict
    --instances watershed``), then objects under `min_size` pixels are removed.

    Shapes as for :func:`components`: (P, M, N) in, int64 labels (P, M, N) out.

    Examples
    --------
    >>> p = np.array([[[0.9, 0.7, 0.6, 0.7, 0.9]]])  # two peaks joined above 0.5
    >>> components(p, 0.5, 0)[0, 0].tolist(), split_cells(p, 0.5, 0, 0.8)[0, 0].tolist()
    ([1, 1, 1, 1, 1], [1, 1, 1, 2, 2])
    """
    seeds = components(probability, seed_threshold, 0)
    labels = np.stack(
        [watershed_block(p, s, threshold) for p, s in zip(probability, seeds, strict=True)]
    ).astype(np.int64)
    return remove_small(labels, min_size)


def distance_split(
    probability: np.ndarray, threshold: float, min_size: int, depth: float, radius: float = 0.0
) -> np.ndarray:
    """Objects of ``probability > threshold``, touching cells split at the necks of their shape.

    The seeds are the maxima of the distance to the background that stand at
    least `depth` pixels above the neck to a higher one and at least `radius`
    pixels from the background; each floods the negated distance within the
    foreground, an object without a seed stays whole, and objects under
    `min_size` pixels are removed. This is ``biounet predict --instances
    distance`` (:func:`biounet.inference.instances.label_stack` on the whole
    plane). Unlike :func:`split_cells` it needs no dip of the probability
    between the cells.

    Shapes as for :func:`components`: (P, M, N) in, int64 labels (P, M, N) out.

    Examples
    --------
    >>> p = np.zeros((1, 9, 17)); p[0, 1:8, 1:8] = p[0, 1:8, 9:16] = p[0, 4, 8] = 1.0
    >>> int(components(p, 0.5, 0).max()), int(distance_split(p, 0.5, 0, 1.0).max())
    (1, 2)
    >>> int(distance_split(p, 0.5, 0, 1.0, radius=5.0).max())  # peaks of 4: no cell of its own
    1
    """
    options = InstanceOptions(
        "distance", threshold, min_size=min_size, split_depth=depth, split_radius=radius
    )
    scratch = np.zeros(probability.shape, np.uint32)
    spare = np.zeros(probability.shape, np.uint32)
    tables = label_stack(probability, scratch, probability.shape[1:], options, seed_scratch=spare)
    return np.stack([table[plane] for table, plane in zip(tables, scratch, strict=True)]).astype(
        np.int64
    )


def calibrate_distance_split(
    probability: list[np.ndarray],
    truth: list[np.ndarray],
    rule: DecisionRule,
    *,
    thresholds: tuple[float, ...] = SPLIT_THRESHOLDS,
    depths: tuple[float, ...] = SPLIT_DEPTHS,
    radii: tuple[float, ...] = SPLIT_RADII,
) -> tuple[float, tuple[float, float] | None, float]:
    """Whether splitting at the necks of the cells' shape raises SEG: depth, radius, threshold.

    As :func:`calibrate_split`, for :func:`distance_split`: every depth and
    smallest radius with every foreground threshold (and the rule's own)
    against plain components at the rule's threshold, pooled SEG over the
    images of one size.

    Returns
    -------
    threshold : float
        The rule's threshold when plain components win, else the split's.
    split : (float, float) or None
        The best neck depth and smallest radius in pixels, or None when plain
        components score as well.
    seg : float
        The pooled SEG of the images with that choice.
    """
    p, g = np.stack(probability), np.stack(truth)
    best_threshold, best_split = rule.threshold, None
    best = seg_score(components(p, rule.threshold, rule.min_size), g)
    for threshold in sorted({*thresholds, rule.threshold}):
        for depth in depths:
            for radius in radii:
                labels = distance_split(p, threshold, rule.min_size, depth, radius)
                value = seg_score(labels, g)
                if value > best:
                    best_threshold, best_split, best = threshold, (depth, radius), value
    return best_threshold, best_split, best


def calibrate_split(
    probability: list[np.ndarray],
    truth: list[np.ndarray],
    rule: DecisionRule,
    *,
    thresholds: tuple[float, ...] = SPLIT_THRESHOLDS,
    seed_thresholds: tuple[float, ...] = SEED_THRESHOLDS,
) -> tuple[float, float | None, float]:
    """Whether splitting touching cells (a seeded watershed) raises SEG: seeds and threshold.

    Plain connected components separate touching cells only at a high
    threshold, so the rule of :func:`calibrate` is often high; a watershed
    from confident seeds separates them itself and does best with the
    threshold that traces the cells' outlines. Each seed level is therefore
    tried with every foreground threshold below it (and the rule's own),
    not only with the rule's threshold.

    Parameters
    ----------
    probability : list of ndarray of shape (M, N)
        Foreground probability of held-out images of one size.
    truth : list of ndarray of shape (M, N), int
        Their instance labels.
    rule : DecisionRule
        The threshold and minimum size of plain components (from :func:`calibrate`).
    thresholds, seed_thresholds : tuple of float
        Foreground thresholds and seed levels tried together (threshold < seed).

    Returns
    -------
    threshold : float
        The rule's threshold when plain components win, else the split's.
    seed_threshold : float or None
        The best seed level, or None when plain components score as well.
    seg : float
        The pooled SEG of the images with that choice.
    """
    p, g = np.stack(probability), np.stack(truth)
    best_threshold, best_seed = rule.threshold, None
    best = seg_score(components(p, rule.threshold, rule.min_size), g)
    levels = sorted({*thresholds, rule.threshold})
    for seed in seed_thresholds:
        for threshold in levels:
            if threshold >= seed:
                continue
            value = seg_score(split_cells(p, threshold, rule.min_size, seed), g)
            if value > best:
                best_threshold, best_seed, best = threshold, seed, value
    return best_threshold, best_seed, best


def calibrate(
    probability: list[np.ndarray],
    truth: list[np.ndarray],
    label_kind: str,
    *,
    thresholds: tuple[float, ...] = THRESHOLDS,
    min_sizes: tuple[int, ...] = MIN_SIZES,
) -> tuple[DecisionRule, dict[str, float]]:
    """Choose the threshold and minimum object size that score best on held-out images.

    Parameters
    ----------
    probability : list of ndarray of shape (M, N)
        Foreground probability of the held-out images.
    truth : list of ndarray of shape (M, N), int
        Binary object masks (objects > 0, separated by 1-px gaps) for
        ``binary``; instance labels for ``instance``.
    label_kind : {'binary', 'instance'}

    Images of one size are scored as one stack (pair counts summed over
    slices, as the ISBI scripts do); with several sizes, per size and averaged.

    Returns
    -------
    rule : DecisionRule
    scores : dict
        The objective (``val_rand_error`` or ``val_seg``) with the chosen rule,
        ``val_pixel_error`` at its threshold and ``val_ap50``, the objects'
        average precision at IoU 0.5.

    Examples
    --------
    >>> truth = np.zeros((1, 12, 12), np.uint8); truth[0, 2:6, 2:10] = truth[0, 8:11, 2:10] = 1
    >>> prob = np.where(truth > 0, 0.3, 0.1); prob[0, 6:8, 2:10] = 0.2  # a weak gap
    >>> rule, scores = calibrate(list(prob), list(truth), "binary")
    >>> rule.threshold, scores["val_rand_error"]
    (0.2, 0.0)
    """
    key = objective(label_kind)
    groups = {}
    for p, g in zip(probability, truth, strict=True):
        groups.setdefault(p.shape, ([], []))
        groups[p.shape][0].append(p)
        groups[p.shape][1].append(g)
    stacks = [(np.stack(p), np.stack(g)) for p, g in groups.values()]
    metric = seg_measure if key == "val_seg" else rand_error

    def score(levels: tuple[float, ...], min_size: int) -> dict[float, float]:
        return {
            t: float(
                np.mean(
                    [metric(components(p, t, min_size), g, kind="labels").best for p, g in stacks]
                )
            )
            for t in levels
        }

    best_t, best = None, None
    for t, value in score(thresholds, 0).items():
        if is_improvement(key, value, best):
            best_t, best = t, value
    # Neither score can rise by removing objects (both ignore false small
    # objects), so among the sizes that keep the best score the one with the
    # best object-level average precision (IoU 0.5) wins: fewer false objects.
    best_size, best_ap = 0, -1.0
    for size in min_sizes:
        value = best if size == 0 else score((best_t,), size)[best_t]  # 0: swept above
        if is_improvement(key, value, best):
            best, best_ap = value, -1.0  # a better score wins whatever its AP
        elif value != best:
            continue
        ap = float(np.mean([ap50(components(p, best_t, size), g, label_kind) for p, g in stacks]))
        if ap > best_ap:
            best_size, best_ap = size, ap
    pixel = np.mean(
        [pixel_error(p, (g > 0).astype(np.uint8), thresholds=(best_t,)).best for p, g in stacks]
    )
    rule = DecisionRule(best_t, best_size, f"{key} {best:.4f} on {len(probability)} image(s)")
    return rule, {key: float(best), "val_pixel_error": float(pixel), "val_ap50": best_ap}


def ap50(labels: np.ndarray, truth: np.ndarray, label_kind: str) -> float:
    """Object average precision at IoU 0.5 of labels (P, M, N) against the truth."""
    reference = truth if label_kind == "instance" else np.stack([label_cells(g) for g in truth])
    return average_precision(labels, reference, iou_thresholds=(0.5,))[0.5]
