"""Instance labels from probability maps, block by block, for images of any size.

Two methods, both working on one block at a time so that memory does not
grow with the image:

``components``
    Connected components of ``probability > threshold``. Each block is
    labelled on its own, components that touch across block borders are
    merged with a union-find over the provisional labels
    (``scipy.sparse.csgraph``), so the result is exactly the whole-image
    labelling (up to the numbering).
``watershed``
    Seeds are the connected components of ``probability > seed_threshold``
    (labelled exactly as above); each block, with a margin of context, is
    flooded from those seeds over ``1 - probability`` within
    ``probability > threshold``. Seed labels are global, so blocks need no
    merging; a pixel farther than the margin from its block whose basin is
    decided outside the margin can differ from a whole-image watershed.
``distance``
    Splits touching objects at their necks, wherever the probability is
    high across the contact: the seeds are the h-maxima of the distance of
    each foreground pixel (``probability > threshold``) to the background,
    the maxima that stand at least ``split_depth`` pixels above the saddle to
    any higher one (:func:`distance_seeds`), and the foreground is flooded
    from them over the negated distance. Seeds and distances are computed on
    each block with a margin of context and labelled exactly across blocks,
    so the result equals the whole-image one for objects smaller than the
    margin.

Objects smaller than ``min_size`` pixels (after merging) are removed, and
labels are renumbered 1..N in order of first appearance (block by block).
Stacks are labelled plane by plane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from biounet.options import InstanceOptions

#: Pixels of context around each block for the watershed and the distance split.
WATERSHED_MARGIN = 64
#: The methods that flood the foreground from seeds.
SEEDED = ("watershed", "distance")


def _blocks(shape: tuple[int, int], block: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
    for y in range(0, shape[0], block[0]):
        for x in range(0, shape[1], block[1]):
            yield slice(y, min(y + block[0], shape[0])), slice(x, min(x + block[1], shape[1]))


def _with_margin(span: slice, size: int) -> tuple[int, int]:
    """`span` widened by :data:`WATERSHED_MARGIN` on both sides, within 0..size."""
    return max(span.start - WATERSHED_MARGIN, 0), min(span.stop + WATERSHED_MARGIN, size)


def _pairs(a: np.ndarray, b: np.ndarray, connectivity: int) -> np.ndarray:
    """Label pairs of two adjacent pixel lines (a before b), shape (n, 2)."""
    shifts = (0,) if connectivity == 1 else (-1, 0, 1)
    out = []
    for s in shifts:
        if s < 0:
            x, y = a[:s], b[-s:]
        elif s > 0:
            x, y = a[s:], b[:-s]
        else:
            x, y = a, b
        keep = (x > 0) & (y > 0)
        out.append(np.stack([x[keep], y[keep]], axis=1))
    return np.concatenate(out)


def label_plane(
    read: Callable[[slice, slice], np.ndarray],
    write: Callable[[slice, slice, np.ndarray], None],
    shape: tuple[int, int],
    block: tuple[int, int],
    *,
    connectivity: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Provisional block-wise labels of a binary plane, and how they merge.

    Parameters
    ----------
    read : callable
        ``read(rows, cols) -> ndarray of bool (h, w)``: the foreground.
    write : callable
        ``write(rows, cols, labels)`` stores provisional labels (uint32).
    shape : (H, W)
    block : (int, int)
    connectivity : {1, 2}

    Returns
    -------
    component : ndarray of shape (n + 1,), int
        Merged component of every provisional label (index 0: background).
    sizes : ndarray of shape (n + 1,), int
        Pixels per provisional label.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from skimage.measure import label

    offset = 0
    sizes = [np.zeros(1, np.int64)]
    pairs = []
    last_row = np.zeros(shape[1], np.uint32)
    prev_row = last_row.copy()
    left_col = np.zeros(0, np.uint32)
    for rows, cols in _blocks(shape, block):
        if cols.start == 0:
            prev_row, last_row = last_row, np.zeros(shape[1], np.uint32)
        lab, n = label(read(rows, cols), connectivity=connectivity, return_num=True)
        lab = lab.astype(np.uint32)
        lab[lab > 0] += np.uint32(offset)
        sizes.append(np.bincount(lab.ravel(), minlength=offset + n + 1)[offset + 1 :])
        write(rows, cols, lab)
        if cols.start > 0:
            pairs.append(_pairs(left_col, lab[:, 0], connectivity))
        if rows.start > 0:
            lo, hi = max(cols.start - 1, 0), min(cols.stop + 1, shape[1])
            above = prev_row[lo:hi]
            pad_l = cols.start - lo
            line = np.zeros(hi - lo, np.uint32)
            line[pad_l : pad_l + lab.shape[1]] = lab[0]
            pairs.append(_pairs(above, line, connectivity))
        left_col = lab[:, -1].copy()
        last_row[cols] = lab[-1]
        offset += n
    size = np.concatenate(sizes)
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint32)
    graph = coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(offset + 1, offset + 1)
    )
    _, component = connected_components(graph, directed=False)
    return component, size


def final_lut(component: np.ndarray, sizes: np.ndarray, min_size: int) -> np.ndarray:
    """Map provisional labels to final ones: merged, filtered by size, numbered 1..N.

    Components are numbered in order of their first provisional label;
    component 0 (background) and components under `min_size` map to 0.

    Returns
    -------
    ndarray of shape (n + 1,), uint32
    """
    merged_size = np.bincount(component, weights=sizes)
    first = np.full(component.max() + 1, len(component), np.int64)
    np.minimum.at(first, component, np.arange(len(component)))
    keep = (merged_size >= max(min_size, 1)) & (first > 0)
    keep[component[0]] = False
    order = np.argsort(first)
    number = np.zeros(len(first), np.uint32)
    kept = order[keep[order]]
    number[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    return number[component]


def watershed_block(probability: np.ndarray, seeds: np.ndarray, threshold: float) -> np.ndarray:
    """Seeded watershed of one block over ``1 - probability`` inside the foreground.

    Parameters
    ----------
    probability : ndarray of shape (h, w), float
    seeds : ndarray of shape (h, w), int
        Global seed labels (0 = no seed).
    threshold : float

    Returns
    -------
    ndarray of shape (h, w), uint32
    """
    from skimage.segmentation import watershed

    mask = (probability > threshold) | (seeds > 0)
    return watershed(1.0 - probability, markers=seeds, mask=mask).astype(np.uint32)


def distance_seeds(
    probability: np.ndarray, threshold: float, depth: float, radius: float = 0.0
) -> np.ndarray:
    """Seeds that split touching objects at their necks: h-maxima of the distance to background.

    Parameters
    ----------
    probability : ndarray of shape (h, w), float
    threshold : float
        Foreground is ``probability > threshold``.
    depth : float
        A local maximum of the distance seeds its own object only if it
        stands at least `depth` pixels above the saddle that joins it to a
        higher one; every object keeps one seed. The seeds are the regional
        maxima (4-connected plateaus) of the distance reconstructed from
        ``distance - depth``, so label them 4-connected.
    radius : float
        Seeds whose largest distance to the background is under `radius` are
        dropped: a part narrower than ``2 * radius`` (a protrusion) is not a
        cell of its own. An object left without a seed stays whole (the
        labelling gives it its own label; :func:`label_stack`).

    Returns
    -------
    ndarray of shape (h, w), bool

    Examples
    --------
    >>> p = np.zeros((9, 17)); p[1:8, 1:8] = p[1:8, 9:16] = p[4, 8] = 1.0  # a 1-px neck
    >>> from skimage.measure import label
    >>> int(label(distance_seeds(p, 0.5, 1.0)).max()), int(label(distance_seeds(p, 0.5, 5.0)).max())
    (2, 1)
    """
    from scipy import ndimage
    from skimage.morphology import local_maxima, reconstruction

    mask = probability > threshold
    if not mask.any():
        return mask
    # raised above the background by more than `depth`: every object keeps a maximum
    distance = ndimage.distance_transform_edt(mask) + (depth + 1.0) * mask
    # the h-maxima: the regional maxima of the distance lowered by `depth` and rebuilt under
    # it; two maxima joined by a saddle less than `depth` below the lower one share a plateau.
    # No path between two objects (8-connected, as the rebuilding's 3x3 footprint) stays
    # above the background, so each is rebuilt alone in its bounding box (7.8x faster
    # than the whole image on U373 frames, whose cells cover about a tenth of it)
    objects, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    seeds = np.zeros_like(mask)
    for k, box in enumerate(ndimage.find_objects(objects), start=1):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        part = distance[box]  # other objects' pieces in the box do not reach this one
        raised = reconstruction(part - depth, part, method="dilation")
        seeds[box] |= local_maxima(raised, connectivity=1, allow_borders=True) & (objects[box] == k)
    if radius > 0:
        plateaus, n = ndimage.label(seeds)  # 4-connected
        peaks = np.zeros(n + 1)
        np.maximum.at(peaks, plateaus[seeds], distance[seeds] - (depth + 1.0))
        seeds &= (peaks >= radius)[plateaus]  # no seed where plateaus is 0
    return seeds


def flood_block(probability: np.ndarray, seeds: np.ndarray, options: InstanceOptions) -> np.ndarray:
    """Flood one block's foreground from labelled seeds, as `options.method` says.

    ``watershed`` floods ``1 - probability`` within ``probability > threshold``
    (and the seeds); ``distance`` floods the negated distance to the
    background within ``probability > threshold``.

    Parameters
    ----------
    probability : ndarray of shape (h, w), float
    seeds : ndarray of shape (h, w), int
        Global seed labels (0 = no seed).
    options : InstanceOptions

    Returns
    -------
    ndarray of shape (h, w), uint32
    """
    if options.method != "distance":
        return watershed_block(probability, seeds, options.threshold)
    from scipy import ndimage
    from skimage.segmentation import watershed

    mask = probability > options.threshold
    surface = -ndimage.distance_transform_edt(mask)
    return watershed(surface, markers=seeds, mask=mask).astype(np.uint32)


def label_stack(
    probability: Any,
    scratch: Any,
    block: tuple[int, int],
    options: InstanceOptions,
    *,
    seed_scratch: Any = None,
) -> list[np.ndarray]:
    """Label every plane of a (P, H, W) probability store into `scratch`.

    Parameters
    ----------
    probability : array-like of shape (P, H, W), float
        Foreground probability (zarr array or ndarray).
    scratch : array-like of shape (P, H, W), uint32
        Receives provisional labels; map them with the returned tables.
    block : (int, int)
    options : InstanceOptions
    seed_scratch : array-like of shape (P, H, W), uint32
        Holds the seeds (needed for ``method="watershed"`` and ``"distance"``).

    Returns
    -------
    list of ndarray
        Per plane, the table mapping provisional to final labels.
    """
    n_planes, height, width = probability.shape
    seeded = options.method in SEEDED
    if seeded and seed_scratch is None:
        raise ValueError(f"the {options.method} method needs a seed_scratch array")
    level = options.seed_threshold if seeded else options.threshold
    target = seed_scratch if seeded else scratch
    tables = []
    for p in range(n_planes):

        def read(r: slice, c: slice, p: int = p) -> np.ndarray:
            if options.method != "distance":
                return np.asarray(probability[p, r, c]) > level
            (r0, r1), (c0, c1) = _with_margin(r, height), _with_margin(c, width)
            seeds = distance_seeds(
                np.asarray(probability[p, r0:r1, c0:c1]),
                options.threshold,
                options.split_depth,
                options.split_radius,
            )
            return seeds[r.start - r0 : r.stop - r0, c.start - c0 : c.stop - c0]

        def write(r: slice, c: slice, lab: np.ndarray, p: int = p) -> None:
            target[p, r, c] = lab

        component, sizes = label_plane(
            read, write, (height, width), block, connectivity=options.connectivity
        )
        if not seeded:
            tables.append(final_lut(component, sizes, options.min_size))
            continue
        seed_lut = final_lut(component, sizes, 0)
        sizes = _flood_plane(probability, seed_scratch, scratch, p, block, seed_lut, options)
        if options.method == "distance":  # objects without a seed keep a label of their own
            sizes = _label_unseeded(probability, seed_scratch, scratch, p, block, options, sizes)
        tables.append(final_lut(np.arange(len(sizes)), sizes, options.min_size))
    return tables


def _label_unseeded(
    probability: Any,
    spare: Any,
    out: Any,
    p: int,
    block: tuple[int, int],
    options: InstanceOptions,
    sizes: np.ndarray,
) -> np.ndarray:
    """Give the foreground that no seed flooded labels after the seeds'; pixels per label.

    The unflooded foreground of plane `p` of `out` (labels so far, ``sizes``
    pixels each) is labelled block by block into `spare` and merged across
    blocks like components, then numbered after the seeds' labels in `out`.
    """
    height, width = probability.shape[1:]

    def read(r: slice, c: slice) -> np.ndarray:
        fg = np.asarray(probability[p, r, c]) > options.threshold
        return fg & (np.asarray(out[p, r, c]) == 0)

    def write(r: slice, c: slice, lab: np.ndarray) -> None:
        spare[p, r, c] = lab

    component, rest = label_plane(
        read, write, (height, width), block, connectivity=options.connectivity
    )
    lut = final_lut(component, rest, 0)
    if lut.max() == 0:
        return sizes
    offset = np.uint32(len(sizes) - 1)
    extra = np.zeros(int(lut.max()) + 1, np.int64)
    for rows, cols in _blocks((height, width), block):
        own = lut[np.asarray(spare[p, rows, cols])]
        labels = np.asarray(out[p, rows, cols])
        out[p, rows, cols] = np.where(own > 0, own + offset, labels)
        extra += np.bincount(own.ravel(), minlength=len(extra))
    return np.concatenate([sizes, extra[1:]])


def _flood_plane(
    probability: Any,
    seeds: Any,
    out: Any,
    p: int,
    block: tuple[int, int],
    seed_lut: np.ndarray,
    options: InstanceOptions,
) -> np.ndarray:
    """Flood every block of plane `p` with a margin; return pixels per label."""
    height, width = probability.shape[1:]
    sizes = np.zeros(int(seed_lut.max()) + 1, np.int64)
    for rows, cols in _blocks((height, width), block):
        (r0, r1), (c0, c1) = _with_margin(rows, height), _with_margin(cols, width)
        prob = np.asarray(probability[p, r0:r1, c0:c1], dtype=np.float64)
        lab = flood_block(prob, seed_lut[np.asarray(seeds[p, r0:r1, c0:c1])], options)
        lab = lab[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
        out[p, rows, cols] = lab
        sizes += np.bincount(lab.ravel(), minlength=len(sizes))
    return sizes
