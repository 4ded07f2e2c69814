"""A 16k x 16k prediction to OME-Zarr: peak memory, time, and what the ome-zarr reader sees.

Writes an N x N uint8 TIFF (4 nm pixels, tile by tile), runs
``biounet predict IMAGE -o OUT.zarr`` (instance labels, the default output)
with a small untrained network in a child process, and prints the child's
peak RSS (``wait4``'s ``ru_maxrss``), its wall time, and the pyramid levels,
shapes and axis units as the ome-zarr reader (ome-zarr-py) opens them. The
network's width does not change the memory of the streaming path (tiles,
scratch stores and the pyramid are all chunked); it keeps the run to minutes.

Run: ``python benchmarks/bench_zarr_pyramid.py [--size 16384] [--features 4]``.
The machine is shared: timings are noisy; memory is the number that counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import run_measured, synthetic_tiff  # noqa: E402

from biounet.device import cpu_model  # noqa: E402
from biounet.network.checkpoint import save_checkpoint  # noqa: E402
from biounet.network.unet import UNet, UNetConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None, help="Scratch folder (default: /tmp).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        image = tmp / "big.tif"
        nm = {"PhysicalSizeX": 4.0, "PhysicalSizeY": 4.0}  # 4 nm pixels, as the EM samples
        nm |= {"PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm"}
        synthetic_tiff(image, args.size, ome=True, metadata=nm)
        torch.manual_seed(0)
        model = UNet(UNetConfig(features=args.features))
        save_checkpoint(tmp / "m.pt", model)
        out = tmp / "big.zarr"
        cmd = [sys.executable, "-m", "biounet", "-q", "predict", str(image), "-o", str(out)]
        cmd += ["--model", str(tmp / "m.pt"), "--device", "cpu", "--no-progress"]
        seconds, rss, stdout = run_measured(cmd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ome_zarr.io import parse_url
            from ome_zarr.reader import Reader

        nodes = [n for n in Reader(parse_url(str(out)))() if n.data]
        node = nodes[0]
        result = {
            "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
            "size": args.size,
            "features": args.features,
            "seconds": round(seconds, 1),
            "peak_rss_gib": round(rss, 3),
            "reader_node": type(node.specs[0]).__name__,
            "levels": [list(d.shape) for d in node.data],
            "axes": node.metadata["axes"],
            "scale0": node.metadata["coordinateTransformations"][0][0]["scale"],
            "line": stdout.strip().splitlines()[-1] if stdout.strip() else "",
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
