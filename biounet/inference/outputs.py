"""Output kinds: what class probabilities become (probabilities, a mask, instance labels).

The network gives class probabilities (K, h, w) per tile; an output *kind*
turns them into what the user asked for: :func:`encode` per tile for masks
and probabilities, :func:`foreground_probability` for instance labelling
(:mod:`biounet.inference.instances`). :func:`model_output` makes the options
that apply a model's own decision rule, the default of every entry point
(:mod:`biounet.inference.segmentation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from biounet.io.read import ImageSource
from biounet.io.units import PixelSize, stated_pixel_size
from biounet.io.write import Layout
from biounet.network.unet import UNet
from biounet.options import OutputOptions

#: Tiles are multiples of 16 pixels (TIFF tiles must be), in memory as on disk,
#: so that every entry point cuts an image the same way.
TILE_UNIT = 16


def model_output(
    model: UNet, kind: str = "labels", *, instances: dict | None = None, **changes: Any
) -> OutputOptions:
    """Output options that apply `model`'s decision rule, with the user's overrides.

    Parameters
    ----------
    model : UNet
    kind : {'labels', 'mask', 'probabilities'}
    instances : dict, optional
        :class:`~biounet.options.InstanceOptions` fields that replace the
        rule's (``threshold``, ``min_size``, ``method``, ...); a value of
        None keeps the rule's.
    **changes
        Other :class:`OutputOptions` fields (``dtype``, ``compression``).

    Examples
    --------
    >>> from biounet.network.decision import DecisionRule
    >>> from biounet.network.unet import UNetConfig
    >>> net = UNet(UNetConfig(features=4), decision=DecisionRule(0.25, 10))
    >>> model_output(net, instances={"min_size": None, "threshold": 0.3}).instances.threshold
    0.3
    """
    return OutputOptions(kind, instances=model.decision.instances(**(instances or {})), **changes)


def foreground_probability(p: np.ndarray) -> np.ndarray:
    """Foreground probability (..., h, w) from class probabilities (K, ..., h, w).

    With two classes it is class 1; with more, everything but class 0.
    """
    return p[1] if p.shape[0] == 2 else 1.0 - p[0]


def encode(p: np.ndarray, options: OutputOptions) -> np.ndarray:
    """Turn class probabilities (K, h, w) into a ``mask`` or ``probabilities`` tile (h, w[, C]).

    Examples
    --------
    >>> p = np.array([[[0.8, 0.3]], [[0.2, 0.7]]])
    >>> encode(p, OutputOptions("mask")).tolist()
    [[0, 255]]
    >>> encode(p, OutputOptions("probabilities", "uint8")).tolist()
    [[51, 178]]
    """
    if options.kind == "mask":
        if p.shape[0] == 2:
            return np.where(p[1] > options.instances.threshold, 255, 0).astype(np.uint8)
        return np.argmax(p, axis=0).astype(np.uint8)
    if options.kind != "probabilities":
        raise ValueError(f"encode() makes masks and probabilities, not {options.kind!r}")
    values = p[1] if p.shape[0] == 2 else np.moveaxis(p, 0, -1)
    if options.dtype == "float32":
        return values.astype(np.float32)
    scale = np.iinfo(options.dtype).max
    return np.round(values * scale).astype(options.dtype)


def plane_layout(
    source: ImageSource,
    channels: int,
    dtype: Any,
    kind: str = "image",
    pixel_size: PixelSize | None = None,
) -> Layout:
    """Layout of an output with the planes, size and pixel size of `source`.

    A `pixel_size` (``--pixel-size``) replaces the source's X and Y size
    (:func:`biounet.io.units.stated_pixel_size`).
    """
    return Layout(
        source.plane_shape,
        source.plane_axes,
        source.height,
        source.width,
        channels,
        np.dtype(dtype),
        stated_pixel_size(source.pixel_size, pixel_size),
        kind,
    )


def output_layout(source: ImageSource, n_classes: int, output: OutputOptions) -> Layout:
    """Layout of the written result: one channel, or all K class probabilities."""
    channels = 1 if output.kind != "probabilities" or n_classes == 2 else n_classes
    dtype = np.uint8 if output.kind == "mask" else np.dtype(output.dtype)
    if output.kind == "labels":
        dtype = np.dtype(np.uint32)  # narrowed to uint16 when the labels fit
    kind = "classes" if output.kind == "mask" and n_classes > 2 else output.kind
    return plane_layout(source, channels, dtype, kind, output.pixel_size)


def label_dtype(tables: list[np.ndarray]) -> type:
    """uint16 when every final label fits, else uint32."""
    return np.uint16 if max(int(t.max()) for t in tables) < 2**16 else np.uint32
