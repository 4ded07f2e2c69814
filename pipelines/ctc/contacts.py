"""Look at one contact of cells: the frame, and each fold run's held-out probabilities.

    python pipelines/ctc/contacts.py --data ../shared/data/ctc-u373 --frame 36 \\
        --box 380 520 0 180 --run shipped=runs/f_u373 --run w0=30=runs/f_u373_w30 \\
        --out docs/figures/u373_contact_t036.png

For a gold-truth frame of a ``run.py --folds`` run, draws a crop of the
frame with the gold truth's outlines, and for every ``--run`` the fold's
out-of-fold probabilities (the fold that held the frame out, so the network
never saw it) with the same outlines, and the labels of that fold's rule.
It prints, per run, the Jaccard index of every gold-truth object in the crop
under SEG's matching (0: no predicted object covers more than half of it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import gold_truth_frames, rule_labels  # noqa: E402  (the pipeline beside this file)

from biounet.evaluation.matching import seg_per_object  # noqa: E402


def held_out(run: Path, frame: int) -> tuple[np.ndarray, dict]:
    """The out-of-fold probabilities of `frame` in a fold run, and that fold's rule."""
    results = json.loads((run / "results.json").read_text())
    entry = results[0] if isinstance(results, list) else results
    for fold in entry["folds"]:
        if frame in fold["frames"]:
            folder = sorted((run / f"fold{fold['fold']}").glob("probabilities*"))[-1]
            return tifffile.imread(folder / f"prob{frame:03d}.tif"), fold["rule"]
    raise SystemExit(f"Error: {run}: no fold holds frame {frame} out")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="CTC data set folder")
    parser.add_argument("--sequence", default="02", help="the annotated sequence (default 02)")
    parser.add_argument("--frame", type=int, required=True, help="gold-truth frame number")
    parser.add_argument(
        "--box", type=int, nargs=4, metavar=("Y0", "Y1", "X0", "X1"), help="crop (default all)"
    )
    parser.add_argument(
        "--run", action="append", required=True, metavar="NAME=FOLDER", help="a fold run"
    )
    parser.add_argument("--out", type=Path, required=True, help="figure (.png)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    frames = {t: (image, gt) for image, gt, t in gold_truth_frames(args.data, args.sequence)}
    if args.frame not in frames:
        raise SystemExit(f"Error: {args.data}: frame {args.frame} has no gold truth")
    image, truth = (tifffile.imread(p) for p in frames[args.frame])
    crop = (
        np.s_[:, :]
        if args.box is None
        else np.s_[args.box[0] : args.box[1], args.box[2] : args.box[3]]
    )
    inside = set(np.unique(truth[crop])) - {0}
    runs = [r.rpartition("=")[::2] for r in args.run]
    fig, axes = plt.subplots(
        len(runs), 3, figsize=(10.5, 3.6 * len(runs)), squeeze=False, layout="constrained"
    )
    outline = find_boundaries(truth[crop], mode="inner")
    for row, (name, folder) in zip(axes, runs, strict=True):
        prob, rule = held_out(Path(folder), args.frame)
        labels = rule_labels(prob[None], rule)[0]
        jac = seg_per_object(labels, truth)
        shown = {k: round(v, 2) for k, v in jac.items() if k in inside}
        print(f"{name}: gold-truth objects in the crop, Jaccard: {shown}")
        row[0].imshow(image[crop], cmap="gray")
        row[0].contour(outline, [0.5], colors="r", linewidths=0.6)
        row[0].set_title(f"t{args.frame:03d}, gold truth (red)")
        im = row[1].imshow(prob[crop], vmin=0, vmax=1, cmap="magma")
        row[1].contour(outline, [0.5], colors="c", linewidths=0.6)
        row[1].set_title(f"{name}: held-out probability")
        fig.colorbar(im, ax=row[1], shrink=0.8)
        row[2].imshow(labels[crop], cmap="tab20", interpolation="nearest")
        row[2].contour(outline, [0.5], colors="w", linewidths=0.6)
        row[2].set_title(f"labels; J = {', '.join(f'{v:.2f}' for v in shown.values())}")
        for ax in row:
            ax.axis("off")
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
