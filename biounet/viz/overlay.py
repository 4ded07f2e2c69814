"""A small overlay PNG of a segmentation result, for a quick look (`biounet predict --preview`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from biounet.io.atomic import atomic_output
from biounet.io.read import open_image

#: Longest side of the preview in pixels; larger images are subsampled.
PREVIEW_SIZE = 1024


def _first_plane(path: Path, step: int) -> np.ndarray:
    with open_image(path) as src:
        h, w = src.height, src.width
        block = (
            src.read(0, slice(0, h), slice(0, w))
            if step == 1
            else np.stack(
                [
                    src.read(0, slice(y, y + 1), slice(0, w))[:, 0, ::step]
                    for y in range(0, h, step)
                ],
                axis=1,
            )
        )
    return block


def render_overlay(
    image_path: str | Path,
    result_path: str | Path,
    png_path: str | Path,
    *,
    kind: str,
    overwrite: bool = False,
) -> Path:
    """Write the first plane of an image with its result overlaid, as a PNG.

    Parameters
    ----------
    image_path : path of the input TIFF
    result_path : path of the result TIFF (labels, mask or probabilities)
    png_path : destination
    kind : {'labels', 'mask', 'probabilities'}
    overwrite : bool
        Replace an existing `png_path` (never the image or the result).

    Returns
    -------
    Path of the written PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    with open_image(image_path) as src:
        step = max(1, -(-max(src.height, src.width) // PREVIEW_SIZE))
    image = _first_plane(Path(image_path), step)[0].astype(np.float64)
    lo, hi = np.percentile(image, (0.5, 99.5))
    grey = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
    result = _first_plane(Path(result_path), step)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), constrained_layout=True)
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title(Path(image_path).name)
    if kind == "labels":
        lab = result[0].astype(np.int64)
        overlay = label2rgb(lab, grey, alpha=0.35, bg_label=0)
        overlay[find_boundaries(lab, mode="inner")] = (1.0, 1.0, 0.0)
        axes[1].imshow(overlay)
        axes[1].set_title(f"{Path(result_path).name}: {len(np.unique(lab)) - 1} objects")
    else:
        axes[1].imshow(grey, cmap="gray")
        values = result[-1] if result.shape[0] > 1 else result[0]
        im = axes[1].imshow(values, cmap="magma", alpha=0.6)
        fig.colorbar(im, ax=axes[1], shrink=0.8)
        axes[1].set_title(Path(result_path).name)
    for ax in axes:
        ax.set_axis_off()
    if step > 1:
        fig.suptitle(f"every {step}th pixel shown", fontsize=9)
    try:
        with atomic_output(png_path, overwrite=overwrite, inputs=(image_path, result_path)) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return Path(png_path)
