"""Figures for checking training data: the weight map (cf. the paper's Fig. 3) and augmentation.

matplotlib is imported inside the functions (Agg backend), so importing
this module is cheap. Figures are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biounet.io.atomic import atomic_output
from biounet.training.borders import separation_borders

__all__ = ["weight_map_figure", "augment_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _instance_colours(instances: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB image: each object a random colour, background black."""
    rng = np.random.default_rng(seed)
    top = int(instances.max())
    palette = rng.uniform(0.25, 1.0, (top + 1, 3))
    palette[0] = 0.0
    return palette[instances]


def _grey(image: np.ndarray) -> np.ndarray:
    """(C, M, N) or (M, N) image as one displayable plane (first channel)."""
    plane = np.asarray(image)
    return plane[0] if plane.ndim == 3 else plane


def weight_map_figure(
    path: str | Path,
    instances: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    *,
    image: np.ndarray | None = None,
    crop: tuple[slice, slice] | None = None,
    title: str = "",
    dpi: int = 80,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write a four-panel figure like Fig. 3 of the paper.

    Panels: (a) the raw image (or, without one, the labels), (b) the objects,
    each in its own colour, (c) the training target with the separation
    borders in red, (d) the weight map with a colour bar.

    Parameters
    ----------
    path : path
        PNG file to write.
    instances : ndarray of shape (M, N), int
        The objects before separation.
    classes, weights : ndarray of shape (M, N)
        The target (:class:`biounet.training.weight_map.Target`).
    image : ndarray of shape (M, N) or (C, M, N), optional
    crop : tuple of slice, optional
        Show only this region (rows, columns).
    title : str
    dpi : int
    overwrite : bool
        Replace an existing `path`.
    inputs : sequence of path
        Files the figure must not replace (the command's inputs).

    Returns
    -------
    Path
    """
    plt = _pyplot()
    region = crop if crop is not None else (slice(None), slice(None))
    inst = np.asarray(instances)[region]
    cls = np.asarray(classes)[region]
    wts = np.asarray(weights)[region]
    borders = separation_borders(np.asarray(instances))[region]

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6), constrained_layout=True)
    if image is not None:
        axes[0].imshow(_grey(image)[region], cmap="gray")
        axes[0].set_title("a  raw image")
    else:
        axes[0].imshow(inst > 0, cmap="gray")
        axes[0].set_title("a  labels")
    axes[1].imshow(_instance_colours(inst))
    axes[1].set_title(f"b  objects ({len(np.unique(inst[inst > 0]))})")
    target = np.stack([cls.astype(float)] * 3, axis=-1)
    target[borders] = (1.0, 0.1, 0.1)
    axes[2].imshow(target)
    axes[2].set_title(f"c  target, separation borders in red ({int(borders.sum())} px)")
    shown = axes[3].imshow(wts, cmap="jet")
    axes[3].set_title(f"d  weight map (max {float(wts.max()):.2f})")
    fig.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    try:
        with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def augment_figure(
    path: str | Path,
    tiles: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    title: str = "",
    dpi: int = 60,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write a grid of augmented samples: image tile, target and weights per column.

    The output region (where the target and the weights apply) is outlined
    on the image tile.

    Parameters
    ----------
    path : path
        PNG file to write.
    tiles : sequence of (image (C, s, s), target (o, o), weights (o, o))
        As returned by :func:`biounet.training.augment.random_tile`.
    title, dpi, overwrite, inputs
        As for :func:`weight_map_figure`.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    n = len(tiles)
    wmax = max(float(w.max()) for _, _, w in tiles)
    fig, axes = plt.subplots(3, n, figsize=(2.3 * n + 0.8, 7.2), squeeze=False)
    shown = None
    for k, (image, target, weights) in enumerate(tiles):
        size, out = image.shape[-1], target.shape[-1]
        h = (size - out) / 2 - 0.5
        axes[0, k].imshow(_grey(image), cmap="gray", vmin=0.0, vmax=1.0)
        axes[0, k].add_patch(
            plt.Rectangle((h, h), out, out, fill=False, edgecolor="yellow", linewidth=1)
        )
        axes[1, k].imshow(target, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        shown = axes[2, k].imshow(weights, cmap="jet", vmin=0.0, vmax=wmax)
        axes[0, k].set_title(f"sample {k + 1}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for row, name in enumerate(("input tile", "target", "weights")):
        axes[row, 0].set_ylabel(name)
    fig.subplots_adjust(left=0.03, right=0.92, top=0.9, bottom=0.02, wspace=0.05, hspace=0.08)
    cax = fig.add_axes((0.935, 0.05, 0.012, 0.25))
    fig.colorbar(shown, cax=cax)
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def folds_figure(
    path: str | Path,
    scores: dict[str, list[float]],
    *,
    paper: dict[str, float | None] | None = None,
    measure: str = "SEG",
    dpi: int = 80,
) -> Path:
    """A bar chart of a score per held-out fold, per data set, beside the paper's number.

    Parameters
    ----------
    path : path
        The PNG to write (replaced; written under a temporary name first).
    scores : dict
        Data set name -> the score of each fold, in fold order.
    paper : dict, optional
        Data set name -> the paper's number (a dashed line; None: none).
    measure : str
        The score's name, for the axis.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    paper = paper or {}
    names = list(scores)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 0.6, 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(scores[name], float)
        ax.bar(np.arange(len(values)), values, color="#4878a8", width=0.6)
        mean = float(values.mean())
        ax.axhline(mean, color="#222222", lw=1.2, label=f"mean {mean:.3f}")
        if paper.get(name) is not None:
            ax.axhline(
                paper[name], color="#c0504d", lw=1.2, ls="--", label=f"paper {paper[name]:.3f}"
            )
        for i, v in enumerate(values):
            ax.text(i, v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(np.arange(len(values)), [f"fold {i}" for i in range(len(values))])
        ax.set_ylim(0, 1.2)
        ax.set_ylabel(measure)
        ax.set_title(name, fontsize=10)
        ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    try:
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)
