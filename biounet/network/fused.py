"""The U-Net's inference pass with every convolution fused with its ReLU (CPU, float32).

PyTorch runs a convolution and the ReLU after it as two passes over the
feature map; oneDNN can apply the ReLU as a post-operation of the
convolution while the output is still in cache. :func:`fused_forward` is
:meth:`UNet.forward <biounet.network.unet.UNet.forward>` in inference
(dropout off) with the 3x3 convolutions and the up-convolutions fused with
their ReLU through the oneDNN operators that PyTorch's own compiler emits
(``torch.ops.mkldnn._convolution_pointwise`` and its transposed twin). Same
arithmetic, same result: the ReLU is exact; the tests compare the two
within 1e-6, and on the host of docs/performance.md they agree bit for bit
and the fused pass is faster (measured there).

:func:`can_fuse` says when it applies: CPU float32 tensors, no autocast, a
PyTorch built with oneDNN that has the operators (and passes a one-off
check against the plain forward pass); otherwise callers use the module.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from biounet.network import shapes
from biounet.network.unet import UNet, center_crop


@functools.cache
def _mkldnn_ops():
    """The two fused operators, or None where this PyTorch lacks them."""
    if not torch.backends.mkldnn.is_available():
        return None
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return ops._convolution_pointwise, ops._convolution_transpose_pointwise
    except (AttributeError, RuntimeError):
        return None


def _conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    pointwise, _ = _mkldnn_ops()
    return pointwise(
        x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, 1,
        "relu", [None], None,
    )  # fmt: skip


def _upconv(up: nn.ConvTranspose2d, x: torch.Tensor, relu: bool) -> torch.Tensor:
    if not relu:
        return up(x)
    _, transpose = _mkldnn_ops()
    return transpose(
        x, up.weight, up.bias, up.padding, up.output_padding, up.stride, up.dilation, 1,
        "relu", [None], None,
    )  # fmt: skip


def _double_conv(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Conv-ReLU-Conv-ReLU (dropout is the identity in inference)."""
    convs = [m for m in block if isinstance(m, nn.Conv2d)]
    for conv in convs:
        x = _conv_relu(conv, x)
    return x


@torch.inference_mode()
def fused_forward(net: UNet, x: torch.Tensor) -> torch.Tensor:
    """Class scores of `net` for `x`, as ``net.eval()(x)`` gives them, with fused ReLUs.

    Parameters
    ----------
    net : UNet
        Any configuration (padding, flavour, depth, ``upconv_relu``); its
        dropout is skipped, as in ``eval()``.
    x : Tensor of shape (N, C, H, W)
        float32 on the CPU, H and W valid input sizes.

    Returns
    -------
    Tensor of shape (N, K, H', W')
    """
    cfg = net.config
    for size in x.shape[-2:]:
        shapes.trace(size, depth=cfg.depth, padding=cfg.padding)
    skips = []
    for block in net.down:
        x = _double_conv(block, x)
        skips.append(x)
        x = net.pool(x)
    x = _double_conv(net.bottom, x)
    for level in reversed(range(cfg.depth)):
        x = _upconv(net.up[level], x, cfg.upconv_relu)
        skip = center_crop(skips[level], (x.shape[-2], x.shape[-1]))
        x = _double_conv(net.dec[level], torch.cat([x, skip], dim=1))
    return net.head(x)


@functools.cache
def fusion_works() -> bool:
    """Whether the fused operators exist here and agree with the plain forward pass.

    Checked once per process on a small network, so that a PyTorch whose
    private operators changed falls back to the plain pass instead of
    giving other numbers.
    """
    if _mkldnn_ops() is None:
        return False
    from biounet.network.unet import UNetConfig

    gen = torch.Generator().manual_seed(0)
    net = UNet(UNetConfig(features=2, depth=2)).eval()
    x = torch.rand(1, 1, 44, 44, generator=gen).contiguous(memory_format=torch.channels_last)
    net = net.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            return bool(torch.allclose(fused_forward(net, x), net(x), rtol=1e-5, atol=1e-6))
    except (RuntimeError, TypeError):
        return False


def can_fuse(device: torch.device, dtype: torch.dtype, amp_dtype: torch.dtype | None) -> bool:
    """Whether :func:`fused_forward` serves a forward pass with these settings."""
    return device.type == "cpu" and dtype == torch.float32 and amp_dtype is None and fusion_works()
