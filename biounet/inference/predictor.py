"""Prediction with a trained U-Net over images of any size (Sec. 2, Fig. 2).

:class:`Predictor` turns raw input windows into class probabilities
(normalisation, device, precision, test-time averaging); :func:`plan_tiles`
chooses the tile geometry; :func:`predict` and :func:`predict_region` apply
both over any sliceable image with :mod:`biounet.inference.tiling`. The result does not
depend on the tile size: tiled output equals whole-image output
(:func:`predict_whole`) because tile origins stay on the max-pooling grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biounet.device import Runtime, make_runtime
from biounet.inference.progress import Progress, TileProgress
from biounet.inference.tiling import (
    TileSpec,
    predict_tiled,
    reflect_indices,
    tile_context,
    tile_grid,
    tile_spec,
)
from biounet.inference.tta import dihedral_transforms, rot7_angles, rotate
from biounet.io.read import ImageSource, from_array
from biounet.network import shapes
from biounet.network.unet import UNet, UNetConfig
from biounet.options import TTA, TTA_CHOICES

#: Peak activation memory of a forward pass, in 4-byte floats per input pixel and
#: per feature channel of the first level: the live tensors of the top expansive
#: level (cropped skip, up-convolution output, concatenation, convolution output)
#: plus allocator slack. Measured as peak RSS growth (benchmarks/bench_predict.py):
#: 5.6 at 572, 6.2 at 892, 6.8 at 1404 and 6.7 at 2012 px (features=16, CPU).
ACTIVATION_FLOATS_PER_FEATURE = 7.0

#: Default activation-memory budgets for choosing the tile size.
CPU_BUDGET_BYTES = 768 * 2**20
CUDA_BUDGET_FRACTION = 0.5

#: Largest default window on CUDA: beyond it, bigger tiles save little context.
MAX_DEFAULT_WINDOW = 2048
#: Largest default window on the CPU. Bigger windows waste less context, but
#: once a level's feature maps outgrow the CPU caches the convolutions slow
#: down more than the saved context gains: at features=16 on this project's
#: 2-core benchmark machine, 572-700 px windows ran at 0.73-0.75 of the
#: float32 matrix-multiply rate, 892 px at 0.65 and 1084 px at 0.60.
MAX_DEFAULT_WINDOW_CPU = 700


def activation_bytes(config: UNetConfig, window: tuple[int, int], batch_size: int = 1) -> int:
    """Estimated peak activation memory of one forward pass (float32, no gradients)."""
    floats = ACTIVATION_FLOATS_PER_FEATURE * config.features * window[0] * window[1]
    floats += 2 * config.in_channels * window[0] * window[1]
    return int(4 * floats * batch_size)


def default_window(
    config: UNetConfig,
    budget_bytes: int,
    batch_size: int = 1,
    *,
    largest: int = MAX_DEFAULT_WINDOW,
) -> int:
    """Largest valid square window up to `largest` whose activations fit `budget_bytes`.

    Bigger windows waste less context (the halo is fixed), so the largest
    that fits is the best default.

    Examples
    --------
    >>> default_window(UNetConfig(features=16), 768 * 2**20)
    1324
    >>> default_window(UNetConfig(features=16), 768 * 2**20, largest=700)
    700
    """
    sizes = shapes.valid_input_sizes(largest, depth=config.depth, padding=config.padding)
    fitting = [s for s in sizes if activation_bytes(config, (s, s), batch_size) <= budget_bytes]
    return fitting[-1] if fitting else sizes[0]


def plan_tiles(
    config: UNetConfig,
    image_shape: tuple[int, int],
    *,
    window: int | None = None,
    runtime: Runtime | None = None,
    batch_size: int = 1,
    memory_bytes: int | None = None,
    unit: int = 1,
) -> TileSpec:
    """Tile geometry for an image: the requested or largest fitting window, shrunk to the image.

    Parameters
    ----------
    config : UNetConfig
    image_shape : (H, W)
    window : int, optional
        Network input size per tile; must be valid. Default: the largest
        valid size whose activations fit the memory budget, at most
        :data:`MAX_DEFAULT_WINDOW_CPU` on the CPU.
    runtime : Runtime, optional
        Where the network runs (decides the default budget).
    batch_size : int
    memory_bytes : int, optional
        Activation-memory budget; default 768 MiB on the CPU, half the free
        memory on CUDA.
    unit : int
        Make tiles multiples of `unit` as well (16 for tiled TIFF output).
    """
    if window is None:
        cuda = runtime is not None and runtime.is_cuda
        if memory_bytes is None:
            memory_bytes = CPU_BUDGET_BYTES
            if cuda:
                free, _ = torch.cuda.mem_get_info(runtime.device)
                memory_bytes = int(free * CUDA_BUDGET_FRACTION)
        largest = MAX_DEFAULT_WINDOW if cuda else MAX_DEFAULT_WINDOW_CPU
        window = default_window(config, memory_bytes, batch_size, largest=largest)
    spec = tile_spec(window, depth=config.depth, padding=config.padding, unit=unit)
    return spec.fit(*image_shape)


class Predictor:
    """Callable mapping raw input windows to class probabilities.

    Parameters
    ----------
    model : UNet
    runtime : Runtime, optional
        Device and precision; default CPU, float32.
    tta : {'none', 'd4', 'rot7'}
        Test-time averaging (see :mod:`biounet.inference.tta`).
    dtype : torch.dtype
        Compute dtype without AMP (``torch.float64`` for exactness tests).

    Notes
    -----
    Call it with an array of shape (N, C, sy, sx) in the image's dtype; it
    returns float32 (or `dtype`) probabilities of shape (N, K, oy, ox) whose
    index 0 is window position ``context`` (:func:`biounet.inference.tiling.tile_context`).
    With ``tta="rot7"`` the windows must be read with the larger geometry that
    :meth:`read_spec` returns.
    """

    def __init__(
        self,
        model: UNet,
        runtime: Runtime | None = None,
        *,
        tta: TTA = "none",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if tta not in TTA_CHOICES:
            raise ValueError(f"tta must be one of {', '.join(TTA_CHOICES)}, got {tta!r}")
        self.runtime = runtime or make_runtime("cpu")
        self.config = cfg = model.config
        self.normalization = model.normalization
        self.model = self.runtime.prepare(model.eval().to(dtype))
        self.tta = tta
        self.dtype = dtype
        self.context = tile_context(depth=cfg.depth, padding=cfg.padding)
        self._rot: tuple[TileSpec, int, int] | None = None  # (base spec, margin, window)

    def read_spec(self, spec: TileSpec) -> TileSpec:
        """The geometry the tiler must read with: `spec`, plus margins for rot7.

        A rotated pass needs a window whose kept output covers the tile
        rotated by any angle (side ``T * sqrt(2)``), and an input margin
        that covers that window rotated by any angle.
        """
        if self.tta != "rot7":
            return spec
        cfg = self.config
        need = math.ceil(max(spec.tile) * math.sqrt(2)) + 2
        if cfg.padding == "valid":
            window = shapes.input_size_for_output(need, depth=cfg.depth)
        else:
            window = shapes.input_size_for_output(
                need + 2 * self.context, depth=cfg.depth, padding="same"
            )
        centre = self.context + (need - 1) / 2
        radius = math.sqrt(2) * max(centre, window - 1 - centre)
        margin = math.ceil(radius) + 1
        self._rot = (spec, margin, window)
        return TileSpec(
            spec.tile,
            (spec.window[0] + 2 * margin, spec.window[1] + 2 * margin),
            spec.context + margin,
            spec.align,
        )

    def _to_tensor(self, windows: np.ndarray) -> torch.Tensor:
        low, high = self.normalization.bounds(windows.dtype)
        if windows.dtype not in (np.uint8, np.float32, np.float64):
            windows = windows.astype(np.float32)
        x = self.runtime.tensor(torch.from_numpy(np.ascontiguousarray(windows)))
        return (x.to(self.dtype) - low) / (high - low)

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax output; index 0 at window position `context`."""
        if self.runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.runtime.autocast():
            logits = self.model(x)
        p = torch.softmax(logits.to(self.dtype), dim=1)
        if self.config.padding == "same":
            p = p[..., self.context :, self.context :]
        return p

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities (N, K, oy, ox) for raw windows (N, C, sy, sx)."""
        x = self._to_tensor(windows)
        if self.tta == "none":
            p = self._probabilities(x)
        elif self.tta == "d4":
            p = sum(inv(self._probabilities(fwd(x))) for fwd, inv in dihedral_transforms()) / 8
        else:
            p = self._rotated(x, rot7_angles())
        return p.to(torch.float32 if self.dtype != torch.float64 else self.dtype).cpu().numpy()

    def _rotated(self, x: torch.Tensor, angles: list[float]) -> torch.Tensor:
        """Average over passes rotated about each tile's centre (bilinear both ways)."""
        if self._rot is None:
            raise RuntimeError("call read_spec() before predicting with tta='rot7'")
        spec, m, window = self._rot
        plain = self._probabilities(x[..., m : x.shape[-2] - m, m : x.shape[-1] - m])
        tile = spec.tile
        centre = ((tile[0] - 1) / 2, (tile[1] - 1) / 2)
        centre_in = (m + self.context + centre[0], m + self.context + centre[1])
        kept_centre = (
            (window - 2 * self.context - 1) / 2
            if self.config.padding == "same"
            else (shapes.output_size(window, depth=self.config.depth) - 1) / 2
        )
        total = torch.zeros_like(plain)
        for deg in angles:
            if deg == 0.0:
                total += plain
                continue
            xr = rotate(x, (window, window), (self.context + kept_centre,) * 2, centre_in, deg)
            back = rotate(self._probabilities(xr), tile, centre, (kept_centre,) * 2, -deg)
            total[..., : tile[0], : tile[1]] += back
        return total / len(angles)


def as_source(image: Any, axes: str | None = None) -> ImageSource:
    """`image` as an :class:`ImageSource` (arrays are wrapped with `axes`)."""
    return image if isinstance(image, ImageSource) else from_array(image, axes)


@dataclass(frozen=True)
class _PlaneView:
    """A (C, H, W) sliceable view of one plane of an ImageSource."""

    source: ImageSource
    plane: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.source.channels, self.source.height, self.source.width)

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        return self.source.read(self.plane, key[1], key[2])


def plane_view(source: ImageSource, plane: int) -> _PlaneView:
    """One plane of `source` as a (C, H, W) array-like for :func:`.tiling.predict_tiled`."""
    return _PlaneView(source, plane)


def predict_region(
    source: ImageSource,
    plane: int,
    region: tuple[slice, slice],
    predictor: Predictor,
    spec: TileSpec,
    *,
    batch_size: int = 1,
    on_tile: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Probabilities for one output region of one plane (the block-level predictor).

    The region's start must be a multiple of the tile size; then any split
    of an image into regions gives exactly the output of one whole pass.

    Returns
    -------
    ndarray of shape (K, h, w)
    """
    return predict_tiled(
        plane_view(source, plane),
        predictor,
        predictor.read_spec(spec),
        batch_size=batch_size,
        region=region,
        on_tile=on_tile,
    )


def predict(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    window: int | None = None,
    batch_size: int = 1,
    tta: TTA = "none",
    runtime: Runtime | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Progress = False,
) -> np.ndarray:
    """Class probabilities for every pixel of an in-memory or lazy image.

    Parameters
    ----------
    image : array-like or ImageSource
        ndarray, memmap or zarr array; 2D (``YX``) by default, or give `axes`
        (e.g. ``"ZYX"``, ``"CYX"``, ``"ZCYX"``).
    model : UNet
    axes : str, optional
    window : int, optional
        Network input size per tile (valid size); default from memory budget.
    batch_size : int
        Tiles per forward pass.
    tta : {'none', 'd4', 'rot7'}
    runtime : Runtime, optional
    dtype : torch.dtype
    progress : bool or callable
        ``True`` for a tqdm bar, or ``progress(done, total)`` called after
        every tile (see :mod:`biounet.inference.progress`).

    Returns
    -------
    ndarray of shape (P, K, H, W)
        One probability map per plane and class.

    Examples
    --------
    >>> net = UNet(UNetConfig(features=4))
    >>> predict(np.zeros((50, 70), np.uint8), net).shape
    (1, 2, 50, 70)
    """
    source, predictor, spec = prepare_prediction(
        image,
        model,
        axes=axes,
        tta=tta,
        dtype=dtype,
        runtime=runtime,
        window=window,
        batch_size=batch_size,
    )
    return predict_planes(source, predictor, spec, batch_size=batch_size, progress=progress)


def prepare_prediction(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    tta: TTA = "none",
    dtype: torch.dtype = torch.float32,
    runtime: Runtime | None = None,
    window: int | None = None,
    batch_size: int = 1,
    unit: int = 1,
) -> tuple[ImageSource, Predictor, TileSpec]:
    """The image as a source, the predictor and the tile geometry of an in-memory prediction.

    Raises
    ------
    ValueError
        If the image's channels do not fit the model, or `window` is not valid.
    """
    source = as_source(image, axes)
    if source.channels != model.config.in_channels:
        raise ValueError(
            f"{source.name}: {source.channels} channel(s), model expects {model.config.in_channels}"
        )
    predictor = Predictor(model, runtime, tta=tta, dtype=dtype)
    spec = plan_tiles(
        model.config,
        (source.height, source.width),
        window=window,
        runtime=predictor.runtime,
        batch_size=batch_size,
        unit=unit,
    )
    return source, predictor, spec


def predict_planes(
    source: ImageSource,
    predictor: Predictor,
    spec: TileSpec,
    *,
    batch_size: int = 1,
    progress: Progress = False,
) -> np.ndarray:
    """Probabilities (P, K, H, W) of every plane of `source` with a given tile geometry."""
    full = (slice(0, source.height), slice(0, source.width))
    total = len(tile_grid((source.height, source.width), predictor.read_spec(spec)))
    bar = TileProgress(total * source.n_planes, source.name, progress)
    try:
        return np.stack(
            [
                predict_region(
                    source, p, full, predictor, spec, batch_size=batch_size, on_tile=bar.update
                )
                for p in range(source.n_planes)
            ]
        )
    finally:
        bar.close()


def predict_whole(
    image: np.ndarray, model: UNet, *, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """The network applied once to the whole mirrored image: the tiling reference.

    The image is mirrored by the tile context before its first pixel and up
    to the next valid size after its last, and passed through the network in
    one piece. Memory grows with the image; use it for checks, not for work.

    Parameters
    ----------
    image : ndarray of shape (C, H, W)
    model : UNet
    dtype : torch.dtype

    Returns
    -------
    ndarray of shape (K, H, W)
    """
    cfg = model.config
    context = tile_context(depth=cfg.depth, padding=cfg.padding)
    sizes = []
    for n in image.shape[-2:]:
        if cfg.padding == "valid":
            sizes.append(shapes.input_size_for_output(n, depth=cfg.depth))
        else:
            sizes.append(
                shapes.input_size_for_output(n + 2 * context, depth=cfg.depth, padding="same")
            )
    iy = reflect_indices(-context, sizes[0] - context, image.shape[-2])
    ix = reflect_indices(-context, sizes[1] - context, image.shape[-1])
    padded = image[:, iy][:, :, ix]
    out = Predictor(model, tta="none", dtype=dtype)(padded[np.newaxis])[0]
    return out[:, : image.shape[-2], : image.shape[-1]]
