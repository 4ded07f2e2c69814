"""Elastic deformation of Ronneberger et al. (2015), Sec. 3.1: a coarse grid, bicubic field.

"We generate smooth deformations using random displacement vectors on a
coarse 3 by 3 grid. The displacements are sampled from a Gaussian
distribution with 10 pixels standard deviation. Per-pixel displacements are
then computed using bicubic interpolation."

The control points span the tile corner to corner; the per-pixel field is
their tensor-product cubic-spline interpolation, the same field as
``elasticdeform.deform_grid`` computes for the same control points.
:mod:`biounet.training.augment` composes it with the other augmentations.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

__all__ = ["control_displacements", "displacement_field"]


def control_displacements(
    rng: np.random.Generator, *, grid: int = 3, sigma: float = 10.0
) -> np.ndarray:
    """Random displacements of a ``grid x grid`` set of control points.

    Returns
    -------
    ndarray of shape (2, grid, grid), float64
        Row and column components, each N(0, sigma**2) px.
    """
    return rng.normal(0.0, sigma, size=(2, grid, grid))


@functools.lru_cache(maxsize=16)
def _spline_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) matrix: cubic-spline interpolation of `grid` values over `size` px."""
    where = np.linspace(0.0, grid - 1.0, size)
    columns = [
        ndi.map_coordinates(np.eye(grid)[k], [where], order=3, mode="mirror") for k in range(grid)
    ]
    matrix = np.stack(columns, axis=1).astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def displacement_field(
    control: np.ndarray, size: int, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel displacements of a ``size x size`` tile from its control points.

    The control points span the tile, corner to corner (for 3 points: the
    corners, edge centres and centre). Between them the displacement is a
    bicubic (tensor-product cubic spline) interpolation; the field equals
    that of ``elasticdeform.deform_grid`` for the same control points.

    Parameters
    ----------
    control : ndarray of shape (2, g, g)
        Control-point displacements (row, column), px.
    size : int
        Tile size in px.
    out : ndarray of shape (2, size, size), float32, optional
        Where to write the result.

    Returns
    -------
    ndarray of shape (2, size, size), float32

    Examples
    --------
    >>> field = displacement_field(np.ones((2, 3, 3)), 5)
    >>> field.shape, bool(np.allclose(field, 1))
    ((2, 5, 5), True)
    """
    control = np.asarray(control, np.float32)
    matrix = _spline_matrix(size, control.shape[-1])  # (size, g)
    if out is None:
        out = np.empty((2, size, size), np.float32)
    scratch = np.empty((size, size), np.float32)
    for component, grid in zip(out, control, strict=True):
        # matrix @ grid @ matrix.T as g outer products; no BLAS call, whose
        # threads are slow to wake up on a busy machine
        left = (matrix[:, :, None] * grid[None]).sum(axis=1)  # (size, g)
        np.multiply(left[:, :1], matrix[:, 0], out=component)
        for k in range(1, matrix.shape[1]):
            np.multiply(left[:, k : k + 1], matrix[:, k], out=scratch)
            component += scratch
    return out
