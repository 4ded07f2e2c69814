import math

import pytest
import torch
import torch.nn.functional as F

from biounet.training.loss import weighted_cross_entropy


def test_unit_weights_equal_cross_entropy(rng):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 7)
    target = torch.randint(0, 3, (2, 5, 7))
    ref = F.cross_entropy(logits, target, reduction="mean")
    assert torch.allclose(weighted_cross_entropy(logits, target), ref)
    assert torch.allclose(weighted_cross_entropy(logits, target, torch.ones(2, 5, 7)), ref)


def test_hand_computed_weighted_value():
    # two pixels, two classes; p = softmax([0, log 3]) = (1/4, 3/4)
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3), math.log(3)]]]])
    target = torch.tensor([[[0, 1]]])
    weights = torch.tensor([[[10.0, 1.0]]])
    expected = -(10 * math.log(0.25) + 1 * math.log(0.75)) / 2  # mean over pixels, not sum w
    assert weighted_cross_entropy(logits, target, weights).item() == pytest.approx(expected)


def test_gradient_is_weighted():
    logits = torch.zeros(1, 2, 1, 2, requires_grad=True)
    weighted_cross_entropy(
        logits, torch.tensor([[[0, 0]]]), torch.tensor([[[3.0, 1.0]]])
    ).backward()
    g = logits.grad[0, 0, 0]
    assert g[0] / g[1] == pytest.approx(3.0)


def test_size_mismatch_is_explained():
    with pytest.raises(ValueError, match="crop the target"):
        weighted_cross_entropy(torch.zeros(1, 2, 4, 4), torch.zeros(1, 6, 6, dtype=torch.long))
