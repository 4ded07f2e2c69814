"""Fixtures of the napari plugin tests: a tiny checkpoint, smooth blobs.

(The folder is napari_plugin, not napari: pytest puts tests/ on sys.path, where
a tests/napari folder would pass for the napari package when it is not installed.)

The widget tests run headless: Qt draws offscreen (QT_QPA_PLATFORM, unless set
otherwise), and napari's canvas gets its OpenGL context from an X display, which
pytest-xvfb starts (a virtual one, Xvfb) when it is installed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from biounet.network.checkpoint import save_checkpoint
from biounet.network.unet import UNet, UNetConfig

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A 4-feature, depth-2 U-Net whose head puts the decision near 0.5 (objects appear)."""
    torch.manual_seed(5)
    model = UNet(UNetConfig(features=4, depth=2))
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 0.02]))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", model.eval())


@pytest.fixture
def blobs(rng):
    """Smooth uint8 blobs, (2, 60, 70): objects that span tiles."""
    from scipy.ndimage import gaussian_filter

    noise = rng.normal(size=(2, 60, 70))
    return (255 * (gaussian_filter(noise, (0, 3, 3)) > 0)).astype(np.uint8)
