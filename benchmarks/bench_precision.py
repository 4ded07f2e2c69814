"""bfloat16 against float32 prediction on the CPU (``--precision bf16``).

    python benchmarks/bench_precision.py [--size 4096] [--isbi-dir ../shared/data/isbi2012]

On a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX; see
:func:`biounet.device.cpu_has_bf16`), prints from one run:

* the wall time of ``biounet predict`` (bundled model, probabilities out) on a
  synthetic N x N uint8 TIFF, float32 and bf16 alternately, twice each, and
  megapixels per second;
* the largest and mean difference of the two outputs' probabilities;
* with the ISBI data: the bundled model's pixel, Rand and warping errors on
  training slices 20-23 in both precisions (plain and ``--tta d4``), so the
  effect on the challenge's metrics is seen, not only on probabilities.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ISBI = REPO.parent / "shared" / "data" / "isbi2012"


def main(argv: list[str] | None = None) -> dict:
    from bench_predict import synthetic_tiff

    from biounet.device import cpu_has_bf16, make_runtime
    from biounet.evaluation.isbi import evaluate_isbi
    from biounet.inference.segmentation import predict
    from biounet.network.bundled import BUNDLED
    from biounet.network.unet import UNet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--isbi-dir", type=Path, default=DEFAULT_ISBI)
    args = parser.parse_args(argv)
    if not cpu_has_bf16():
        raise SystemExit("this CPU has no native bfloat16 arithmetic: nothing to compare")
    result: dict[str, object] = {"size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.tif"
        synthetic_tiff(image, args.size)
        seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(2):
            for precision in seconds:
                out = Path(tmp) / f"{precision}.tif"
                cmd = [sys.executable, "-m", "biounet", "-q", "predict", str(image), "-o", str(out),
                       "--kind", "probabilities", "--device", "cpu", "--precision", precision,
                       "--no-progress", "--overwrite"]  # fmt: skip
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                seconds[precision].append(time.perf_counter() - t)
        a, b = (tifffile.imread(Path(tmp) / f"{p}.tif").astype(np.float32) for p in seconds)
    for precision, times in seconds.items():
        best = min(times)
        result[f"{precision}_s"] = round(best, 2)
        result[f"{precision}_mp_per_s"] = round(args.size**2 / best / 1e6, 3)
    result["speedup"] = round(result["fp32_s"] / result["bf16_s"], 3)
    result["max_abs_diff"] = float(np.abs(a - b).max())
    result["mean_abs_diff"] = float(np.abs(a - b).mean())
    print(
        f"biounet predict {args.size}x{args.size}, bundled model: float32 {result['fp32_s']} s "
        f"({result['fp32_mp_per_s']} MP/s), bf16 {result['bf16_s']} s "
        f"({result['bf16_mp_per_s']} MP/s): x{result['speedup']}; probabilities differ by at "
        f"most {result['max_abs_diff']:.3g} (mean {result['mean_abs_diff']:.2g})"
    )
    volume, labels = args.isbi_dir / "train-volume.tif", args.isbi_dir / "train-labels.tif"
    if volume.is_file() and labels.is_file():
        images, truth = tifffile.imread(volume)[20:24], tifffile.imread(labels)[20:24]
        model = UNet.from_checkpoint(BUNDLED)
        for precision in ("fp32", "bf16"):
            for tta in ("none", "d4"):
                prob = predict(images, model, axes="ZYX", tta=tta,
                               runtime=make_runtime("cpu", precision))[:, 1]  # fmt: skip
                scores = evaluate_isbi(prob, truth, metrics=("pixel", "rand", "warping"),
                                       kind="probabilities")  # fmt: skip
                row = {m: round(float(scores[m]), 6) for m in
                       ("rand_error", "warping_error", "pixel_error")}  # fmt: skip
                result[f"isbi_{precision}_{tta}"] = row
                print(f"ISBI slices 20-23, {precision}, tta {tta}: {row}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
