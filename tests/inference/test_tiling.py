"""Overlap-tile geometry and the seamless-tiling guarantee (PAPER.md items 11, 12)."""

import itertools

import numpy as np
import pytest
import torch

from biounet.inference.predictor import Predictor, predict_whole
from biounet.inference.tiling import (
    TileSpec,
    predict_tiled,
    read_window,
    reflect_indices,
    tile_context,
    tile_grid,
    tile_spec,
)
from biounet.network import shapes
from biounet.network.unet import UNet, UNetConfig


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_reflect_matches_numpy_pad(n):
    a = np.arange(n)
    for pad in (0, 1, n - 1, n, 2 * n + 3, 40):
        expected = np.pad(a, pad, mode="reflect") if n > 1 else np.full(n + 2 * pad, 0)
        assert np.array_equal(reflect_indices(-pad, n + pad, n), expected)


def test_read_window_matches_padded_image(rng):
    image = rng.integers(0, 255, (2, 13, 9), dtype=np.uint8)
    big = np.pad(image, ((0, 0), (60, 60), (60, 60)), mode="reflect")
    calls = []

    def read(r, c):
        calls.append((r, c))
        return image[:, r, c]

    for y0, x0 in [(-50, -40), (0, 0), (5, 3), (10, -2), (-1, 8), (20, 30)]:
        win = read_window(read, (13, 9), (y0, y0 + 25), (x0, x0 + 17))
        assert np.array_equal(win, big[:, 60 + y0 : 85 + y0, 60 + x0 : 77 + x0])
    # an in-bounds window reads exactly its own pixels
    calls.clear()
    read_window(read, (13, 9), (2, 9), (1, 5))
    assert calls == [(slice(2, 9), slice(1, 5))]


@pytest.mark.parametrize("tile,context", [(16, 0), (16, 3), (32, 10), (48, 1)])
def test_identity_network_round_trip_is_exact(rng, tile, context):
    """A "network" returning its window's centre + 1 reproduces image + 1 (stardist/MONAI)."""
    spec = TileSpec((tile, tile), (tile + 2 * context + 4, tile + 2 * context + 4), context, 16)

    def net(batch):
        return batch[:, :, context : context + tile + 4, context : context + tile + 4] + 1

    for shape in [(1, 1), (5, 70), (64, 64), (65, 33), (100, 17)]:
        image = rng.random((2, *shape))
        out = predict_tiled(image, net, spec.fit(*shape), batch_size=3)
        assert out.shape == image.shape
        assert np.array_equal(out, image + 1)


def test_tile_spec_paper_numbers():
    spec = tile_spec(572)
    assert spec == TileSpec((384, 384), (572, 572), 92, 16)
    assert tile_spec(700).tile == (512, 512)  # 516 outputs, 512 kept
    assert tile_spec((572, 700)).tile == (384, 512)
    assert tile_context(padding="same") == 112
    with pytest.raises(ValueError, match="571 is not a valid"):
        tile_spec(571)
    with pytest.raises(ValueError, match="leaves no output tile"):
        tile_spec(188)  # valid, but its 4 outputs are less than one 16-px tile
    small = tile_spec(700).fit(100, 1000)
    assert small.tile == (112, 512) and small.window == (300, 700)
    assert all(shapes.is_valid_input_size(s) for s in small.window)


def test_grid_regions_partition_the_image():
    spec = tile_spec(204, depth=4)  # 20 outputs -> 16 kept
    full = tile_grid((70, 50), spec)
    assert [t.rows.start for t in full[:4]] == [0, 0, 0, 0]
    covered = np.zeros((70, 50), int)
    for t in full:
        covered[t.rows, t.cols] += 1
        assert t.origin == (t.rows.start - 92, t.cols.start - 92)
    assert (covered == 1).all()
    halves = tile_grid((70, 50), spec, (slice(0, 32), slice(0, 50))) + tile_grid(
        (70, 50), spec, (slice(32, 70), slice(0, 50))
    )
    assert halves == full
    with pytest.raises(ValueError, match="not on the tile grid"):
        tile_grid((70, 50), spec, (slice(8, 70), slice(0, 50)))


def _net(depth, features, padding, in_channels=1, seed=0):
    torch.manual_seed(seed)
    return UNet(
        UNetConfig(in_channels=in_channels, features=features, depth=depth, padding=padding)
    ).eval()


def _image(rng, channels, shape):
    return rng.integers(0, 256, (channels, *shape)).astype(np.uint8)


CASES = [
    # depth, features, padding, image shape, windows
    (2, 4, "valid", (75, 131), (48, 60, 104)),
    (3, 2, "valid", (1, 29), (100, 132)),
    (3, 4, "valid", (97, 64), (100, 116, 196)),
    (4, 2, "valid", (200, 150), (204, 220, 252)),
    (2, 3, "same", (75, 131), (52, 68)),
    (3, 2, "same", (40, 90), (112, 128)),
]


@pytest.mark.parametrize("depth,features,padding,shape,windows", CASES)
def test_tiled_equals_whole_image_float64(rng, depth, features, padding, shape, windows):
    net = _net(depth, features, padding, in_channels=2)
    image = _image(rng, 2, shape)
    whole = predict_whole(image, net, dtype=torch.float64)
    predictor = Predictor(net, dtype=torch.float64)
    for window, batch in itertools.product(windows, (1, 3)):
        spec = tile_spec(window, depth=depth, padding=padding).fit(*shape)
        tiled = predict_tiled(image, predictor, spec, batch_size=batch)
        assert tiled.shape == (2, *shape)
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-12)


def test_tiled_equals_whole_image_float32(rng):
    net = _net(4, 8, "valid")
    image = _image(rng, 1, (300, 410))
    whole = predict_whole(image, net)
    tiled = predict_tiled(image, Predictor(net), tile_spec(236).fit(300, 410), batch_size=2)
    assert tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_whole_image_reference_uses_numpy_mirror(rng):
    """predict_whole pads like np.pad(reflect): checked against an independent pad."""
    net = _net(2, 3, "valid")
    image = _image(rng, 1, (30, 41))
    halo = shapes.halo(depth=2)
    sy = shapes.input_size_for_output(30, depth=2)
    sx = shapes.input_size_for_output(41, depth=2)
    padded = np.pad(image, ((0, 0), (halo, sy - 30 - halo), (halo, sx - 41 - halo)), mode="reflect")
    with torch.no_grad():
        x = torch.from_numpy(padded[None].astype(np.float64) / 255)
        ref = torch.softmax(net.double()(x), 1)[0, :, :30, :41].numpy()
    np.testing.assert_allclose(
        predict_whole(image, net, dtype=torch.float64), ref, atol=1e-13, rtol=0
    )


def test_offsets_off_the_pooling_grid_make_seams(rng):
    """Why strides must be multiples of 2**depth: edge-to-edge output tiles differ."""
    net = _net(3, 4, "valid")
    image = _image(rng, 1, (60, 60))
    whole = predict_whole(image, net, dtype=torch.float64)
    good = tile_spec(132, depth=3)  # 44 outputs, 40 kept: stride 40 = 5 * 8
    bad = TileSpec((44, 44), (132, 132), 44, 4)  # all 44 kept: stride 44, not a multiple of 8
    predictor = Predictor(net, dtype=torch.float64)
    assert np.abs(predict_tiled(image, predictor, good) - whole).max() < 1e-12
    assert np.abs(predict_tiled(image, predictor, bad) - whole).max() > 1e-6


def test_mirror_mode_matters_only_near_the_border(rng):
    """reflect vs symmetric padding (PAPER.md ambiguity 13) differ only within the halo."""
    net = _net(2, 3, "valid")
    image = _image(rng, 1, (80, 80))
    halo = shapes.halo(depth=2)
    size = shapes.input_size_for_output(80, depth=2)
    outs = []
    for mode in ("reflect", "symmetric"):
        padded = np.pad(
            image, ((0, 0), (halo, size - 80 - halo), (halo, size - 80 - halo)), mode=mode
        )
        with torch.no_grad():
            x = torch.from_numpy(padded[None].astype(np.float64))
            outs.append(torch.softmax(net.double()(x), 1)[0, :, :80, :80].numpy())
    diff = np.abs(outs[0] - outs[1]).max(axis=0)
    assert diff.max() > 1e-6
    assert diff[halo : 80 - halo - 8, halo : 80 - halo - 8].max() == 0
