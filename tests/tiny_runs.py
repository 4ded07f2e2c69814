"""Tiny training runs for the tests: touching-cell stacks on disk and a small config."""

from pathlib import Path

import numpy as np
import tifffile

from biounet.network.unet import UNetConfig
from biounet.synthetic import touching_cells
from biounet.training.config import DataConfig, TrainConfig


def write_cells(
    folder: Path,
    *,
    count: int,
    size: int,
    n_cells: int,
    radius: tuple[int, int],
    rng: np.random.Generator | None = None,
    names: tuple[str, str] = ("img.tif", "lab.tif"),
) -> Path:
    """Write `count` synthetic touching-cell images and their instance labels as two stacks."""
    rng = rng if rng is not None else np.random.default_rng(0)
    pairs = [
        touching_cells((size, size), n_cells=n_cells, radius=radius, rng=rng) for _ in range(count)
    ]
    images = np.stack([p[0] for p in pairs])
    labels = np.stack([p[1] for p in pairs]).astype(np.uint16)
    tifffile.imwrite(folder / names[0], images, photometric="minisblack")
    tifffile.imwrite(folder / names[1], labels, photometric="minisblack")
    return folder


def tiny_config(
    folder: Path, names: tuple[str, str] = ("img.tif", "lab.tif"), *, val_count: int = 1, **changes
) -> TrainConfig:
    """A 4-feature, depth-2 run on 76 px tiles of the stacks `write_cells` wrote, no workers.

    `changes` replace top-level fields (``None`` keeps a value).
    """
    cfg = TrainConfig(
        model=UNetConfig(features=4, depth=2),
        data=DataConfig(
            images=str(folder / names[0]),
            labels=str(folder / names[1]),
            label_kind="instance",
            val_count=val_count,
        ),
        input_size=76,
        log_every=1,
        workers=0,
    )
    return cfg.with_overrides(**changes)
