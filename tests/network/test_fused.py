"""The fused inference pass gives the plain forward pass's class scores."""

import numpy as np
import pytest
import torch

from biounet.device import cpu_has_bf16, make_runtime
from biounet.inference.predictor import Predictor
from biounet.network import fused
from biounet.network.unet import UNet, UNetConfig

pytestmark = pytest.mark.skipif(
    not fused.fusion_works(), reason="this PyTorch has no oneDNN fused convolution operators"
)

CONFIGS = [
    UNetConfig(features=4, depth=2),
    UNetConfig(features=4, depth=3, padding="same"),
    UNetConfig(features=4, depth=2, flavour="release"),
    UNetConfig(features=4, depth=2, upconv_relu=False),
    UNetConfig(features=4, depth=2, in_channels=2, n_classes=3, dropout=0.5),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.padding}-{c.flavour}-{c.depth}")
@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_forward_equals_the_module(config, channels_last):
    torch.manual_seed(0)
    net = UNet(config).eval()
    # biases are zero at initialisation: give them values so that they are tested too
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.1)
    size = 92 if config.padding == "valid" else 48
    x = torch.rand(2, config.in_channels, size, size + 16)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = net(x)
        got = fused.fused_forward(net, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fused_forward_rejects_an_invalid_size_as_the_module_does():
    net = UNet(UNetConfig(features=4, depth=2)).eval()
    with pytest.raises(ValueError, match="valid"):
        fused.fused_forward(net, torch.zeros(1, 1, 45, 44))


def test_the_predictor_fuses_cpu_float32_only():
    net = UNet(UNetConfig(features=4, depth=2))
    p32 = Predictor(net)
    assert p32.forward is not p32.model and p32.forward.func is fused.fused_forward
    p64 = Predictor(net, dtype=torch.float64)
    assert p64.forward is p64.model
    if cpu_has_bf16():
        pbf = Predictor(net, make_runtime("cpu", "bf16"))
        assert pbf.forward is pbf.model


def test_fused_and_plain_predictions_agree():
    torch.manual_seed(1)
    net = UNet(UNetConfig(features=4, depth=2))
    windows = (np.random.default_rng(0).random((1, 1, 92, 92)) * 255).astype(np.uint8)
    fast = Predictor(net)
    plain = Predictor(net)
    plain.forward = plain.model
    np.testing.assert_allclose(fast(windows), plain(windows), rtol=0, atol=1e-6)


def test_without_the_operators_nothing_is_fused(monkeypatch):
    monkeypatch.setattr(fused, "_mkldnn_ops", lambda: None)
    assert fused.fusion_works.__wrapped__() is False
