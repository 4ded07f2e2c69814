import numpy as np
import pytest
import torch

from biounet.errors import BiounetError
from biounet.inference.predictor import (
    Predictor,
    activation_bytes,
    cheapest_tiles,
    default_window,
    plan_tiles,
    predict_whole,
)
from biounet.inference.segmentation import predict
from biounet.inference.tiling import predict_tiled, tile_spec
from biounet.network.normalize import Normalization
from biounet.network.unet import UNet, UNetConfig


@pytest.fixture
def net():
    torch.manual_seed(0)
    return UNet(UNetConfig(features=4, depth=3)).eval()


def test_normalisation_by_dtype(rng, net):
    img8 = rng.integers(0, 256, (1, 50, 60)).astype(np.uint8)
    a = predict_whole(img8, net, dtype=torch.float64)
    b = predict_whole(img8.astype(np.uint16) * 257, net, dtype=torch.float64)
    c = predict_whole(img8.astype(np.float64) / 255, net, dtype=torch.float64)
    np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
    np.testing.assert_allclose(a, c, atol=1e-12, rtol=0)
    fixed = UNet(net.config, Normalization("fixed", 0, 255))
    fixed.load_state_dict(net.state_dict())
    np.testing.assert_allclose(
        predict_whole(img8.astype(np.float32), fixed.eval(), dtype=torch.float64),
        a,
        atol=1e-12,
        rtol=0,
    )


def test_probabilities_sum_to_one(rng, net):
    p = predict(rng.random((3, 40, 50)).astype(np.float32), net, axes="ZYX")
    assert p.shape == (3, 2, 40, 50)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6, rtol=0)


def test_d4_is_independent_of_the_tile_grid(rng, net):
    image = rng.integers(0, 256, (1, 70, 90)).astype(np.uint8)
    pred = Predictor(net, tta="d4", dtype=torch.float64)
    a = predict_tiled(image, pred, tile_spec(100, depth=3).fit(70, 90))
    b = predict_tiled(image, pred, tile_spec(132, depth=3).fit(70, 90), batch_size=2)
    np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
    assert np.abs(a - predict_whole(image, net, dtype=torch.float64)).max() > 1e-6


def test_tta_with_identity_only_equals_plain(rng, net):
    """PAPER.md item 13: identity-only test-time averaging is plain inference."""
    image = rng.integers(0, 256, (1, 50, 70)).astype(np.uint8)
    plain = predict_whole(image, net, dtype=torch.float64)
    pred = Predictor(net, tta="rot7", dtype=torch.float64)
    pred.angles = (0.0,)
    spec, fn = pred.windows(tile_spec(116, depth=3).fit(50, 70))
    assert spec.window[0] > 116  # read with the rotation margins
    np.testing.assert_allclose(predict_tiled(image, fn, spec), plain, atol=1e-12, rtol=0)


def test_rot7_is_close_to_plain_for_a_rotation_invariant_image(net):
    """A radially symmetric image: rotated passes see (nearly) the same input."""
    yy, xx = np.mgrid[-40:40, -40:40]
    image = (127 + 120 * np.cos(np.hypot(yy, xx) / 3)).astype(np.uint8)[None]
    torch.manual_seed(1)
    smooth = UNet(UNetConfig(features=4, depth=3)).eval()
    pred = Predictor(smooth, tta="rot7", dtype=torch.float64)
    spec, fn = pred.windows(tile_spec(180, depth=3).fit(80, 80))
    out = predict_tiled(image, fn, spec)
    plain = predict_whole(image, smooth, dtype=torch.float64)
    assert out.shape == plain.shape
    assert np.abs(out - plain)[:, 20:60, 20:60].mean() < 0.05


def test_default_window_grows_with_budget():
    cfg = UNetConfig(features=16)
    sizes = [default_window(cfg, mib * 2**20) for mib in (64, 256, 1024, 4096)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    for s, mib in zip(sizes, (64, 256, 1024, 4096), strict=True):
        assert activation_bytes(cfg, (s, s)) <= mib * 2**20 or s == 188
    spec = plan_tiles(cfg, (100, 5000), memory_bytes=256 * 2**20)
    assert spec.tile[0] == 112  # shrunk to the image


def brute_force_cost(cfg, shape, largest):
    """Fewest input pixels over every valid window <= largest, each tile count tried."""
    from biounet.network.shapes import valid_input_sizes

    best = None
    for s in valid_input_sizes(largest)[1:]:  # 188 px leaves no 16 px tile
        t = (s - 184) // 16 * 16  # kept output of a valid window: a multiple of 16
        counts = [-(-n // t) for n in shape]
        # the smallest window with the same tile count per axis
        sizes = [
            min(w for w in valid_input_sizes(s) if (w - 184) // 16 * 16 * c >= n)
            for c, n in zip(counts, shape, strict=True)
        ]
        cost = counts[0] * counts[1] * sizes[0] * sizes[1]
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize(
    "shape", [(2048, 2048), (4096, 4096), (520, 696), (100, 5000), (1500, 3000)]
)
@pytest.mark.parametrize("largest", [700, 1324])
def test_cheapest_tiles_cover_the_image_with_the_fewest_input_pixels(shape, largest):
    cfg = UNetConfig(features=16)
    spec = cheapest_tiles(cfg, shape, largest)
    assert spec.window[0] <= largest and spec.window[1] <= largest
    assert all(
        c * t >= n
        for c, t, n in zip(
            [-(-n // t) for n, t in zip(shape, spec.tile, strict=True)],
            spec.tile,
            shape,
            strict=True,
        )
    )
    cost = spec.count(*shape) * spec.window[0] * spec.window[1]
    assert cost == brute_force_cost(cfg, shape, largest)


def test_default_plan_is_the_cheapest_within_the_budget_and_cap():
    cfg = UNetConfig(features=16)
    spec = plan_tiles(cfg, (2048, 2048), memory_bytes=768 * 2**20)
    assert spec.window == (1212, 1212) and spec.count(2048, 2048) == 4  # 16 tiles at 700
    assert activation_bytes(cfg, spec.window) <= 768 * 2**20
    small = plan_tiles(cfg, (2048, 2048), memory_bytes=128 * 2**20)
    assert activation_bytes(cfg, small.window) <= 128 * 2**20
    assert plan_tiles(cfg, (2048, 2048), window=700).window == (700, 700)  # asked for: kept


def test_channel_mismatch(rng, net):
    with pytest.raises(BiounetError, match="<array>: 2 channel"):
        predict(rng.random((2, 40, 40)), net, axes="CYX")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision, tol", [("fp32", 2e-3), ("bf16", 5e-2)])
def test_cuda_tiled_prediction_matches_the_whole_image_on_the_cpu(rng, precision, tol):
    from biounet.device import make_runtime

    torch.manual_seed(0)
    model = UNet(UNetConfig(features=8, depth=3)).eval()
    image = rng.integers(0, 256, (300, 333)).astype(np.uint8)
    whole = predict_whole(image[None], model)  # float32 on the CPU
    tiled = predict(image, model, window=124, runtime=make_runtime("cuda", precision))
    assert tiled.shape == (1, *whole.shape)
    assert np.abs(tiled[0] - whole).max() < tol  # TF32 / bf16 arithmetic, no seams


def test_the_predictor_leaves_the_callers_model_as_it_was(net):
    """Predictor works on its own copy: mode, dtype, memory format and weights stay."""
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pred = Predictor(net, dtype=torch.float64)
    assert net.training and not pred.model.training
    assert next(net.parameters()).dtype == torch.float32
    assert next(pred.model.parameters()).dtype == torch.float64
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert pred.read_spec(tile_spec(116, depth=3)) == tile_spec(116, depth=3)  # no state kept
    net.eval()
