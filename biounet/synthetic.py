"""Synthetic microscopy-like images with known objects, for tests, figures and benchmarks.

:func:`touching_cells` draws round cells that press against each other
(like the HeLa cells of the paper's Fig. 3): each pixel inside the union of
some disks belongs to the disk whose centre is nearest, so neighbouring
cells share straight borders. The image is bright cell bodies with dark
rims on a dark, noisy background.
"""

from __future__ import annotations

import numpy as np

__all__ = ["touching_cells"]


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
