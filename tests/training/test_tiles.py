"""Tiles cut on the training device equal tiles cut in the DataLoader workers."""

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from biounet.device import make_runtime
from biounet.network.unet import UNetConfig
from biounet.synthetic import touching_cells
from biounet.training.augment import AugmentConfig
from biounet.training.config import TrainConfig
from biounet.training.tiles import DeviceTiles, TileDataset, TilePlan, tiles_on_device
from biounet.training.weight_map import weight_maps


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(3)
    made = [touching_cells((90, 110), n_cells=7, radius=(8, 14), rng=rng) for _ in range(3)]
    images = [(image[None] / 255).astype(np.float32) for image, _ in made]
    return images, weight_maps([labels for _, labels in made])


@pytest.mark.parametrize(
    "augment",
    [AugmentConfig(), AugmentConfig(gray=False, image_order=3), AugmentConfig.off()],
    ids=["paper", "cubic-no-gray", "off"],
)
def test_device_tiles_equal_worker_tiles(pairs, augment):
    images, targets = pairs
    cfg = TrainConfig(model=UNetConfig(features=4, depth=2), input_size=76, augment=augment)
    tiles = TileDataset(images, targets, cfg)
    plans = TileDataset(images, targets, cfg, plans=True)
    cut = DeviceTiles(images, targets, cfg, torch.device("cpu"))
    batch = default_collate([plans[g] for g in (0, 5, 11)])
    assert isinstance(batch, TilePlan) and batch.grid.shape == (3, 76, 76, 2)
    x, y, w = cut(batch)
    assert x.shape == (3, 1, 76, 76) and y.shape == (3, 36, 36) and w.shape == (3, 36, 36)
    assert y.dtype == torch.int64
    for i, g in enumerate((0, 5, 11)):
        x1, y1, w1 = tiles[g]
        assert torch.equal(x[i], x1) and torch.equal(y[i], y1) and torch.equal(w[i], w1)
    # the tiles differ from sample to sample: the comparison above is not vacuous
    if augment.shift:
        assert not torch.equal(x[0], x[1])


def test_where_tiles_are_cut():
    cpu = make_runtime("cpu")
    assert not tiles_on_device(TrainConfig(), cpu)  # auto: workers on the CPU
    assert tiles_on_device(TrainConfig(augment_on="device"), cpu)
    assert not tiles_on_device(TrainConfig(augment_on="workers"), cpu)
    with pytest.raises(ValueError, match="augment_on must be one of auto, workers, device"):
        TrainConfig(augment_on="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tiles_match_cpu_tiles(pairs):
    images, targets = pairs
    cfg = TrainConfig(model=UNetConfig(features=4, depth=2), input_size=76)
    plans = TileDataset(images, targets, cfg, plans=True)
    batch = default_collate([plans[g] for g in range(8)])
    on_cpu = DeviceTiles(images, targets, cfg, torch.device("cpu"))(batch)
    on_gpu = DeviceTiles(images, targets, cfg, torch.device("cuda"))(batch)
    assert all(t.is_cuda for t in on_gpu)
    (x, y, w), (xg, yg, wg) = on_cpu, [t.cpu() for t in on_gpu]
    assert torch.allclose(x, xg, atol=1e-5, rtol=0) and torch.allclose(w, wg, atol=1e-4, rtol=0)
    assert (y != yg).float().mean() < 1e-3  # nearest neighbour: ties may round apart
