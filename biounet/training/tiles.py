"""Where training tiles are cut: in DataLoader workers, or on the training device.

Sample ``g`` of a run is drawn with ``numpy.random.default_rng([seed, g])``:
first the training image (each pixel of the training set equally likely to
be in a tile), then the tile's random choices
(:func:`biounet.training.augment.draw_transform`). What happens next depends
on :attr:`TrainConfig.augment_on <biounet.training.config.TrainConfig>`:

``workers``
    :class:`TileDataset` resamples the whole tile (image, classes, weights) in
    the worker and hands the tensors to the training process.
``device``
    :class:`TileDataset` with ``plans=True`` hands over only the image index,
    the sampling grid and the grey curve (:class:`TilePlan`); :class:`DeviceTiles`
    keeps the normalised images, class maps and weight maps on the training
    device and cuts the tiles there. On a GPU the resampling then costs
    microseconds instead of a CPU core's milliseconds, and the weight maps are
    looked up where the loss is computed.

Both paths call :func:`biounet.training.augment.sample_tile`, so on the same
device they give identical tiles (``tests/training/test_tiles.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from biounet.device import Runtime
from biounet.training.augment import (
    TileTransform,
    apply_transform,
    draw_transform,
    sample_tile,
    sampling_grid,
)
from biounet.training.config import TrainConfig

__all__ = ["TilePlan", "TileDataset", "DeviceTiles", "tiles_on_device"]


class TilePlan(NamedTuple):
    """What a worker hands over for tiles cut on the device (a batch after collation).

    Attributes
    ----------
    index : Tensor of shape (B,), int64
        Training image of each tile.
    grid : Tensor of shape (B, S, S, 2), float32
        :func:`biounet.training.augment.sampling_grid` of each tile.
    gray : Tensor of shape (B, 3), float64
        Grey curve ``(black, mid, white)``; NaN where there is none.
    """

    index: torch.Tensor
    grid: torch.Tensor
    gray: torch.Tensor


def tiles_on_device(config: TrainConfig, runtime: Runtime) -> bool:
    """Whether this run cuts its tiles on the training device (``augment_on``)."""
    if config.augment_on == "auto":
        return runtime.is_cuda
    return config.augment_on == "device"


class TileDataset(torch.utils.data.Dataset):
    """Augmented training tiles; item ``g`` is drawn with ``default_rng([seed, g])``.

    Parameters
    ----------
    images : list of ndarray of shape (C, M, N), float32
        Normalised training images.
    targets : list of biounet.training.weight_map.Target
        Their classes and weight maps.
    config : TrainConfig
    plans : bool
        Return :class:`TilePlan` items (for :class:`DeviceTiles`) instead of tiles.
    """

    def __init__(
        self, images: list[np.ndarray], targets: list[Any], config: TrainConfig, *, plans=False
    ):
        self.images, self.targets, self.config, self.plans = images, targets, config, plans
        areas = np.array([t.classes.size for t in targets], dtype=np.float64)
        self.p = areas / areas.sum()  # every pixel equally likely to be in a tile

    def draw(self, g: int) -> tuple[int, TileTransform]:
        """The training image and the random choices of sample `g`."""
        rng = np.random.default_rng([self.config.seed, g])
        k = int(rng.choice(len(self.images), p=self.p))
        shape = self.images[k].shape[-2:]
        output_size = self.config.output_size
        return k, draw_transform(
            shape, output_size=output_size, rng=rng, config=self.config.augment
        )

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, transform = self.draw(g)
        if self.plans:
            grid = sampling_grid(transform, self.config.input_size, self.images[k].shape[-2:])
            gray = transform.gray if transform.gray is not None else (np.nan,) * 3
            return TilePlan(
                torch.tensor(k), torch.from_numpy(grid), torch.tensor(gray, dtype=torch.float64)
            )
        t = self.targets[k]
        x, y, w = apply_transform(
            self.images[k],
            t.classes,
            t.weights,
            transform,
            input_size=self.config.input_size,
            output_size=self.config.output_size,
            config=self.config.augment,
        )
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)


class DeviceTiles:
    """The training images, class maps and weight maps on the device; cuts tiles there.

    Parameters
    ----------
    images : list of ndarray of shape (C, M, N), float32
        Normalised training images.
    targets : list of biounet.training.weight_map.Target
    config : TrainConfig
    device : torch.device
    """

    def __init__(
        self,
        images: list[np.ndarray],
        targets: list[Any],
        config: TrainConfig,
        device: torch.device,
    ) -> None:
        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)

        self.images = [put(im) for im in images]
        self.classes = [put(t.classes) for t in targets]
        self.weights = [put(t.weights) for t in targets]
        self.config, self.device = config, device

    def __call__(self, plan: TilePlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cut a batch of tiles.

        Parameters
        ----------
        plan : TilePlan
            A collated batch, on the host (its grid may be in pinned memory).

        Returns
        -------
        x : Tensor of shape (B, C, S, S), float32
        y : Tensor of shape (B, O, O), int64
        w : Tensor of shape (B, O, O), float32
            On the device; O is the output size.
        """
        grids = plan.grid.to(self.device, non_blocking=True)
        tiles = []
        for k, grid, gray in zip(plan.index.tolist(), grids, plan.gray.tolist(), strict=True):
            tiles.append(
                sample_tile(
                    self.images[k],
                    self.classes[k],
                    self.weights[k],
                    grid,
                    None if np.isnan(gray[0]) else tuple(gray),
                    output_size=self.config.output_size,
                    config=self.config.augment,
                )
            )
        x, y, w = (torch.stack(parts) for parts in zip(*tiles, strict=True))
        return x, y, w
