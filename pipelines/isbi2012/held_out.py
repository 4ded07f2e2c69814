"""ISBI errors of a model on slices whose threshold was not chosen on them (leave one slice out).

    python pipelines/isbi2012/held_out.py --model biounet/network/bundled/isbi2012.pt --tta d4

``pipelines/isbi2012/run.py`` reports each error at its best threshold over
the scored slices 20-23: the threshold is chosen on the slices it scores. Here
each slice is scored alone at the threshold that is best on the *other*
slices (the mean of their per-slice errors), and the table gives the mean and
standard deviation over the held-out slices, beside the best-threshold errors
of the same slices pooled (the usual number). ``--slices`` picks the slices
(default 20-23, those the bundled model did not train on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile

from biounet.device import make_runtime
from biounet.evaluation.folds import chosen_elsewhere
from biounet.evaluation.isbi import evaluate_isbi
from biounet.inference.segmentation import predict
from biounet.network.unet import load_model

HERE = Path(__file__).resolve().parent
METRICS = {"rand": "rand_error", "warping": "warping_error", "pixel": "pixel_error"}


def held_out_table(prob: np.ndarray, truth: np.ndarray, slices: list[int]) -> dict:
    """Leave-one-slice-out errors (mean, std, per slice) and the pooled best-threshold errors.

    Parameters
    ----------
    prob : ndarray of shape (P, M, N)
        Cell probability of the slices.
    truth : ndarray of shape (P, M, N)
        Their labels (cells > 0).
    slices : list of int
        The slice numbers, for the record.
    """
    metrics = tuple(METRICS)
    per_slice = [
        evaluate_isbi(prob[z : z + 1], truth[z : z + 1], metrics=metrics, kind="probabilities")
        for z in range(len(prob))
    ]
    pooled = evaluate_isbi(prob, truth, metrics=metrics, kind="probabilities")
    out = {"slices": slices}
    for key in METRICS.values():
        errors, chosen = chosen_elsewhere(per_slice, key)
        out[key] = {
            "mean": float(np.mean(errors)),
            "std": float(np.std(errors, ddof=1)),
            "per_slice": errors,
            "thresholds": chosen,
            "pooled_best": float(pooled[key]),
        }
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared/data/isbi2012")
    parser.add_argument("--slices", default="20-23", help="first-last slice (default 20-23)")
    parser.add_argument("--tta", default="none", help="none, d4 or rot7")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    first, last = map(int, args.slices.split("-"))
    slices = list(range(first, last + 1))
    model = load_model(args.model) if args.model else load_model()
    images = tifffile.imread(args.data / "train-volume.tif")[slices]
    truth = tifffile.imread(args.data / "train-labels.tif")[slices]
    prob = predict(images, model, axes="ZYX", tta=args.tta, runtime=make_runtime("auto"))[:, 1]
    result = held_out_table(prob, truth, slices)
    lines = [
        f"slices {args.slices}, tta {args.tta}: each slice at the threshold best on the others",
        "",
        "| error | held out: mean ± std | per slice | thresholds | best threshold, pooled |",
        "|---|---|---|---|---|",
    ]
    for key in METRICS.values():
        r = result[key]
        lines.append(
            f"| {key} | {r['mean']:.5f} ± {r['std']:.5f} | "
            f"{', '.join(f'{e:.5f}' for e in r['per_slice'])} | {', '.join(r['thresholds'])} | "
            f"{r['pooled_best']:.5f} |"
        )
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
