"""Time every ISBI metric on a realistic (30, 512, 512) stack.

The ground truth is ../shared/data/isbi2012/train-labels.tif (24 slices,
repeated to 30), or synthetic Voronoi cells when the data is absent. The
"prediction" is a perturbed cell-probability map: the labels are displaced by
a smooth random field (about 1.5 px), blurred, given smooth noise, random
membrane gaps and spurious membrane blobs, and clipped to [0, 1].

    python benchmarks/bench_metrics.py            # 30 slices
    python benchmarks/bench_metrics.py --quick    # 6 slices, well under two minutes

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from biounet.evaluation.isbi import evaluate_isbi

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ISBI = Path(os.environ.get("BIOUNET_ISBI_DIR", REPO.parent / "shared/data/isbi2012"))


def synthetic_labels(rng: np.random.Generator, slices: int, size: int) -> np.ndarray:
    """Voronoi cells (255) separated by membranes (0) about 3 px wide."""
    from skimage.segmentation import find_boundaries, watershed

    out = np.empty((slices, size, size), np.uint8)
    for z in range(slices):
        seeds = np.zeros((size, size), np.int32)
        ys, xs = rng.integers(0, size, (2, 150))
        seeds[ys, xs] = np.arange(1, 151)
        cells = watershed(np.zeros((size, size)), seeds)
        membrane = ndi.binary_dilation(find_boundaries(cells), iterations=1)
        out[z] = np.where(membrane, 0, 255)
    return out


def perturbed_probability(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cell-probability map that looks like a decent, imperfect prediction."""
    out = np.empty(labels.shape, np.float32)
    rows, cols = labels.shape[1:]
    grid = np.mgrid[0:rows, 0:cols].astype(np.float64)
    for z, lab in enumerate(labels):
        cell = (lab > 0).astype(np.float64)
        shift = [ndi.gaussian_filter(rng.normal(0, 1, (rows, cols)), 16) * 60 for _ in range(2)]
        cell = ndi.map_coordinates(cell, grid + np.stack(shift), order=1, mode="reflect")
        cell = ndi.gaussian_filter(cell, 1.2)
        cell += ndi.gaussian_filter(rng.normal(0, 1, (rows, cols)), 2) * 0.25
        gaps = ndi.gaussian_filter(rng.random((rows, cols)), 3) > 0.56
        cell[gaps] = np.maximum(cell[gaps], 0.55)  # membranes fade
        blobs = ndi.gaussian_filter(rng.random((rows, cols)), 3) > 0.565
        cell[blobs] = np.minimum(cell[blobs], 0.35)  # spurious membrane
        out[z] = np.clip(cell, 0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 slices instead of 30")
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--isbi-dir", type=Path, default=DEFAULT_ISBI)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    slices = args.slices or (6 if args.quick else 30)
    rng = np.random.default_rng(args.seed)

    source = args.isbi_dir / "train-labels.tif"
    if source.is_file():
        import tifffile

        labels = tifffile.imread(source)
        labels = np.concatenate([labels] * (-(-slices // len(labels))))[:slices]
        data = f"ISBI 2012 train-labels ({source}), repeated to {slices} slices"
    else:
        labels = synthetic_labels(rng, slices, 512)
        data = f"synthetic Voronoi cells ({source} not found)"
    t0 = time.perf_counter()
    prob = perturbed_probability(labels, rng)
    print(f"data: {data}; shape {labels.shape}; perturbed map in {time.perf_counter() - t0:.1f} s")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")

    figures: dict = {"slices": slices, "shape": list(labels.shape)}
    groups = [
        ("pixel", ["pixel"]),
        ("rand", ["rand"]),
        ("vrand_vinfo", ["vrand", "vinfo"]),
        ("warping", ["warping"]),
        ("seg", ["seg"]),
    ]
    size = f"{slices}x{labels.shape[1]}"
    total = 0.0
    print(f"{'metric':<22}{'value':>12}{'threshold':>11}{'seconds':>10}")
    for name, metrics in groups:
        t0 = time.perf_counter()
        result = evaluate_isbi(prob, labels, metrics=metrics)
        seconds = time.perf_counter() - t0
        total += seconds
        figures[f"{name}_s_{size}" if name == "warping" else f"{name}_s"] = round(seconds, 2)
        keys = [k for k in result if k not in ("threshold", "per_threshold", "details")]
        if name == "warping":
            keys.append("warping_error_classic")
        for i, key in enumerate(keys):
            value = result[key] if key in result else result["details"][key]
            level = result["threshold"][key]
            figures[key] = value
            shown = f"{seconds:10.1f}" if i == 0 else ""
            print(f"{key:<22}{value:>12.6f}{level:>11.1f}{shown}")
    figures["total_s"] = round(total, 2)
    print(f"total {total:.1f} s for {slices} slices ({total / slices:.2f} s per slice)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
