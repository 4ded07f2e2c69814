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
