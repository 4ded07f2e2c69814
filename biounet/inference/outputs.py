"""What prediction hands back: probabilities, a mask or instance labels, in memory.

The network gives class probabilities (K, h, w) per tile; an output *kind*
turns them into what the user asked for. :func:`encode` does it per tile (for
streamed files and Dask blocks); :func:`segment` does the whole journey for an
in-memory image, image in and instance labels out, as StarDist's
``predict_instances`` does. :func:`biounet.inference.files.segment_file` is the
same journey from disk to disk, tile by tile, and gives the same labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from biounet.device import Runtime
from biounet.inference.instances import InstanceOptions, label_stack
from biounet.inference.predictor import predict_planes, prepare_prediction
from biounet.inference.progress import Progress
from biounet.io.read import ImageSource
from biounet.io.units import PixelSize, stated_pixel_size
from biounet.io.write import Layout
from biounet.network.unet import UNet
from biounet.options import TTA, OutputOptions

#: Tiles are multiples of 16 pixels (TIFF tiles must be), in memory as on disk,
#: so that :func:`segment` and ``segment_file`` cut an image the same way.
TILE_UNIT = 16


def model_output(model: UNet, kind: str = "labels", **changes: object) -> OutputOptions:
    """Output options that apply `model`'s calibrated decision rule (threshold, min size).

    `changes` replace :class:`OutputOptions` fields (``dtype``, ``compression``).
    """
    rule = model.decision
    return OutputOptions(
        kind, instances=InstanceOptions(threshold=rule.threshold, min_size=rule.min_size), **changes
    )


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


def segment(
    image: Any,
    model: UNet,
    *,
    axes: str | None = None,
    output: OutputOptions | None = None,
    tta: TTA = "none",
    window: int | None = None,
    batch_size: int = 1,
    runtime: Runtime | None = None,
    progress: Progress = False,
) -> np.ndarray:
    """Segment an in-memory image: instance labels (or a mask, or probabilities).

    Parameters
    ----------
    image : array-like or ImageSource
        2D (``YX``) by default; give `axes` for stacks or channels (``"ZYX"``,
        ``"CYX"``, ``"ZCYX"``).
    model : UNet
    axes : str, optional
    output : OutputOptions, optional
        Kind, threshold, instance method, minimum size. Default: instance
        labels with the model's calibrated decision rule (:func:`model_output`).
    tta : {'none', 'd4', 'rot7'}
    window : int, optional
        Network input per tile (a valid size); default from the memory budget.
    batch_size : int
    runtime : Runtime, optional
    progress : bool or callable
        ``True`` for a tqdm bar, or ``progress(done, total)`` per tile.

    Returns
    -------
    ndarray of shape (*planes, H, W) or (*planes, H, W, K)
        Instance labels (uint16, or uint32 when there are more objects), a
        0/255 mask, or probabilities, with the image's plane axes and without
        its channel axis. Equal to what ``biounet predict`` writes.

    Examples
    --------
    >>> from biounet.network.unet import UNetConfig
    >>> net = UNet(UNetConfig(features=4))
    >>> segment(np.zeros((2, 50, 70), np.uint8), net, axes="ZYX").shape
    (2, 50, 70)
    """
    output = output or model_output(model)
    source, predictor, spec = prepare_prediction(
        image,
        model,
        axes=axes,
        tta=tta,
        runtime=runtime,
        window=window,
        batch_size=batch_size,
        unit=TILE_UNIT,
    )
    prob = predict_planes(source, predictor, spec, batch_size=batch_size, progress=progress)
    plane_shape = source.plane_shape
    if output.kind != "labels":
        planes = [encode(p, output) for p in prob]
        return np.stack(planes).reshape(*plane_shape, *planes[0].shape)
    foreground = foreground_probability(np.moveaxis(prob, 1, 0))
    labels = np.zeros(foreground.shape, np.uint32)
    seeds = np.zeros_like(labels) if output.instances.method == "watershed" else None
    tables = label_stack(foreground, labels, spec.tile, output.instances, seed_scratch=seeds)
    dtype = label_dtype(tables)
    final = np.stack(
        [table[plane].astype(dtype) for table, plane in zip(tables, labels, strict=True)]
    )
    return final.reshape(*plane_shape, source.height, source.width)
