"""The network as a function of input windows, and the tile geometry (Sec. 2, Fig. 2).

:class:`Predictor` turns raw input windows into class probabilities
(normalisation, device, precision, test-time averaging); :func:`plan_tiles`
chooses the tile geometry. :mod:`biounet.inference.segmentation` applies both
over any image with :mod:`biounet.inference.tiling`. The result does not
depend on the tile size: tiled output equals whole-image output
(:func:`predict_whole`) because tile origins stay on the max-pooling grid.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from biounet.device import Runtime, make_runtime
from biounet.errors import ParameterError
from biounet.inference.tiling import (
    TileSpec,
    reflect_indices,
    tile_context,
    tile_spec,
)
from biounet.inference.tta import dihedral_transforms, rot7_angles, rotate
from biounet.limits import host_memory_mib
from biounet.network import shapes
from biounet.network.fused import can_fuse, fused_forward
from biounet.network.unet import UNet, UNetConfig
from biounet.options import TTA, TTA_CHOICES

#: Peak activation memory of a forward pass, in 4-byte floats per input pixel and
#: per feature channel of the first level: the live tensors of the top expansive
#: level (cropped skip, up-convolution output, concatenation, convolution output)
#: plus allocator slack. Measured as peak RSS growth (benchmarks/bench_predict.py):
#: 5.6 at 572, 6.2 at 892, 6.8 at 1404 and 6.7 at 2012 px (features=16, CPU).
ACTIVATION_FLOATS_PER_FEATURE = 7.0

#: Default activation-memory budget on the CPU: this share of the host's memory,
#: between the two bounds below (768 MiB on hosts of 6 GiB and more).
CPU_BUDGET_SHARE = 1 / 8
CPU_BUDGET_BYTES = 768 * 2**20
CPU_BUDGET_MIN_BYTES = 128 * 2**20
CUDA_BUDGET_FRACTION = 0.5

#: Largest default window on CUDA: beyond it, bigger tiles save little context.
MAX_DEFAULT_WINDOW = 2048
#: Largest default window on the CPU. Up to it the convolutions keep their
#: rate per input pixel once glibc reuses freed feature maps
#: (:func:`biounet.device.reuse_freed_memory`; before that, 892 px ran at 0.65
#: of the float32 matrix-multiply rate against 0.75 at 700 px). Measured by
#: ``benchmarks/bench_windows.py`` (docs/performance.md); the memory budget
#: usually binds first (1324 px at features=16 and 768 MiB).
MAX_DEFAULT_WINDOW_CPU = 1324


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


def cpu_budget_bytes() -> int:
    """The default activation-memory budget on the CPU, from the host's memory.

    Examples
    --------
    >>> CPU_BUDGET_MIN_BYTES <= cpu_budget_bytes() <= CPU_BUDGET_BYTES
    True
    """
    share = int(host_memory_mib() * 2**20 * CPU_BUDGET_SHARE)
    return max(CPU_BUDGET_MIN_BYTES, min(CPU_BUDGET_BYTES, share))


def cheapest_tiles(
    config: UNetConfig,
    image_shape: tuple[int, int],
    largest: int,
    *,
    unit: int = 1,
) -> TileSpec:
    """The tiles up to `largest` px that cover the image with the fewest input pixels.

    Every valid window up to `largest` is balanced over the image
    (:meth:`TileSpec.balance`) and costed as tiles x window area: the
    network's time grows with the input pixels it sees, at the same rate
    per pixel for all windows up to :data:`MAX_DEFAULT_WINDOW_CPU` on the
    CPU (docs/performance.md). Ties go to fewer tiles.

    Examples
    --------
    >>> cheapest_tiles(UNetConfig(features=16), (2048, 2048), 1324).window
    (1212, 1212)
    >>> cheapest_tiles(UNetConfig(features=16), (2048, 2048), 1100).window
    (876, 876)
    """
    best, best_cost = None, None
    for size in reversed(
        shapes.valid_input_sizes(largest, depth=config.depth, padding=config.padding)
    ):
        try:
            spec = tile_spec(size, depth=config.depth, padding=config.padding, unit=unit)
        except ValueError:
            break  # no output tile left at this size and below
        spec = spec.balance(*image_shape)
        cost = spec.count(*image_shape) * spec.window[0] * spec.window[1]
        if best_cost is None or cost < best_cost:
            best, best_cost = spec, cost
    if best is None:
        raise ValueError(f"no window up to {largest} px leaves an output tile")
    return best


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
    """Tile geometry for an image: the requested window shrunk to the image, or the cheapest.

    Parameters
    ----------
    config : UNetConfig
    image_shape : (H, W)
    window : int, optional
        Network input size per tile; must be valid. Default: among the valid
        windows whose activations fit the memory budget (at most
        :data:`MAX_DEFAULT_WINDOW_CPU` on the CPU), the one whose balanced
        tiles cover the image with the fewest input pixels
        (:func:`cheapest_tiles`).
    runtime : Runtime, optional
        Where the network runs (decides the default budget).
    batch_size : int
    memory_bytes : int, optional
        Activation-memory budget; default :func:`cpu_budget_bytes` on the
        CPU, half the free memory on CUDA.
    unit : int
        Make tiles multiples of `unit` as well (16 for tiled TIFF output).

    Examples
    --------
    >>> plan_tiles(UNetConfig(features=16), (2048, 2048)).window
    (1212, 1212)
    >>> plan_tiles(UNetConfig(features=16), (2048, 2048), window=700).window
    (700, 700)
    """
    if window is not None:
        spec = tile_spec(window, depth=config.depth, padding=config.padding, unit=unit)
        return spec.fit(*image_shape)
    cuda = runtime is not None and runtime.is_cuda
    if memory_bytes is None:
        memory_bytes = cpu_budget_bytes()
        if cuda:
            free, _ = torch.cuda.mem_get_info(runtime.device)
            memory_bytes = int(free * CUDA_BUDGET_FRACTION)
    largest = MAX_DEFAULT_WINDOW if cuda else MAX_DEFAULT_WINDOW_CPU
    largest = default_window(config, memory_bytes, batch_size, largest=largest)
    return cheapest_tiles(config, image_shape, largest, unit=unit)


class Predictor:
    """Callable mapping raw input windows to class probabilities.

    Parameters
    ----------
    model : UNet
        Not changed: the predictor prepares its own copy (evaluation mode,
        `dtype`, the runtime's device and memory format).
    runtime : Runtime, optional
        Device and precision; default CPU, float32.
    tta : {'none', 'd4', 'rot7'}
        Test-time averaging (see :mod:`biounet.inference.tta`).
    dtype : torch.dtype
        Compute dtype without AMP (``torch.float64`` for exactness tests).

    Notes
    -----
    :meth:`windows` gives, for a tile geometry, the geometry to read windows
    with and the function that predicts them: it maps an array of shape
    (N, C, sy, sx) in the image's dtype to float32 (or `dtype`) probabilities
    of shape (N, K, oy, ox) whose index 0 is window position ``context``
    (:func:`biounet.inference.tiling.tile_context`). Without rotations the
    predictor itself is that function.
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
            raise ParameterError("tta", tta, f"choose from {', '.join(TTA_CHOICES)}")
        self.runtime = runtime or make_runtime("cpu")
        self.config = cfg = model.config
        self.normalization = model.normalization
        self.model = self.runtime.prepare(copy.deepcopy(model).eval().to(dtype))
        #: The forward pass: the model, or on CPU float32 the same pass with fused
        #: ReLUs (:func:`biounet.network.fused.fused_forward`, equal output, faster).
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        if can_fuse(self.runtime.device, dtype, self.runtime.amp_dtype):
            self.forward = functools.partial(fused_forward, self.model)
        self.tta = tta
        self.dtype = dtype
        self.context = tile_context(depth=cfg.depth, padding=cfg.padding)
        #: Rotation angles (degrees) averaged over with ``tta="rot7"``.
        self.angles: tuple[float, ...] = tuple(rot7_angles()) if tta == "rot7" else ()

    def rotation_geometry(self, spec: TileSpec) -> tuple[int, int]:
        """(margin, window) of a rotated pass for tiles of `spec` (``tta="rot7"``).

        A rotated pass needs a window whose kept output covers the tile
        rotated by any angle (side ``T * sqrt(2)``), and an input margin
        that covers that window rotated by any angle.
        """
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
        return math.ceil(radius) + 1, window

    def read_spec(self, spec: TileSpec) -> TileSpec:
        """The geometry windows must be read with: `spec`, plus margins for rot7."""
        if self.tta != "rot7":
            return spec
        margin, _ = self.rotation_geometry(spec)
        return TileSpec(
            spec.tile,
            (spec.window[0] + 2 * margin, spec.window[1] + 2 * margin),
            spec.context + margin,
            spec.align,
        )

    def windows(self, spec: TileSpec) -> tuple[TileSpec, Callable[[np.ndarray], np.ndarray]]:
        """The read geometry for tiles of `spec` and the function that predicts its windows."""
        if self.tta != "rot7":
            return spec, self
        return self.read_spec(spec), functools.partial(self._rotated_call, spec)

    def _to_tensor(self, windows: np.ndarray) -> torch.Tensor:
        low, high = self.normalization.bounds(windows.dtype)
        if windows.dtype not in (np.uint8, np.float32, np.float64):
            windows = windows.astype(np.float32)
        x = self.runtime.tensor(torch.from_numpy(np.ascontiguousarray(windows)), dtype=self.dtype)
        return (x - low) / (high - low)

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax output; index 0 at window position `context`."""
        if self.runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.runtime.autocast():
            logits = self.forward(x)
        p = torch.softmax(logits.to(self.dtype), dim=1)
        if self.config.padding == "same":
            p = p[..., self.context :, self.context :]
        return p

    def _numpy(self, p: torch.Tensor) -> np.ndarray:
        return p.to(torch.float32 if self.dtype != torch.float64 else self.dtype).cpu().numpy()

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities (N, K, oy, ox) for raw windows (N, C, sy, sx); no rotations."""
        if self.tta == "rot7":
            raise ValueError("rot7 predicts windows of a tile geometry: use windows(spec)")
        x = self._to_tensor(windows)
        if self.tta == "none":
            return self._numpy(self._probabilities(x))
        p = sum(inv(self._probabilities(fwd(x))) for fwd, inv in dihedral_transforms()) / 8
        return self._numpy(p)

    @torch.inference_mode()
    def _rotated_call(self, spec: TileSpec, windows: np.ndarray) -> np.ndarray:
        """Average over passes rotated about each tile's centre (bilinear both ways)."""
        x = self._to_tensor(windows)
        m, window = self.rotation_geometry(spec)
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
        for deg in self.angles:
            if deg == 0.0:
                total += plain
                continue
            xr = rotate(x, (window, window), (self.context + kept_centre,) * 2, centre_in, deg)
            back = rotate(self._probabilities(xr), tile, centre, (kept_centre,) * 2, -deg)
            total[..., : tile[0], : tile[1]] += back
        return self._numpy(total / len(self.angles))


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
