"""Synthetic microscopy-like images with known objects, for tests, figures and benchmarks.

:func:`cell_sequence` makes time-lapse sequences like the paper's two cell
tracking data sets (PhC-U373: sparse cells with bright halos in phase
contrast; DIC-HeLa: crowded touching cells with relief shading), and
:func:`write_ctc_dataset` writes them in the Cell Tracking Challenge layout,
with gold-truth segmentation for some frames and, optionally, only some of
the cells annotated in them.

:func:`touching_cells` draws round cells that press against each other
(like the HeLa cells of the paper's Fig. 3): each pixel inside the union of
some disks belongs to the disk whose centre is nearest, so neighbouring
cells share straight borders. The image is bright cell bodies with dark
rims on a dark, noisy background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["touching_cells", "em_like", "cell_sequence", "write_ctc_dataset"]


def touching_cells(
    shape: tuple[int, int] = (256, 256),
    *,
    n_cells: int = 12,
    radius: tuple[float, float] = (18.0, 32.0),
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A grey-value image of touching cells and its instance labels.

    Parameters
    ----------
    shape : tuple of int
        (M, N) of the image.
    n_cells : int
        Number of cells drawn (a few may be hidden by their neighbours).
    radius : tuple of float
        Range of the cell radii, px.
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    image : ndarray of shape (M, N), uint8
    instances : ndarray of shape (M, N), int32
        0 = background, 1..K cells.

    Examples
    --------
    >>> image, cells = touching_cells((64, 64), n_cells=4, rng=np.random.default_rng(0))
    >>> image.shape, image.dtype, cells.dtype, int(cells.max()) <= 4
    ((64, 64), dtype('uint8'), dtype('int32'), True)
    """
    rows, cols = shape
    centres = rng.uniform((0.15 * rows, 0.15 * cols), (0.85 * rows, 0.85 * cols), (n_cells, 2))
    radii = rng.uniform(*radius, n_cells)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    dist = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])  # (K, M, N)
    nearest = np.argmin(dist, axis=0)
    inside = (dist <= radii[:, None, None]).any(axis=0)
    instances = np.where(inside, nearest + 1, 0).astype(np.int32)
    # relabel 1..K in case a cell is hidden entirely
    present = np.unique(instances[instances > 0])
    lookup = np.zeros(n_cells + 1, np.int32)
    lookup[present] = np.arange(1, present.size + 1, dtype=np.int32)
    instances = lookup[instances]

    brightness = rng.uniform(0.55, 0.85, n_cells + 1)
    image = np.where(inside, brightness[nearest + 1], 0.15).astype(np.float32)
    # darker rims where a cell meets the background or a neighbour
    rim = np.zeros(shape, bool)
    rim[1:] |= instances[1:] != instances[:-1]
    rim[:, 1:] |= instances[:, 1:] != instances[:, :-1]
    image[rim] = 0.3
    image += rng.normal(0.0, 0.04, shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)
    return (image * 255 + 0.5).astype(np.uint8), instances


def em_like(
    shape: tuple[int, int] = (512, 512),
    *,
    cell_size: float = 45.0,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """An electron-microscopy-like image: cell profiles bounded by dark membranes.

    Cells are the Voronoi regions of random seeds (mean spacing `cell_size`),
    their borders are 2-4 px dark membranes with some wiggle, the interiors
    carry a fine texture and a few dark organelles, and the whole image is
    blurred and noisy, roughly like a slice of the ISBI 2012 data.

    Parameters
    ----------
    shape : (M, N)
    cell_size : float
        Typical cell diameter in pixels.
    rng : numpy.random.Generator

    Returns
    -------
    image : ndarray of shape (M, N), uint8
    cells : ndarray of shape (M, N), int32
        0 = membrane, 1..K cell interiors.

    Examples
    --------
    >>> image, cells = em_like((96, 96), rng=np.random.default_rng(0))
    >>> image.dtype, int(cells.max()) > 1, bool((cells == 0).any())
    (dtype('uint8'), True, True)
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    rows, cols = shape
    n = max(2, int(rows * cols / cell_size**2))
    seeds = np.zeros(shape, np.int32)
    ys, xs = rng.integers(0, rows, n), rng.integers(0, cols, n)
    seeds[ys, xs] = np.arange(1, n + 1)
    # wiggle the borders: nearest seed in a smoothly warped coordinate frame
    warp = [ndi.gaussian_filter(rng.normal(0, 1, shape), 12) * 120 for _ in range(2)]
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    del yy, xx
    nearest = seeds[iy, ix]
    coords = np.stack(
        [
            np.clip(np.mgrid[0:rows, 0:cols][0] + warp[0], 0, rows - 1),
            np.clip(np.mgrid[0:rows, 0:cols][1] + warp[1], 0, cols - 1),
        ]
    )
    regions = ndi.map_coordinates(nearest, coords, order=0).astype(np.int32)
    membrane = find_boundaries(regions, mode="thick")
    membrane = ndi.binary_dilation(membrane, iterations=int(rng.integers(1, 2)))
    cells = np.where(membrane, 0, regions).astype(np.int32)

    texture = ndi.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    tone = rng.uniform(0.58, 0.72, n + 1)[regions]
    image = tone + 0.12 * texture / texture.std()
    blobs = ndi.gaussian_filter(rng.random(shape), 4)
    organelle = blobs > np.quantile(blobs, 0.99)
    rim = organelle & ~ndi.binary_erosion(organelle, iterations=2)
    image[organelle] -= 0.12
    image[rim] -= 0.2
    image[membrane] = 0.2 + 0.05 * texture[membrane]
    image = ndi.gaussian_filter(image, 1.2) + rng.normal(0, 0.05, shape)
    image = np.clip(image, 0, 1)
    return (image * 255 + 0.5).astype(np.uint8), cells


def _cell_masks(
    shape: tuple[int, int],
    centres: np.ndarray,
    radii: np.ndarray,
    shapes: np.ndarray,
    angle: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Irregular cells: per pixel the nearest covering cell (shared borders when they touch)."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    best = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.int32)
    for k, ((cy, cx), r, (a2, p2, a3, p3)) in enumerate(zip(centres, radii, shapes, strict=True)):
        dy, dx = yy - cy, xx - cx
        theta = np.arctan2(dy, dx) + angle
        edge = r * (1 + a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3))
        rel = np.hypot(dy, dx) / edge  # < 1 inside the cell
        take = (rel < 1) & (rel < best)
        best[take] = rel[take]
        labels[take] = k + 1
    return labels, best


def cell_sequence(
    kind: str = "phc",
    *,
    frames: int = 10,
    shape: tuple[int, int] = (256, 320),
    n_cells: int | None = None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A time-lapse of moving cells and their instance labels.

    Parameters
    ----------
    kind : {'phc', 'dic'}
        ``phc``: few cells (about 5% of the pixels), darker than the
        background and ringed by a bright halo, like PhC-C2DH-U373.
        ``dic``: many touching cells with relief shading (a directional
        derivative of their height), like DIC-C2DH-HeLa.
    frames : int
    shape : (M, N)
    n_cells : int, optional
        Default: about 5% cover for ``phc``, crowded for ``dic``.
    rng : numpy.random.Generator

    Returns
    -------
    images : ndarray of shape (T, M, N), uint8
    labels : ndarray of shape (T, M, N), int32
        The same id follows a cell through the frames; 0 = background.

    Examples
    --------
    >>> im, lab = cell_sequence("dic", frames=2, shape=(64, 64), rng=np.random.default_rng(0))
    >>> im.shape, im.dtype, lab.dtype, bool((lab[0] > 0).mean() > 0.3)
    ((2, 64, 64), dtype('uint8'), dtype('int32'), True)
    """
    from scipy import ndimage as ndi

    if kind not in ("phc", "dic"):
        raise ValueError(f"kind must be 'phc' or 'dic', got {kind!r}")
    rows, cols = shape
    scale = min(rows, cols) / 256
    if kind == "phc":
        radius = (14 * scale, 24 * scale)
        n = n_cells or max(2, round(0.05 * rows * cols / (np.pi * (19 * scale) ** 2)))
    else:
        radius = (20 * scale, 30 * scale)
        n = n_cells or max(3, round(0.9 * rows * cols / (np.pi * (25 * scale) ** 2)))
    centres = rng.uniform((0.1 * rows, 0.1 * cols), (0.9 * rows, 0.9 * cols), (n, 2))
    if kind == "phc":  # keep sparse cells apart
        for i in range(1, n):
            for _ in range(50):
                if np.min(np.hypot(*(centres[:i] - centres[i]).T)) > 2.2 * radius[1]:
                    break
                centres[i] = rng.uniform((0.1 * rows, 0.1 * cols), (0.9 * rows, 0.9 * cols))
    radii = rng.uniform(*radius, n)
    forms = np.column_stack(
        [rng.uniform(0.05, 0.2, n), rng.uniform(0, 6.3, n)] * 2
    )  # (a2, p2, a3, p3)
    velocity = rng.normal(0, 0.8 * scale, (n, 2))
    images = np.empty((frames, rows, cols), np.uint8)
    labels = np.empty((frames, rows, cols), np.int32)
    illumination = ndi.gaussian_filter(rng.normal(0, 1, shape), 40)
    illumination /= np.abs(illumination).max() + 1e-9
    for t in range(frames):
        pos = np.clip(centres + t * velocity, (0, 0), (rows - 1, cols - 1))
        lab, rel = _cell_masks(shape, pos, radii, forms, 0.05 * t)
        labels[t] = lab
        inside = lab > 0
        texture = ndi.gaussian_filter(rng.normal(0, 1, shape), 1.5)
        if kind == "phc":
            ring = ndi.binary_dilation(inside, iterations=max(2, int(3 * scale))) & ~inside
            halo = ndi.gaussian_filter(ring.astype(np.float32), 1.5)
            image = 0.45 + 0.05 * illumination
            image = image - 0.12 * inside + 0.35 * halo + 0.03 * texture * inside
            image = image + rng.normal(0, 0.025, shape)
        else:
            height = np.where(inside, np.sqrt(np.clip(1 - rel**2, 0, 1)), 0.0)
            border = np.zeros(shape, bool)
            border[1:] |= (lab[1:] != lab[:-1]) & (lab[1:] > 0) & (lab[:-1] > 0)
            border[:, 1:] |= (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
            height = ndi.gaussian_filter(height - 0.6 * border, 1.5)
            relief = ndi.sobel(height, 0) + ndi.sobel(height, 1)
            image = 0.5 + 0.18 * relief + 0.04 * texture * inside + 0.03 * illumination
            image = image + rng.normal(0, 0.02, shape)
        images[t] = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return images, labels


def write_ctc_dataset(
    folder: str | Path,
    kind: str = "phc",
    *,
    sequences: int = 2,
    frames: int = 10,
    annotate_every: int = 2,
    annotated_fraction: float = 1.0,
    shape: tuple[int, int] = (256, 320),
    seed: int = 0,
) -> Path:
    """Write a synthetic data set in the Cell Tracking Challenge layout.

    ``01/t000.tif ...`` (uint8 frames) and ``01_GT/SEG/man_seg000.tif ...``
    (uint16 instance labels) for every `annotate_every`-th frame, for each of
    `sequences` sequences (``01``, ``02``, ...).

    Parameters
    ----------
    folder : path
    kind : {'phc', 'dic'}
        See :func:`cell_sequence`.
    sequences, frames, annotate_every : int
    annotated_fraction : float
        Share of the cells annotated in a gold-truth frame (the others are
        left 0, as in partially annotated gold truth).
    shape : (M, N)
    seed : int

    Returns
    -------
    Path
        `folder`.
    """
    import tifffile

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for s in range(1, sequences + 1):
        images, labels = cell_sequence(kind, frames=frames, shape=shape, rng=rng)
        seq = folder / f"{s:02d}"
        gt = folder / f"{s:02d}_GT" / "SEG"
        seq.mkdir(parents=True, exist_ok=True)
        gt.mkdir(parents=True, exist_ok=True)
        ids = np.unique(labels[labels > 0])
        kept = ids[rng.random(ids.size) < annotated_fraction] if annotated_fraction < 1 else ids
        for t in range(frames):
            tifffile.imwrite(seq / f"t{t:03d}.tif", images[t])
            if t % annotate_every == 0:
                truth = np.where(np.isin(labels[t], kept), labels[t], 0).astype(np.uint16)
                tifffile.imwrite(gt / f"man_seg{t:03d}.tif", truth)
    return folder
