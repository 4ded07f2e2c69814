"""Warping error: topology-preserving simple-point warping (Jain et al. 2010).

The ground-truth cell mask L is warped toward the binarised proposal T by
flipping only *simple* pixels, whose flip changes no topology; the
mismatches that remain are topological errors. Cells (foreground) are
4-connected and membranes (background) 8-connected. A pixel is simple iff,
in its 3x3 neighbourhood without the centre, the foreground 4-components that
touch its four 4-neighbours number exactly one (T4 = 1) and the background
8-components number exactly one (T8bar = 1).

The simple-point test is tabulated in :mod:`biounet.evaluation.simple_points`.

Warping, per slice and threshold (PAPER.md section 3.4): pad L and T by one
background pixel; repeat passes until no mismatch is left or a pass flips
nothing; each pass visits the mismatches in descending ``|p - threshold|``
(ties in raster order) and flips those simple in the *current* L.

The classic warping error is ``|mismatches| / (M * N)`` averaged over slices;
the old ISBI leaderboard counts only the pixels classified as *splits* and
*mergers* (:func:`classify_warping_errors`). Both are minimised over the
thresholds 0.0, 0.1, ..., 0.9.

The implementation is written from these definitions (not from the GPL Java
code of Fiji) and gives exactly the result of the sequential visit. The first
pass, which sees every mismatch, runs in vectorised rounds: a pixel is decided
once every mismatch among its eight neighbours that comes earlier in the visit
order has been decided, so pixels decided in the same round are never
neighbours. Later passes are vectorised too while many pixels must be tested
again; then they run sequentially and test again only the pixels whose
neighbourhood changed since their last test (the others cannot have become
simple).

References
----------
.. [1] V. Jain et al., "Boundary learning by optimization with topological
       constraints", CVPR 2010.
.. [2] I. Arganda-Carreras et al., Front. Neuroanat. 9:142, 2015.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from biounet.evaluation.proposal import FOUR, WARPING_THRESHOLDS, Proposal, binary_ground_truth
from biounet.evaluation.simple_points import OFFSETS, neighbourhood_codes, simple_point_table
from biounet.evaluation.table import MetricResult

#: Names of the codes returned by :func:`classify_warping_errors` (index = code).
WARPING_ERROR_KINDS = (
    "none",
    "object_addition",
    "object_deletion",
    "hole_addition",
    "hole_deletion",
    "merge",
    "split",
)
_OBJ_ADD, _OBJ_DEL, _HOLE_ADD, _HOLE_DEL, _MERGE, _SPLIT = range(1, 7)


def simple_point_warp(
    reference: np.ndarray, target: np.ndarray, *, priority: np.ndarray | None = None
) -> np.ndarray:
    """Warp `reference` toward `target` by flipping simple pixels only.

    Parameters
    ----------
    reference : ndarray of shape (M, N), bool
        The mask to warp (the ground-truth cells L).
    target : ndarray of shape (M, N), bool
        The mask to approach (the binarised proposal T).
    priority : ndarray of shape (M, N), float, optional
        Mismatches are visited in descending priority (``|p - threshold|``);
        ties, and all pixels when omitted, in raster order.

    Returns
    -------
    warped : ndarray of shape (M, N), bool
        Same topology as `reference`; equal to `target` wherever a flip was
        possible.

    Examples
    --------
    >>> ref = np.zeros((5, 7), bool); ref[1:4, 1:3] = True
    >>> tgt = np.zeros((5, 7), bool); tgt[1:4, 2:4] = True     # shifted by 1 px
    >>> bool((simple_point_warp(ref, tgt) == tgt).all())
    True
    """
    ref = np.asarray(reference, bool)
    tgt = np.asarray(target, bool)
    if ref.shape != tgt.shape or ref.ndim != 2:
        raise ValueError(f"reference {ref.shape} and target {tgt.shape}: need equal 2-D shapes")
    rows, cols = ref.shape
    width = cols + 2
    lab = np.pad(ref, 1).astype(np.uint8).ravel()
    tar = np.pad(tgt, 1).astype(np.uint8).ravel()
    order = np.flatnonzero(lab != tar)
    if priority is not None:
        pri = np.pad(np.asarray(priority, np.float64), 1).ravel()
        order = order[np.argsort(-pri[order], kind="stable")]
    offsets = np.array([dy * width + dx for dy, dx in OFFSETS], np.intp)
    recheck = _vector_pass(lab, tar, order, offsets)
    while recheck.size >= VECTOR_PASS_MIN:  # many to re-test: another vectorised pass
        order = order[lab[order] != tar[order]]
        recheck = _vector_pass(lab, tar, order, offsets)
    if recheck.size:
        _later_passes(lab, order[lab[order] != tar[order]], recheck, offsets)
    return lab.reshape(rows + 2, width)[1:-1, 1:-1].astype(bool)


#: A further pass is vectorised (over all remaining mismatches) when at least this many
#: pixels must be re-tested, and sequential (over those pixels only) below.
VECTOR_PASS_MIN = 2000


def _vector_pass(lab: np.ndarray, tar: np.ndarray, order: np.ndarray, offsets) -> np.ndarray:
    """One pass over `order`, flipping simple pixels of `lab` in place; return pixels to re-check.

    The sequential visit is evaluated in rounds (Kahn's topological order): a
    pixel is decided once every mismatch among its 8 neighbours that comes
    earlier in `order` has been decided, so it sees exactly the state that the
    sequential visit would show it, and the pixels of one round are never
    neighbours. The returned pixels are the remaining mismatches next to a
    pixel that flipped after them: only those can have become simple (the
    test depends on nothing but the 8 neighbours).
    """
    never = np.iinfo(np.int64).max
    position = np.full(lab.size, never, np.int64)
    position[order] = np.arange(order.size)
    around = position[order[:, None] + offsets]  # neighbours' positions, never if no mismatch
    mine = np.arange(order.size)[:, None]
    waiting = np.count_nonzero(around < mine, axis=1)  # undecided earlier neighbours
    later = np.where((around > mine) & (around != never), around, -1)
    weights = (1 << np.arange(8)).astype(np.uint8)
    simple = simple_point_table()
    ready = np.flatnonzero(waiting == 0)
    flipped = []
    while ready.size:
        pixels = order[ready]
        flip = simple[lab[pixels[:, None] + offsets] @ weights]
        lab[pixels[flip]] ^= 1
        flipped.append(ready[flip])
        after = later[ready].ravel()
        after, count = np.unique(after[after >= 0], return_counts=True)
        waiting[after] -= count
        ready = after[waiting[after] == 0]
    done = np.concatenate(flipped) if flipped else mine[:0, 0]
    earlier = around[done]
    earlier = order[earlier[earlier < done[:, None]]]
    return np.unique(earlier[lab[earlier] != tar[earlier]])


def _later_passes(lab: np.ndarray, order: np.ndarray, recheck: np.ndarray, offsets) -> None:
    """Further passes over the remaining mismatches `order`, sequentially, in place.

    Only pixels whose neighbourhood changed since their last test are tested
    again (`recheck`, then the later neighbours of every flip), which gives
    the same result as testing every mismatch in every pass.
    """
    flat = bytearray(lab.tobytes())
    pixels = order.tolist()
    rank = dict(zip(pixels, range(len(pixels)), strict=True))
    dirty = bytearray(len(pixels))
    for p in recheck.tolist():
        dirty[rank[p]] = 1
    table = bytes(simple_point_table().astype(np.uint8))
    nw, n, ne, w, e, sw, s, se = (int(o) for o in offsets)
    while True:
        flips = 0
        pos = dirty.find(1)
        while pos != -1:
            dirty[pos] = 0
            i = pixels[pos]
            code = (
                flat[i + nw]
                | flat[i + n] << 1
                | flat[i + ne] << 2
                | flat[i + w] << 3
                | flat[i + e] << 4
                | flat[i + sw] << 5
                | flat[i + s] << 6
                | flat[i + se] << 7
            )
            if table[code]:
                flat[i] ^= 1
                flips += 1
                del rank[i]
                for o in (nw, n, ne, w, e, sw, s, se):
                    q = rank.get(i + o)
                    if q is not None:
                        dirty[q] = 1
            pos = dirty.find(1, pos + 1)
        if not flips:
            break
    lab[:] = np.frombuffer(bytes(flat), np.uint8)


def classify_warping_errors(warped: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Classify the mismatches that simple-point warping could not remove.

    Uses the 4-connected cells of `warped` and the set of cell IDs (0 =
    background) among each mismatch's 8 neighbours:

    - one ID, 0: object deletion (warped = 1) or object addition (warped = 0);
    - one ID, a cell: hole addition (warped = 1) or hole deletion (warped = 0);
    - two IDs: hole addition if warped = 0; otherwise the pixel is removed and
      the cells recomputed: a **split** if its neighbours then belong to more
      than two IDs, else hole deletion;
    - three or more IDs: **merge** if warped = 0, **split** if warped = 1.

    Parameters
    ----------
    warped : ndarray of shape (M, N), bool
        The warped ground truth (:func:`simple_point_warp`).
    target : ndarray of shape (M, N), bool
        The binarised proposal.

    Returns
    -------
    kinds : ndarray of shape (M, N), uint8
        0 where ``warped == target``, else an index into
        :data:`WARPING_ERROR_KINDS`.

    Examples
    --------
    >>> warped = np.array([[1, 1, 0, 1, 1]], bool)    # two cells, one membrane pixel
    >>> target = np.ones((1, 5), bool)                 # proposal: no membrane
    >>> [WARPING_ERROR_KINDS[k] for k in classify_warping_errors(warped, target)[0]]
    ['none', 'none', 'merge', 'none', 'none']
    """
    w = np.asarray(warped, bool)
    cells = np.pad(ndi.label(w, structure=FOUR)[0], 1)
    kinds = np.zeros(w.shape, np.uint8)
    ys, xs = np.nonzero(w != np.asarray(target, bool))
    if ys.size == 0:
        return kinds
    ids = np.sort(np.stack([cells[ys + 1 + dy, xs + 1 + dx] for dy, dx in OFFSETS], 1), 1)
    n_ids = 1 + (np.diff(ids, axis=1) != 0).sum(1)
    on = w[ys, xs]
    bg_only = ids[:, -1] == 0
    kind = np.select(
        [
            (n_ids == 1) & bg_only,
            n_ids == 1,
            (n_ids == 2) & ~on,
            n_ids == 2,
            ~on,
        ],
        [
            np.where(on, _OBJ_DEL, _OBJ_ADD),
            np.where(on, _HOLE_ADD, _HOLE_DEL),
            _HOLE_ADD,
            _HOLE_DEL,  # may become a split below
            _MERGE,
        ],
        _SPLIT,
    ).astype(np.uint8)
    check = np.flatnonzero((n_ids == 2) & on)
    if check.size:
        kind[check[_splits(cells, ys[check] + 1, xs[check] + 1)]] = _SPLIT
    kinds[ys, xs] = kind
    return kinds


def _bits(code: int, *names: str) -> bool:
    return all(code >> _BIT[name] & 1 for name in names)


_BIT = {"nw": 0, "n": 1, "ne": 2, "w": 3, "e": 4, "sw": 5, "s": 6, "se": 7}
#: For each neighbourhood: foreground 4-neighbours minus full 2x2 blocks at the centre.
_EDGES_MINUS_BLOCKS = np.array(
    [
        sum(_bits(c, k) for k in ("n", "w", "e", "s"))
        - sum(
            _bits(c, *block)
            for block in (("nw", "n", "w"), ("n", "ne", "e"), ("w", "sw", "s"), ("e", "s", "se"))
        )
        for c in range(256)
    ]
)


def _splits(cells: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Whether removing each foreground pixel splits its cell; exact, all pixels at once.

    With 4-connected cells and an 8-connected background (framed by
    background), the Euler number ``chi = cells - holes`` is ``V - E + F``
    over pixels, 4-adjacent pairs and full 2x2 blocks, so removing a pixel
    changes it by ``-1 + e - f`` (its e foreground 4-neighbours and f full
    blocks). The background gains the pixel and joins the d background
    components around it, so ``holes`` changes by ``1 - d``. The number of
    cells therefore changes by ``e - f - d``: the cell splits iff that is >= 1.
    """
    background = ndi.label(cells == 0, structure=np.ones((3, 3), bool))[0]
    around = np.sort(np.stack([background[ys + dy, xs + dx] for dy, dx in OFFSETS], 1), 1)
    d = ((np.diff(around, axis=1) != 0) & (around[:, 1:] > 0)).sum(1) + (around[:, 0] > 0)
    codes = neighbourhood_codes(cells > 0)[ys, xs]
    return _EDGES_MINUS_BLOCKS[codes] - d >= 1


def warping_errors(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: tuple[float, ...] = WARPING_THRESHOLDS,
) -> dict:
    """Classic and splits-and-mergers warping errors at every threshold.

    Parameters
    ----------
    prediction : ndarray of shape (M, N) or (P, M, N)
        Probability map (float, high = cell), swept over `thresholds`, or a
        label image (integer, 0 = boundary), scored as it is.
    ground_truth : ndarray, same shape
        Cells > 0, membranes 0.
    thresholds : tuple of float
        Default 0.0, 0.1, ..., 0.9 (10 levels, the ISBI warping script).

    Returns
    -------
    errors : dict
        ``{"classic": {level: error}, "splits_mergers": {level: error},
        "splits": {level: pixels}, "mergers": {level: pixels}}``; the single
        level is None for a label image. Errors are pixel counts divided by
        ``P * M * N`` (the mean over slices of the per-slice fraction).
    """
    proposal = Proposal.from_array(prediction)
    gt = binary_ground_truth(ground_truth)
    if gt.shape != proposal.shape:
        raise ValueError(f"prediction {proposal.shape} and ground truth {gt.shape} differ")
    levels = proposal.levels(thresholds)
    counts = np.zeros((len(levels), len(WARPING_ERROR_KINDS)), np.int64)
    for z in range(gt.shape[0]):
        for k, level in enumerate(levels):
            target = proposal.foreground(z, level)
            warped = simple_point_warp(gt[z], target, priority=proposal.priority(z, level))
            counts[k] += np.bincount(
                classify_warping_errors(warped, target).ravel(), minlength=counts.shape[1]
            )
    total = float(gt.size)
    out: dict = {"classic": {}, "splits_mergers": {}, "splits": {}, "mergers": {}}
    for k, level in enumerate(levels):
        out["classic"][level] = counts[k, 1:].sum() / total
        out["splits_mergers"][level] = (counts[k, _SPLIT] + counts[k, _MERGE]) / total
        out["splits"][level] = int(counts[k, _SPLIT])
        out["mergers"][level] = int(counts[k, _MERGE])
    return out


def warping_error(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    *,
    thresholds: tuple[float, ...] = WARPING_THRESHOLDS,
    variant: str = "splits_mergers",
):
    """The warping error minimised over thresholds.

    Parameters
    ----------
    prediction, ground_truth, thresholds
        As in :func:`warping_errors`.
    variant : {"splits_mergers", "classic"}
        ``splits_mergers`` counts only split and merge pixels (the old ISBI
        leaderboard and the paper's Table 1); ``classic`` counts every
        remaining mismatch.

    Returns
    -------
    result : biounet.evaluation.table.MetricResult
        ``best`` (lowest error), its ``threshold`` and ``per_threshold``.

    Examples
    --------
    >>> gt = np.zeros((7, 7), np.uint8); gt[1:6, 1:3] = gt[1:6, 4:6] = 255
    >>> merged = np.zeros((7, 7), np.uint8); merged[1:6, 1:6] = 255  # membrane lost
    >>> print(warping_error(merged, gt))
    0.102041 (labels)
    """
    if variant not in ("splits_mergers", "classic"):
        raise ValueError(f"variant: expected splits_mergers or classic, got {variant!r}")
    errors = warping_errors(prediction, ground_truth, thresholds=thresholds)
    return MetricResult.from_sweep(errors[variant], lower_is_better=True)
