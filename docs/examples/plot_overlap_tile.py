"""Overlap-tile prediction, seen: the tile grid, and seam-free vs naively tiled output.

Writes docs/figures/overlap_tile.png from a real image (an ISBI 2012 test slice when
the data is at ../shared/data/isbi2012, else the bundled sample) and the bundled
model:

    python docs/examples/plot_overlap_tile.py [--image FILE] [--model CKPT]

Left: the image with biounet's tile grid (kept output tiles, one tile's input window
reaching 92 px into its neighbours and into the mirrored border). Middle: biounet's
tiled prediction, identical to a whole-image prediction. Right: the same network
applied naively to non-overlapping tiles, each mirrored at its own borders as if it
were a whole image, and the difference to the seamless result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from biounet.inference.predictor import predict_whole  # noqa: E402
from biounet.inference.segmentation import predict
from biounet.inference.tiling import tile_grid, tile_spec  # noqa: E402
from biounet.network.bundled import default_model_path  # noqa: E402
from biounet.network.unet import UNet  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs/figures/overlap_tile.png")
    args = parser.parse_args()
    isbi = REPO.parent / "shared/data/isbi2012/test-volume.tif"
    if args.image:
        image = tifffile.imread(args.image)
    elif isbi.exists():
        image = tifffile.imread(isbi, key=5)
    else:
        image = tifffile.imread(REPO / "sample_data/em_synthetic.tif")
    image = image[:512, :512]
    model = UNet.from_checkpoint(args.model or default_model_path())
    window = 380  # small tiles so that the grid is visible: 192 px kept per tile
    spec = tile_spec(window).fit(*image.shape)
    ours = predict(image, model, window=window)[0, 1]
    whole = predict_whole(image[None], model)[1]
    naive = np.zeros_like(ours)
    t = spec.tile[0]
    for y in range(0, image.shape[0], t):
        for x in range(0, image.shape[1], t):
            naive[y : y + t, x : x + t] = predict(image[y : y + t, x : x + t], model)[0, 1]
    diff = np.abs(naive - ours)
    fig, ax = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
    ax[0].imshow(image, cmap="gray")
    for tile in tile_grid(image.shape, spec):
        ax[0].add_patch(
            Rectangle(
                (tile.cols.start - 0.5, tile.rows.start - 0.5),
                tile.cols.stop - tile.cols.start,
                tile.rows.stop - tile.rows.start,
                fill=False,
                ec="yellow",
                lw=1,
            )
        )
    chosen = tile_grid(image.shape, spec)[1]
    ax[0].add_patch(
        Rectangle(
            (chosen.origin[1] - 0.5, chosen.origin[0] - 0.5),
            window,
            window,
            fill=False,
            ec="cyan",
            lw=2,
            ls="--",
        )
    )
    ax[0].set_xlim(-100, image.shape[1] + 100)
    ax[0].set_ylim(image.shape[0] + 100, -100)
    ax[0].set_title(
        f"{spec.tile[0]} px output tiles (yellow); one {window} px input window "
        f"(cyan)\nreaching {spec.context} px into neighbours and the mirrored border",
        fontsize=9,
    )
    ax[1].imshow(ours, cmap="magma", vmin=0, vmax=1)
    ax[1].set_title(
        f"biounet, tiled: cell probability\nmax |tiled - whole image| = "
        f"{np.abs(ours - whole).max():.1e}",
        fontsize=9,
    )
    ax[2].imshow(diff, cmap="inferno", vmin=0, vmax=1)
    ax[2].set_title(
        f"naive non-overlapping tiles: |naive - seamless|\nmax {diff.max():.2f}, "
        f"mean {diff.mean():.3f}; the seams follow the tile borders",
        fontsize=9,
    )
    for a in ax:
        a.set_axis_off()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70, bbox_inches="tight", pad_inches=0.15)
    print(
        f"{args.out}: tiled vs whole {np.abs(ours - whole).max():.2e}, "
        f"naive vs seamless max {diff.max():.3f} mean {diff.mean():.4f}"
    )


if __name__ == "__main__":
    main()
