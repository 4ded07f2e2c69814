"""Data augmentation of Ronneberger et al. (2015), Sec. 3.1, in one resampling.

"We generate smooth deformations using random displacement vectors on a
coarse 3 by 3 grid. The displacements are sampled from a Gaussian
distribution with 10 pixels standard deviation. Per-pixel displacements are
then computed using bicubic interpolation." Plus "shift and rotation
invariance as well as robustness to deformations and gray value
variations".

A training tile is made in one pass (:func:`random_tile`):

1. draw every random number from the `rng` passed in
   (:func:`draw_transform`): the tile position (uniform over the positions
   that keep the output region inside the image), a rotation angle
   (uniform, default 0-360 degrees), flips of the rows and columns, the
   displacements of a 3x3 grid of control points spanning the *input* tile
   (N(0, 10 px) per component), and a grey-value curve;
2. turn the control displacements into a per-pixel field by cubic spline
   interpolation (the field of ``elasticdeform.deform_grid``, to 1e-14),
   compose it with the rotation, flips and shift into one source coordinate
   per tile pixel (:func:`tile_coordinates`);
3. sample image, labels and weights at those coordinates with
   ``torch.nn.functional.grid_sample``, mirrored at the image borders
   (reflection about the edge pixels' centres, no repeated edge pixel): the
   image with linear (or bicubic) interpolation, the labels with nearest
   neighbour, the weights with linear interpolation (the choices of the
   authors' 2019 Caffe layers). Labels and weights are sampled only over the
   output region, the centre crop of the input tile (388 of 572 for the
   paper's network);
4. map the grey values through a random monotone piecewise-linear curve
   (PAPER.md ambiguity 9).

Interpolating once is faster than chaining shift, rotation and elastic
warps, and blurs less. Nothing here touches a global random state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from biounet.limits import MAX_ELASTIC_GRID, MAX_ELASTIC_SIGMA, check_number
from biounet.plain import from_plain
from biounet.training.elastic import control_displacements, displacement_field

if TYPE_CHECKING:
    import torch

__all__ = [
    "AugmentConfig",
    "TileTransform",
    "control_displacements",
    "displacement_field",
    "draw_transform",
    "tile_coordinates",
    "sampling_grid",
    "sample_tile",
    "apply_transform",
    "random_tile",
    "gray_curve",
]

_RANGES = ("gray_black", "gray_white", "gray_slope")


@dataclass(frozen=True)
class AugmentConfig:
    """How training tiles are augmented; plain values, stored in checkpoints.

    Parameters
    ----------
    elastic : bool
        Elastic deformation on a coarse grid (Sec. 3.1).
    elastic_sigma : float
        Standard deviation of each control-point displacement component, px
        (10 in the paper).
    elastic_grid : int
        Control points per axis, spanning the input tile (3 in the paper).
    rotation : float
        Angles are uniform in ``[-rotation, rotation]`` degrees; 180 = any.
    flip : bool
        Flip rows and columns, each with probability 1/2.
    shift : bool
        Uniformly random tile position; False: the centred tile.
    gray : bool
        Random grey-value curve through ``(0, black)``, ``(0.5, mid)`` and
        ``(1, white)``, extended linearly; inputs are expected in [0, 1].
    gray_black, gray_white : tuple of float
        Ranges of the levels that 0 and 1 are mapped to.
    gray_slope : tuple of float
        Range of the slope of both segments.
    image_order : {0, 1, 3}
        Interpolation of the image: 1 linear (default, as the authors'
        2019 code), 3 bicubic (cubic convolution, a = -0.75; slower).
    weight_order : {0, 1}
        Interpolation of the weight map: 1 linear, 0 nearest.
    """

    elastic: bool = True
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    rotation: float = 180.0
    flip: bool = True
    shift: bool = True
    gray: bool = True
    gray_black: tuple[float, float] = (-0.05, 0.05)
    gray_white: tuple[float, float] = (0.95, 1.05)
    gray_slope: tuple[float, float] = (0.8, 1.2)
    image_order: int = 1
    weight_order: int = 1

    def __post_init__(self) -> None:
        for name in _RANGES:
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, value := tuple(value))
            if not (
                isinstance(value, tuple)
                and len(value) == 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
                and value[0] <= value[1]
            ):
                raise ValueError(f"AugmentConfig.{name} must be a range (low, high), got {value!r}")
        check_number(
            "AugmentConfig.elastic_sigma", self.elastic_sigma, low=0, high=MAX_ELASTIC_SIGMA
        )
        check_number(
            "AugmentConfig.elastic_grid", self.elastic_grid, low=2, high=MAX_ELASTIC_GRID,
            integer=True,
        )  # fmt: skip
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"AugmentConfig.rotation must be in [0, 180], got {self.rotation}")
        if self.image_order not in (0, 1, 3):
            raise ValueError(f"AugmentConfig.image_order must be 0, 1 or 3, got {self.image_order}")
        if self.weight_order not in (0, 1):
            raise ValueError(f"AugmentConfig.weight_order must be 0 or 1, got {self.weight_order}")
        low, high = self.gray_slope
        if self.gray and not 0 < low:
            raise ValueError(f"AugmentConfig.gray_slope must be positive, got {self.gray_slope}")
        span = (self.gray_white[0] - self.gray_black[1], self.gray_white[1] - self.gray_black[0])
        if self.gray and (span[1] < low or span[0] > high):
            raise ValueError("AugmentConfig: no grey curve fits gray_black, gray_white, gray_slope")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation: the centred tile, unchanged (e.g. for validation)."""
        return cls(elastic=False, rotation=0.0, flip=False, shift=False, gray=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        """Build a config from a dict (e.g. a checkpoint), rejecting unknown keys."""
        return from_plain(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (ranges as lists) for YAML, JSON and checkpoints."""
        out = asdict(self)
        for name in _RANGES:
            out[name] = list(out[name])
        return out


@dataclass(frozen=True, eq=False)
class TileTransform:
    """The random choices for one tile (see :func:`draw_transform`).

    Attributes
    ----------
    centre : tuple of float
        Image coordinates (row, column) of the tile centre.
    angle : float
        Rotation in degrees.
    flip : tuple of bool
        Whether rows and columns are reversed.
    displacement : ndarray of shape (2, g, g) or None
        Control-point displacements (row, column components) in px.
    gray : tuple of float or None
        The grey levels ``(black, mid, white)`` that 0, 0.5 and 1 map to.
    """

    centre: tuple[float, float]
    angle: float = 0.0
    flip: tuple[bool, bool] = (False, False)
    displacement: np.ndarray | None = None
    gray: tuple[float, float, float] | None = None


def gray_curve(values: Any, black: float, mid: float, white: float) -> Any:
    """Piecewise-linear map through (0, black), (0.5, mid), (1, white), extended linearly.

    Works in place on float `values` (a NumPy array or a torch tensor, on any
    device) and returns them.

    Examples
    --------
    >>> gray_curve(np.array([0.0, 0.25, 0.5, 1.0, 1.5]), 0.0, 0.6, 1.0)
    array([0. , 0.3, 0.6, 1. , 1.4])
    """
    low_slope, high_slope = 2.0 * (mid - black), 2.0 * (white - mid)
    values -= 0.5
    below = values.clip(max=0.0)
    below *= low_slope - high_slope
    values *= high_slope
    values += below
    values += mid
    return values


def _draw_gray(rng: np.random.Generator, config: AugmentConfig) -> tuple[float, float, float]:
    black = rng.uniform(*config.gray_black)
    white = rng.uniform(*config.gray_white)
    low_slope, high_slope = config.gray_slope
    # both segments span 0.5 in x: their slopes bound the middle level
    low = max(black + 0.5 * low_slope, white - 0.5 * high_slope)
    high = min(black + 0.5 * high_slope, white - 0.5 * low_slope)
    mid = rng.uniform(low, high) if low <= high else 0.5 * (black + white)
    return float(black), float(mid), float(white)


def _origin_range(length: int, output_size: int) -> tuple[int, int]:
    """Range of the output region's first pixel: inside the image, or covering it."""
    return min(0, length - output_size), max(0, length - output_size)


def draw_transform(
    image_shape: tuple[int, int],
    *,
    output_size: int,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> TileTransform:
    """Draw the random choices for one tile.

    Parameters
    ----------
    image_shape : tuple of int
        (M, N) of the image the tile is cut from.
    output_size : int
        Side of the output region; its position is uniform over the
        integer positions that keep it inside the image (or, for images
        smaller than the output, that keep the image inside it).
    rng : numpy.random.Generator
        The only source of randomness.
    config : AugmentConfig

    Returns
    -------
    TileTransform
    """
    centre = []
    for length in image_shape[-2:]:
        low, high = _origin_range(length, output_size)
        origin = int(rng.integers(low, high + 1)) if config.shift else (low + high) // 2
        centre.append(origin + (output_size - 1) / 2)
    angle = float(rng.uniform(-config.rotation, config.rotation)) if config.rotation else 0.0
    flip = (bool(rng.integers(2)), bool(rng.integers(2))) if config.flip else (False, False)
    displacement = None
    if config.elastic and config.elastic_sigma > 0:
        displacement = control_displacements(
            rng, grid=config.elastic_grid, sigma=config.elastic_sigma
        )
    gray = _draw_gray(rng, config) if config.gray else None
    return TileTransform((centre[0], centre[1]), angle, flip, displacement, gray)


def _affine(transform: TileTransform) -> tuple[float, float, float, float]:
    """Coefficients (a, b, c, d) of R(angle) F acting on (row, column) offsets."""
    theta = math.radians(transform.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    fr = -1.0 if transform.flip[0] else 1.0
    fc = -1.0 if transform.flip[1] else 1.0
    return cos * fr, -sin * fc, sin * fr, cos * fc


def _source_points(
    transform: TileTransform, size: int, rows: np.ndarray, cols: np.ndarray, scale=(1.0, 1.0)
) -> None:
    """Write ``scale * source - (scale != 1)`` row and column coordinates into `rows`, `cols`.

    ``source = centre + R F (t + u(t))`` for the tile pixel at offset ``t``
    from the tile centre, ``u`` the elastic field.
    """
    offsets = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2)
    if transform.displacement is not None:
        field = displacement_field(transform.displacement, size)
        np.add(field[0], offsets[:, None], out=rows)
        np.add(field[1], offsets[None, :], out=cols)
        del field
    else:
        rows[...] = offsets[:, None]
        cols[...] = offsets[None, :]
    a, b, c, d = _affine(transform)
    ky, kx = scale
    a, b, c, d = (np.float32(v) for v in (a * ky, b * ky, c * kx, d * kx))
    cy = np.float32(transform.centre[0] * ky - (ky != 1.0))
    cx = np.float32(transform.centre[1] * kx - (kx != 1.0))
    if b == 0 and c == 0:
        rows *= a
        cols *= d
    else:
        scratch = rows * c
        rows *= a
        rows += cols * b
        cols *= d
        cols += scratch
    rows += cy
    cols += cx


def tile_coordinates(transform: TileTransform, size: int) -> np.ndarray:
    """Image coordinates that each pixel of a ``size x size`` tile is sampled from.

    A tile pixel at offset ``t`` from the tile centre is displaced by the
    elastic field, flipped, rotated and moved to the tile centre:
    ``source = centre + R(angle) F (t + u(t))``.

    Returns
    -------
    ndarray of shape (2, size, size), float32
        (row, column) coordinates.

    Examples
    --------
    >>> tile_coordinates(TileTransform((10.0, 20.0), flip=(True, False)), 3)[:, 0, 0]
    array([11., 19.], dtype=float32)
    """
    out = np.empty((2, size, size), np.float32)
    _source_points(transform, size, out[0], out[1])
    return out


def sampling_grid(transform: TileTransform, size: int, shape: tuple[int, int]) -> np.ndarray:
    """The sampling grid of ``torch.nn.functional.grid_sample`` (align_corners=True).

    Parameters
    ----------
    transform : TileTransform
    size : int
        Side of the input tile.
    shape : tuple of int
        (M, N) of the image the tile is cut from.

    Returns
    -------
    ndarray of shape (size, size, 2), float32
        (x, y) source coordinates scaled to [-1, 1] inside the image
        (:func:`tile_coordinates`, rescaled); points outside are mirrored.
    """
    grid = np.empty((size, size, 2), np.float32)
    scale = (2.0 / (shape[0] - 1), 2.0 / (shape[1] - 1))
    _source_points(transform, size, grid[..., 1], grid[..., 0], scale)
    return grid


_MODES = {0: "nearest", 1: "bilinear", 3: "bicubic"}


def _check_sizes(image: np.ndarray, classes, weights, input_size: int, output_size: int):
    if image.ndim != 3 or min(image.shape[1:]) < 2:
        raise ValueError(f"image must have shape (C, M, N) with M, N >= 2, got {image.shape}")
    for name, array in (("classes", classes), ("weights", weights)):
        if array.shape != image.shape[1:]:
            raise ValueError(f"{name} of shape {array.shape} do not match image {image.shape}")
    if not 0 < output_size <= input_size or (input_size - output_size) % 2:
        raise ValueError(
            f"output size {output_size} must be at most input size {input_size}, "
            "with an even difference"
        )


def sample_tile(
    image: torch.Tensor,
    classes: torch.Tensor,
    weights: torch.Tensor,
    grid: torch.Tensor,
    gray: tuple[float, float, float] | None,
    *,
    output_size: int,
    config: AugmentConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resample one tile on the device its tensors are on (step 3 and 4 above).

    The worker path (:func:`apply_transform`) and the on-device path of
    training on a GPU (:class:`biounet.training.tiles.DeviceTiles`) both
    cut their tiles here, so the two give the same tiles.

    Parameters
    ----------
    image : Tensor of shape (C, M, N), float32
    classes : Tensor of shape (M, N), float32
        Class indices as floats (sampled with nearest neighbour).
    weights : Tensor of shape (M, N), float32
    grid : Tensor of shape (S, S, 2), float32
        :func:`sampling_grid` of the tile, S the input size.
    gray : tuple of float or None
        The grey curve's ``(black, mid, white)``.
    output_size : int
    config : AugmentConfig
        Supplies the interpolation orders.

    Returns
    -------
    image_tile : Tensor of shape (C, S, S), float32
    target_tile : Tensor of shape (output_size, output_size), int64
    weight_tile : Tensor of shape (output_size, output_size), float32
    """
    from torch.nn.functional import grid_sample

    # reflection about the edge pixels' centres (align_corners=True) = mirroring
    options = {"padding_mode": "reflection", "align_corners": True}
    grid = grid[None]
    tile = grid_sample(image[None], grid, mode=_MODES[config.image_order], **options)[0]
    if gray is not None:
        gray_curve(tile, *gray)
    h = (grid.shape[1] - output_size) // 2
    inner = grid[:, h : h + output_size, h : h + output_size].contiguous()
    target = grid_sample(classes[None, None], inner, mode="nearest", **options)[0, 0]
    mode = _MODES[config.weight_order]
    weight = grid_sample(weights[None, None], inner, mode=mode, **options)[0, 0]
    return tile, target.long(), weight


def apply_transform(
    image: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    transform: TileTransform,
    *,
    input_size: int,
    output_size: int,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one augmented tile with the choices in `transform`.

    Parameters are as for :func:`random_tile`; `config` supplies the
    interpolation orders.
    """
    import torch

    _check_sizes(image, classes, weights, input_size, output_size)
    grid = torch.from_numpy(sampling_grid(transform, input_size, image.shape[-2:]))
    tile, target, weight = sample_tile(
        torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
        torch.from_numpy(np.asarray(classes, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)),
        grid,
        transform.gray,
        output_size=output_size,
        config=config,
    )
    return tile.numpy(), target.numpy(), weight.numpy()


def random_tile(
    image: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    *,
    input_size: int,
    output_size: int,
    rng: np.random.Generator,
    config: AugmentConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented training sample: input tile, target and weights of its output region.

    Parameters
    ----------
    image : ndarray of shape (C, M, N), float
        Grey values scaled to [0, 1] (:func:`biounet.network.normalize.normalize`).
    classes : ndarray of shape (M, N), int
        Class map (:attr:`biounet.training.weight_map.Target.classes`).
    weights : ndarray of shape (M, N), float
        Weight map (:attr:`biounet.training.weight_map.Target.weights`).
    input_size, output_size : int
        Tile sizes of the network (:func:`biounet.network.shapes.output_size`: 572
        -> 388 for the paper's network; equal for ``padding="same"``).
    rng : numpy.random.Generator
        The only source of randomness.
    config : AugmentConfig, optional
        Default: the paper's augmentation.

    Returns
    -------
    image_tile : ndarray of shape (C, input_size, input_size), float32
    target_tile : ndarray of shape (output_size, output_size), int64
    weight_tile : ndarray of shape (output_size, output_size), float32
        Target and weights of the centre region the network predicts.
    """
    config = AugmentConfig() if config is None else config
    transform = draw_transform(image.shape[-2:], output_size=output_size, rng=rng, config=config)
    return apply_transform(
        image,
        classes,
        weights,
        transform,
        input_size=input_size,
        output_size=output_size,
        config=config,
    )
