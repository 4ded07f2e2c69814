"""The network against the paper's checkable statements (PAPER.md section 2.A)."""

import math

import pytest
import torch
from torch import nn

from biounet.network.summary import layer_counts
from biounet.network.unet import UNet, UNetConfig, center_crop, parameter_count


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_paper_layer_inventory():
    with torch.device("meta"):
        net = UNet(UNetConfig())
    convs = _convs(net)
    assert len(convs) == 23
    c3 = [m for m in convs if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    c1 = [m for m in convs if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    up = [m for m in convs if isinstance(m, nn.ConvTranspose2d)]
    assert (len(c3), len(up), len(c1)) == (18, 4, 1)
    assert layer_counts(net.config)["total"] == 23
    assert all(m.padding == (0, 0) and m.bias is not None for m in c3)
    assert [m.out_channels for m in up][::-1] == [512, 256, 128, 64]  # deepest first
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in up)
    assert [m.out_channels for m in c3[:10:2]] == [64, 128, 256, 512, 1024]
    assert (c1[0].in_channels, c1[0].out_channels) == (64, 2)
    assert not any(
        isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) for m in net.modules()
    )
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(m.kernel_size == 2 and m.stride == 2 for m in pools)


def test_parameter_counts():
    assert parameter_count(UNetConfig()) == 31_030_658
    assert parameter_count(UNetConfig(flavour="release")) == 31_100_354
    with torch.device("meta"):
        rel = UNet(UNetConfig(flavour="release"))
    assert (rel.up[0].out_channels, rel.dec[0][0].in_channels) == (128, 192)


def test_forward_sizes_572():
    net = UNet(UNetConfig()).eval()
    sizes = {}

    def hook(name):
        return lambda m, i, o: sizes.setdefault(name, []).append(o.shape[-1])

    for level, block in enumerate(net.down):
        block.register_forward_hook(hook(f"down{level}"))
    net.bottom.register_forward_hook(hook("bottom"))
    for level, block in enumerate(net.dec):
        block.register_forward_hook(hook(f"dec{level}"))
        net.up[level].register_forward_hook(hook(f"up{level}"))
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)
    assert [sizes[f"down{i}"][0] for i in range(4)] == [568, 280, 136, 64]
    assert sizes["bottom"] == [28]
    assert [sizes[f"dec{i}"][0] for i in (3, 2, 1, 0)] == [52, 100, 196, 388]
    assert [sizes[f"up{i}"][0] for i in (3, 2, 1, 0)] == [56, 104, 200, 392]


def test_odd_pool_input_raises():
    net = UNet(UNetConfig(features=2))
    with pytest.raises(ValueError, match="odd size"):
        net(torch.zeros(1, 1, 190, 188))


def test_crop_and_concat_order():
    """Decoder input is [upsampled, cropped skip] (the release's order)."""
    net = UNet(UNetConfig(features=2, depth=1, dropout=0.0)).double().eval()
    seen = {}
    net.dec[0].register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.rand(1, 1, 44, 44, dtype=torch.float64)  # smallest depth-1 sizes: 12 + 8k
    with torch.no_grad():
        net(x)
        skip = net.down[0](x)
        up = torch.relu(net.up[0](net.bottom(net.pool(skip))))
    cat = seen["x"]
    assert cat.shape[1] == up.shape[1] + skip.shape[1]
    assert torch.equal(cat[:, : up.shape[1]], up)
    assert torch.equal(cat[:, up.shape[1] :], center_crop(skip, up.shape[-2:]))


def test_init_std():
    torch.manual_seed(0)
    net = UNet(UNetConfig())
    conv = net.down[1][0]  # 64 -> 128, 3x3: fan-in 576
    assert (conv.in_channels, conv.out_channels) == (64, 128)
    std = conv.weight.std().item()
    assert abs(std - math.sqrt(2 / 576)) / math.sqrt(2 / 576) < 0.05
    assert abs(conv.weight.mean().item()) < 0.1 * std
    assert all(torch.count_nonzero(m.bias) == 0 for m in _convs(net))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    net = UNet(UNetConfig(features=4))
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.5 for d in drops)
    assert isinstance(net.down[3][-1], nn.Dropout) and isinstance(net.bottom[-1], nn.Dropout)
    x = torch.rand(1, 1, 188, 188)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a, b)
    net.train()
    with torch.no_grad():
        torch.manual_seed(1)
        c = net(x)
        torch.manual_seed(2)
        d = net(x)
    assert not torch.equal(c, d)


def test_level3_skip_taken_after_dropout():
    net = UNet(UNetConfig(features=2, depth=1)).train()
    assert isinstance(net.down[0][-1], nn.Dropout)  # the last contracting level carries it


def test_config_validation():
    with pytest.raises(ValueError, match="features"):
        UNetConfig(features=0)
    with pytest.raises(ValueError, match="padding"):
        UNetConfig(padding="full")
    with pytest.raises(ValueError, match="unknown UNetConfig field"):
        UNetConfig.from_dict({"widht": 3})


def test_upconv_relu_switch():
    x = torch.rand(1, 1, 44, 44)
    torch.manual_seed(0)
    a = UNet(UNetConfig(features=2, depth=1, dropout=0.0)).eval()
    torch.manual_seed(0)
    b = UNet(UNetConfig(features=2, depth=1, dropout=0.0, upconv_relu=False)).eval()
    assert not torch.equal(a(x), b(x))


def test_forward_flops_matches_counted_operations():
    from biounet.network.summary import forward_flops

    for cfg, size in [
        (UNetConfig(features=4), 188),
        (UNetConfig(features=3, depth=2, flavour="release", in_channels=2, n_classes=3), (52, 68)),
        (UNetConfig(features=2, depth=3, padding="same"), (32, 48)),
    ]:
        net = UNet(cfg).eval()
        counted = []

        def hook(m, inputs, out, counted=counted):
            if isinstance(m, nn.ConvTranspose2d):
                counted.append(inputs[0].numel() * m.out_channels * 4)
            else:
                counted.append(out.numel() * m.in_channels * m.kernel_size[0] ** 2)

        for m in _convs(net):
            m.register_forward_hook(hook)
        shape = (size, size) if isinstance(size, int) else size
        with torch.no_grad():
            net(torch.zeros(1, cfg.in_channels, *shape))
        assert forward_flops(cfg, size) == 2 * sum(counted)
