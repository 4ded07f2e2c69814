"""Test-time averaging over transformed inputs (Ronneberger et al. 2015, Sec. 4).

"The u-net (averaged over 7 rotated versions of the input data) achieves
[...]". The paper names neither the angles nor the interpolation (PAPER.md
ambiguity 10), so three settings are offered:

``none``
    Plain prediction.
``d4``
    The 8 symmetries of the square (4 rotations by 90 degrees, each with and
    without a flip). They move pixels without interpolation, and a window of
    valid size keeps its max-pooling grid under every one of them, so tiled
    output still equals whole-image output exactly.
``rot7``
    The literal reading: rotations by ``k * 360 / 7`` degrees, k = 0..6,
    with bilinear interpolation about the centre of each output tile. The
    rotated passes need a larger window (more context) and the result
    depends slightly on the tile grid (interpolation), so it is not exactly
    seamless. Unverified against the authors' setting.

Probabilities (after the softmax) are averaged, not logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def dihedral_transforms() -> list[tuple[Transform, Transform]]:
    """The 8 elements of D4 as (forward, inverse) pairs on (N, C, H, W) tensors.

    Examples
    --------
    >>> x = torch.arange(6.).reshape(1, 1, 2, 3)
    >>> all(torch.equal(inv(fwd(x)), x) for fwd, inv in dihedral_transforms())
    True
    """
    pairs = []
    for flip in (False, True):
        for k in range(4):

            def fwd(x: torch.Tensor, k: int = k, flip: bool = flip) -> torch.Tensor:
                x = torch.flip(x, dims=(-1,)) if flip else x
                return torch.rot90(x, k, dims=(-2, -1))

            def inv(x: torch.Tensor, k: int = k, flip: bool = flip) -> torch.Tensor:
                x = torch.rot90(x, -k, dims=(-2, -1))
                return torch.flip(x, dims=(-1,)) if flip else x

            pairs.append((fwd, inv))
    return pairs


def rot7_angles() -> list[float]:
    """The 7 angles ``k * 360 / 7`` in degrees, k = 0..6."""
    return [k * 360.0 / 7.0 for k in range(7)]


def rotation_grid(
    out_shape: tuple[int, int],
    in_shape: tuple[int, int],
    center_out: tuple[float, float],
    center_in: tuple[float, float],
    degrees: float,
    *,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Sampling grid for ``F.grid_sample``: output pixel p reads input ``R (p - c_out) + c_in``.

    Parameters
    ----------
    out_shape, in_shape : (rows, cols)
    center_out, center_in : (row, col)
        Rotation centres in pixel coordinates of the output and input.
    degrees : float
        Counter-clockwise rotation of the sampling positions.

    Returns
    -------
    Tensor of shape (batch, rows, cols, 2)
        Normalised (x, y) coordinates with ``align_corners=True``.
    """
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    ys = torch.arange(out_shape[0], dtype=dtype, device=device) - center_out[0]
    xs = torch.arange(out_shape[1], dtype=dtype, device=device) - center_out[1]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    src_y = c * yy - s * xx + center_in[0]
    src_x = s * yy + c * xx + center_in[1]
    grid = torch.stack(
        (2 * src_x / (in_shape[1] - 1) - 1, 2 * src_y / (in_shape[0] - 1) - 1), dim=-1
    )
    return grid.expand(batch, -1, -1, -1)


def rotate(
    x: torch.Tensor,
    out_shape: tuple[int, int],
    center_out: tuple[float, float],
    center_in: tuple[float, float],
    degrees: float,
) -> torch.Tensor:
    """Resample `x` (N, C, H, W) on a rotated grid of `out_shape` (bilinear)."""
    grid = rotation_grid(
        out_shape,
        (x.shape[-2], x.shape[-1]),
        center_out,
        center_in,
        degrees,
        batch=x.shape[0],
        dtype=x.dtype,
        device=x.device,
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
