"""The border term of Eq. 2 and the separation of touching objects.

Ronneberger et al. (2015), Sec. 3: the weight map ``w(x) = w_c(x) +
w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` "forces the network to
learn the small separation borders that we introduce between touching
cells"; ``d1`` and ``d2`` are the distances to the border of the nearest and
the second-nearest cell. This module computes the geometric part: the
separation borders and the border term. :mod:`biounet.training.weight_map` adds the
class balance and builds the training target.

Separation (PAPER.md item 19, the rule of the authors' 2019 code): an object
pixel whose already-visited 8-neighbours (up-left, up, up-right, left) hold a
*different* object becomes background. This leaves 1-px gaps, so that no two
objects stay 8-adjacent.

Speed. The direct way runs one full-image Euclidean distance transform per
object (:func:`_border_weight_naive`, kept as the reference); on an ISBI
slice with ~130 regions that takes seconds. :func:`border_weight` computes
the same numbers in a few tens of milliseconds. The term is below
``NEGLIGIBLE * w0`` once ``d1 + d2`` exceeds a cut-off R (34 px for
sigma = 5), so only the two nearest *distinct* objects within R matter.
They are found exactly, as integer squared distances, by a separable
search: a row pass finds for every pixel the nearest object pixel in its
row and the nearest pixel of a *different* object in its row (a third
object in the same row is dominated by these two, so two per row are
enough); a column pass then combines rows ``y +- dy`` for growing ``dy``
and stops per pixel once ``dy**2`` reaches the best squared distance found
or the cut-off. The values equal the direct way's bit for bit wherever
``d1 + d2 <= R``; beyond R the term is set to 0 where the direct way gives
less than ``NEGLIGIBLE * w0``.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
       Biomedical Image Segmentation", MICCAI 2015, Sec. 3, Eq. 2.
.. [2] T. Falk et al., "U-Net: deep learning for cell counting, detection, and
       morphometry", Nature Methods 16 (2019) (separation-border rule).
"""

from __future__ import annotations

import math

import numpy as np

#: The border term is treated as zero below this fraction of ``w0``.
NEGLIGIBLE = 1e-10

# Causal 8-neighbours (row, column offsets) of the separation rule: up-left,
# up, up-right, left; (dx, dy) = (-1,-1), (0,-1), (1,-1), (-1,0) in the paper's
# x/y notation.
_CAUSAL = ((-1, -1), (-1, 0), (-1, 1), (0, -1))


def separation_borders(instances: np.ndarray) -> np.ndarray:
    """Object pixels that become background to separate touching objects.

    The pixels are visited in raster order (row by row, left to right); an
    object pixel becomes background when one of its already-visited
    8-neighbours -- (row, column) offsets (-1, -1), (-1, 0), (-1, 1) and
    (0, -1) -- holds, at that moment, a different object. Every 8-adjacent
    pair of different objects has one pixel that sees the other among these
    neighbours, so afterwards no two objects are 8-adjacent, and the gaps
    are 1 px wide. (The authors' 2019 code tests the neighbours' original
    labels instead, which also removes the last column of the left object
    along vertical contacts: 2-px gaps there.)

    Parameters
    ----------
    instances : ndarray of shape (M, N), int
        0 = background, 1..K objects (gaps in ids allowed).

    Returns
    -------
    ndarray of shape (M, N), bool

    Examples
    --------
    >>> labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]])
    >>> separation_borders(labels).astype(int)
    array([[0, 0, 1, 0],
           [0, 0, 1, 0],
           [1, 1, 1, 1]])
    """
    labels = np.asarray(instances)
    rows, cols = labels.shape
    padded = np.pad(labels, 1)
    # Candidates: pixels with a different object among the visited neighbours'
    # original labels. Only they can be removed, and a neighbour's label can
    # only change to 0, so visiting the candidates in raster order with their
    # neighbours' current labels is the full raster scan.
    candidate = np.zeros(labels.shape, bool)
    for dr, dc in _CAUSAL:
        neighbour = padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        candidate |= (neighbour > 0) & (neighbour != labels)
    candidate &= labels > 0
    rr, cc = np.nonzero(candidate)
    if rr.size == 0:
        return candidate
    width = cols + 2
    flat = padded.ravel()
    offsets = [dr * width + dc for dr, dc in _CAUSAL]
    border = np.zeros(labels.shape, bool)
    for r, c, p in zip(rr.tolist(), cc.tolist(), ((rr + 1) * width + cc + 1).tolist(), strict=True):
        own = flat[p]
        for off in offsets:
            other = flat[p + off]
            if other and other != own:
                flat[p] = 0
                border[r, c] = True
                break
    return border


def separate_instances(instances: np.ndarray) -> np.ndarray:
    """`instances` with the :func:`separation_borders` set to background (int32 copy).

    Examples
    --------
    >>> separate_instances(np.array([[1, 1, 2, 2]]))
    array([[1, 1, 0, 2]], dtype=int32)
    """
    out = np.array(instances, dtype=np.int32, copy=True)
    out[separation_borders(out)] = 0
    return out


def cutoff_radius(*, sigma: float = 5.0) -> float:
    """Value of ``d1 + d2`` beyond which the border term is below ``NEGLIGIBLE * w0``.

    Examples
    --------
    >>> round(cutoff_radius(sigma=5.0), 2)
    33.93
    """
    return sigma * math.sqrt(2.0 * math.log(1.0 / NEGLIGIBLE))


class _Packing:
    """Candidates packed into one integer, ``(squared distance << bits) | label``.

    A single ``minimum`` then picks the nearer candidate together with its
    label, and adding ``dy**2 << bits`` moves a candidate to another row.
    int32 when everything fits (twice as fast), int64 otherwise.
    """

    def __init__(self, max_label: int, cols: int, cap: int, max_dy: int) -> None:
        self.bits = max(int(max_label).bit_length(), 1)
        need = self.bits + max(cols, cap * cap + max_dy * max_dy + 1).bit_length()
        if need <= 31:
            self.dtype = np.int32
        elif need <= 63:
            self.dtype = np.int64
        else:
            raise ValueError("instance ids or image too large for the border weight")
        self.mask = (1 << self.bits) - 1
        self.cap = cap
        self.none = (cap * cap) << self.bits

    def shift(self, dy: int) -> int:
        """Key offset that moves a candidate `dy` rows away."""
        return (dy * dy) << self.bits

    def capped(self, dsq):
        """Key for "nothing nearer than sqrt(dsq)": larger than any real key with it."""
        return (dsq << self.bits) | self.mask


def _row_two_nearest(
    labels: np.ndarray, pk: _Packing, first: np.ndarray, second: np.ndarray
) -> None:
    """Per pixel: the nearest object pixel in its row and the nearest of another object.

    Writes packed keys into `first` (the nearest object pixel in the row)
    and `second` (the nearest pixel of a different object), both of shape
    (M, N). Horizontal distances are clipped at ``pk.cap``, which stands for
    "none". Works on blocks of rows that fit in the cache.
    """
    rows, cols = labels.shape
    pos = np.arange(cols, dtype=pk.dtype)
    block = max(1, 16384 // cols)
    for r0 in range(0, rows, block):
        lab = labels[r0 : r0 + block].astype(pk.dtype)
        n = lab.shape[0]
        both = np.concatenate([lab, lab[:, ::-1]])  # left-to-right and right-to-left
        obj = both > 0
        # nearest object pixel at or before each pixel, packed (pos << bits) | label
        near = np.where(obj, (pos << pk.bits) | both, -1)
        np.maximum.accumulate(near, axis=1, out=near)
        before = np.empty_like(near)
        before[:, 0] = -1
        before[:, 1:] = near[:, :-1]
        # a run = consecutive object pixels (background ignored) of one label; the
        # nearest pixel of another label is the last object pixel before the run
        other = np.where(obj & ((before & pk.mask) != both), before, -1)
        np.maximum.accumulate(other, axis=1, out=other)
        keys = []
        for packed in (near, other):
            g = pos - (packed >> pk.bits)
            np.minimum(g, pk.cap, out=g)
            g *= g
            g <<= pk.bits
            g |= packed & pk.mask
            g[packed < 0] = pk.none
            keys.append(g)
        l1, r1 = keys[0][:n], keys[0][n:, ::-1]
        l2, r2 = keys[1][:n], keys[1][n:, ::-1]
        out1 = first[r0 : r0 + n]
        out2 = second[r0 : r0 + n]
        np.minimum(l1, r1, out=out1)
        loser = np.maximum(l1, r1)
        # the other side's nearest pixel counts unless it belongs to the same object
        np.minimum(l2, r2, out=out2)
        loser[(loser & pk.mask) == (out1 & pk.mask)] = pk.none
        np.minimum(out2, loser, out=out2)


def _two_nearest_squared(
    labels: np.ndarray, reach: float, pixels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Squared distances to the two nearest objects for `pixels` (flat indices).

    Returns ``(pix, dsq1, dsq2, cap2)`` for the subset `pix` of `pixels`
    with ``d1 <= reach / 2``: `dsq1` exact; `dsq2` exact where it is below
    `cap2`, i.e. where ``d1 + d2 <= reach``, and ``>= cap2`` ("nothing
    within reach") elsewhere.
    """
    rows, cols = labels.shape
    max_dy = min(int(reach), rows - 1)
    cap = int(reach) + 1  # clipped row distances stand for "nothing within reach"
    pk = _Packing(labels.max(initial=0), cols, cap, max_dy)
    # rows of "nothing" above and below, so that rows y +- dy never leave the array
    first = np.full((rows + 2 * (max_dy + 1), cols), pk.none, pk.dtype)
    second = np.full_like(first, pk.none)
    inner = slice(max_dy + 1, max_dy + 1 + rows)
    _row_two_nearest(labels, pk, first[inner], second[inner])
    first, second = first.ravel(), second.ravel()
    idx = pixels + (max_dy + 1) * cols  # the same pixels in the padded arrays

    # Phase 1: the nearest object. Only d1 <= reach / 2 matters (d1 <= d2);
    # keys are capped just above that, so the search stops there.
    cap1 = int((reach / 2) ** 2) + 1
    best = np.minimum(first[idx], pk.capped(cap1))
    best = _scan_rows(best, idx, None, lambda q, _: first[q], pk, cols, max_dy)
    dsq1 = best >> pk.bits
    keep = np.flatnonzero(dsq1 < cap1)
    label1, idx, pix, dsq1 = best[keep] & pk.mask, idx[keep], pixels[keep], dsq1[keep]

    # Phase 2: the nearest object with another label. Only d2 <= reach - d1
    # matters; keys are capped just above that.
    cap2 = (np.floor((reach - np.sqrt(dsq1)) ** 2) + 1).astype(pk.dtype)

    def other(q: np.ndarray, label: np.ndarray) -> np.ndarray:
        near = first[q]
        return np.where((near & pk.mask) == label, second[q], near)

    best = np.minimum(other(idx, label1), pk.capped(cap2))
    best = _scan_rows(best, idx, label1, other, pk, cols, max_dy)
    return pix, dsq1.astype(np.int64), (best >> pk.bits).astype(np.int64), cap2


def _scan_rows(best, idx, extra, candidate, pk: _Packing, cols: int, max_dy: int):
    """Lower packed keys `best` with ``candidate(rows y +- dy) + dy**2`` for dy = 1, 2, ...

    A pixel is final once ``dy**2`` reaches its best squared distance, so
    the active set shrinks as `dy` grows; it is compacted now and then.
    `extra` (per-pixel data for `candidate`) is compacted with it.
    """
    result = np.empty_like(best)
    j = np.arange(best.size)
    for dy in range(1, max_dy + 1):
        shift = pk.shift(dy)
        alive = best >= shift + pk.shift(1)  # squared distance > dy**2
        count = np.count_nonzero(alive)
        if count < 0.75 * alive.size:
            dead = ~alive
            result[j[dead]] = best[dead]
            keep = np.flatnonzero(alive)
            best, idx, j = best[keep], idx[keep], j[keep]
            extra = None if extra is None else extra[keep]
            if not count:
                break
        np.minimum(best, candidate(idx - dy * cols, extra) + shift, out=best)
        np.minimum(best, candidate(idx + dy * cols, extra) + shift, out=best)
    result[j] = best
    return result


def two_nearest_distances(
    instances: np.ndarray, *, max_sum: float = math.inf, where: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest object, exact up to a cut-off.

    Parameters
    ----------
    instances : ndarray of shape (M, N), int
        0 = background, 1..K objects.
    max_sum : float
        Only pixels with ``d1 + d2 <= max_sum`` are needed. Elsewhere `d1`
        and `d2` may be ``inf`` or larger than the true distances.
    where : ndarray of shape (M, N), bool, optional
        Pixels to compute (default: all); ``inf`` elsewhere.

    Returns
    -------
    d1, d2 : ndarray of shape (M, N), float64
        Euclidean distances between pixel centres: the values of
        ``scipy.ndimage.distance_transform_edt(instances != k)`` sorted over
        the objects ``k``, wherever ``d1 + d2 <= max_sum``; ``inf`` where
        there is no (second) object.

    Examples
    --------
    >>> labels = np.array([[1, 0, 0, 0, 2]])
    >>> d1, d2 = two_nearest_distances(labels)
    >>> float(d1[0, 2]), float(d2[0, 2]), float(d2[0, 0])
    (2.0, 2.0, 4.0)
    """
    labels = np.asarray(instances)
    rows, cols = labels.shape
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    todo = np.ones(labels.shape, bool) if where is None else np.asarray(where, bool)
    if not todo.any() or not (labels > 0).any():
        return d1, d2
    # every distance inside the image is below rows + cols
    reach = min(float(max_sum), 2.0 * (rows + cols))
    pix, dsq1, dsq2, cap2 = _two_nearest_squared(labels, reach, np.flatnonzero(todo))
    d1.ravel()[pix] = np.sqrt(dsq1)
    found = dsq2 < cap2
    d2.ravel()[pix[found]] = np.sqrt(dsq2[found])
    return d1, d2


def border_weight(instances: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The border term of Eq. 2 on background pixels, 0 on objects.

    Parameters
    ----------
    instances : ndarray of shape (M, N), int
        0 = background, 1..K objects, already separated (see
        :func:`separate_instances`).
    w0, sigma : float
        Weight and width of the term (10 and 5 px in the paper).

    Returns
    -------
    ndarray of shape (M, N), float64
        ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background pixels with
        at least two objects, exactly 0 where this is below ``NEGLIGIBLE * w0``
        and on object pixels.

    Examples
    --------
    Two objects 3 px apart: the gap centre has d1 = d2 = 2.

    >>> labels = np.zeros((1, 7), int); labels[0, :2] = 1; labels[0, 5:] = 2
    >>> round(float(border_weight(labels)[0, 3]), 4), round(10 * math.exp(-16 / 50), 4)
    (7.2615, 7.2615)
    """
    labels = np.asarray(instances)
    out = np.zeros(labels.shape, np.float64)
    if w0 == 0 or not (labels > 0).any():
        return out
    reach = cutoff_radius(sigma=sigma)
    pix, dsq1, dsq2, cap2 = _two_nearest_squared(labels, reach, np.flatnonzero(labels == 0))
    near = dsq2 < cap2
    total = np.sqrt(dsq1[near]) + np.sqrt(dsq2[near])
    pix = pix[near]
    out.ravel()[pix] = w0 * np.exp(-(total**2) / (2.0 * sigma * sigma))
    return out


def _border_weight_naive(instances: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0):
    """Reference for :func:`border_weight`: one full distance transform per object."""
    from scipy.ndimage import distance_transform_edt

    labels = np.asarray(instances)
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for k in np.unique(labels[labels > 0]):
        d = distance_transform_edt(labels != k)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    out = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma * sigma))
    out[labels > 0] = 0.0
    return out
