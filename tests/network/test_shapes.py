"""Size arithmetic against the paper (PAPER.md items 6 and 8) and brute force."""

import pytest
import torch

from biounet.network import shapes
from biounet.network.unet import UNet, UNetConfig


def test_paper_sizes_572():
    t = shapes.trace(572)
    assert t.encoder == (568, 280, 136, 64)
    assert t.bottom == 28
    assert t.decoder == (52, 100, 196, 388)
    assert t.crops == (4, 16, 40, 88)
    assert t.output == 388


def test_valid_sizes_paper_rule():
    sizes = shapes.valid_input_sizes(572)
    assert sizes == list(range(188, 573, 16))
    assert all(s % 16 == 12 for s in sizes)
    assert shapes.is_valid_input_size(188) and shapes.is_valid_input_size(572)
    assert not shapes.is_valid_input_size(571)
    assert not shapes.is_valid_input_size(574)
    assert not shapes.is_valid_input_size(172)  # 12 mod 16 but output would be empty


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_valid_sizes_match_brute_force(depth, padding):
    brute = [
        s for s in range(1, 1200) if shapes.is_valid_input_size(s, depth=depth, padding=padding)
    ]
    assert shapes.valid_input_sizes(1199, depth=depth, padding=padding) == brute
    # output grows one step per step, so the halo is the same for every valid size
    if padding == "valid":
        halos = {(s - shapes.output_size(s, depth=depth)) // 2 for s in brute}
        assert halos == {shapes.halo(depth=depth)}
        assert shapes.halo(depth=depth) == 3 * 2 ** (depth + 1) - 4  # closed form


def test_halo_and_input_for_output():
    assert shapes.halo() == 92
    assert shapes.input_size_for_output(388) == 572
    assert shapes.input_size_for_output(389) == 588
    assert shapes.input_size_for_output(1) == 188
    assert shapes.input_size_for_output(512) == 700  # PAPER.md item 11
    assert shapes.output_size(700) == 516
    for out in range(1, 900, 7):
        s = shapes.input_size_for_output(out, depth=3)
        assert shapes.output_size(s, depth=3) >= out
        assert (
            s == shapes.smallest_valid_input_size(depth=3)
            or shapes.output_size(s - 8, depth=3) < out
        )


def test_invalid_size_message_names_neighbours():
    with pytest.raises(ValueError, match=r"571 is not a valid.*556 and 572"):
        shapes.output_size(571)
    with pytest.raises(ValueError, match=r"574 .*572 and 588"):
        shapes.output_size(574)
    with pytest.raises(ValueError, match=r"smallest valid size is 188"):
        shapes.output_size(100)


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_same_padding_keeps_size(depth):
    net = UNet(UNetConfig(features=2, depth=depth, padding="same")).eval()
    for mult in (1, 3):
        s = mult * 2**depth
        assert shapes.output_size(s, depth=depth, padding="same") == s
        with torch.no_grad():
            assert net(torch.zeros(1, 1, s, s + 2**depth)).shape[-2:] == (s, s + 2**depth)
    assert not shapes.is_valid_input_size(2**depth + 2, depth=depth, padding="same")


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_radius_bounds_gradients(depth):
    """No input pixel farther than the radius influences the centre output."""
    net = UNet(UNetConfig(features=2, depth=depth, padding="same", dropout=0.0)).double()
    for p in net.parameters():  # positive weights: every path carries gradient
        torch.nn.init.uniform_(p, 0.1, 0.2)
    r = shapes.receptive_field_radius(depth=depth)
    size = 2 * (r + 2**depth) // 2**depth * 2**depth + 2**depth
    reach = 0
    for pos in range(2**depth):  # every phase of the pooling grid
        x = torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        y = net(x)
        c = size // 2 + pos
        y[0, 0, c, c].backward()
        nz = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
        reach = max(reach, int(c - nz.min()), int(nz.max() - c))
    assert reach <= r
    assert reach == r  # the bound is attained for some phase
