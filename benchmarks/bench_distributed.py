"""Benchmark Dask prediction (issue 6): a local cluster of 1 and 2 workers vs one process.

Predicts the same synthetic N x N uint8 TIFF (features=16, probabilities as uint8) with
`segment_file` in this process and with `predict_files(..., cluster=...)` on a local cluster of
1 and 2 worker processes (torch threads per worker = cores / workers), and prints the
throughput of each, the ratio to the single process, the peak RSS of every worker,
and whether the outputs are identical. On a 2-core machine no speed-up is expected:
the figures show what the cluster costs. The last line is one JSON object.

    python benchmarks/bench_distributed.py [--quick] [--size 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_predict import synthetic_tiff  # noqa: E402

from biounet.inference.dask import DaskCluster, start_client  # noqa: E402
from biounet.inference.files import predict_files, segment_file  # noqa: E402
from biounet.limits import threads_per_worker  # noqa: E402
from biounet.network.unet import UNet, UNetConfig  # noqa: E402
from biounet.options import OutputOptions, TileOptions  # noqa: E402


def worker_peak_rss(client) -> list[float]:
    """Peak RSS of each worker process in GiB."""
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return [round(kib / 2**20, 3) for kib in peaks.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2048 px (under two minutes)")
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    size = 2048 if args.quick else args.size
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dist-"))
    work.mkdir(parents=True, exist_ok=True)
    image = work / f"synthetic_{size}.tif"
    if not image.exists():
        synthetic_tiff(image, size)
    torch.manual_seed(0)
    model = UNet(UNetConfig(features=16)).eval()
    tiles = TileOptions()
    output = OutputOptions(kind="probabilities", dtype="uint8")
    pixels = size * size / 1e6

    t = time.perf_counter()
    segment_file(image, work / "single.tif", model, tiles=tiles, output=output, overwrite=True)
    single = time.perf_counter() - t
    print(
        f"{size}x{size}, one process ({torch.get_num_threads()} threads): {single:.1f} s, "
        f"{pixels / single:.3f} MP/s"
    )
    results = {
        "size": size,
        "single_s": round(single, 2),
        "single_mp_per_s": round(pixels / single, 4),
    }
    reference = tifffile.imread(work / "single.tif")
    for workers in (1, 2):
        client, cluster = start_client(workers=workers)
        try:
            client.run(lambda: None)  # workers are up
            t = time.perf_counter()
            cluster_stream = DaskCluster(client, None, "cpu", threads_per_worker(workers))
            for _ in predict_files(
                [image],
                work / f"dask{workers}.tif",
                model,
                tiles=tiles,
                output=output,
                overwrite=True,
                cluster=cluster_stream,
            ):
                pass
            seconds = time.perf_counter() - t
            rss = worker_peak_rss(client)
        finally:
            client.close()
            cluster.close()
        result = tifffile.imread(work / f"dask{workers}.tif")
        differ = int(np.count_nonzero(reference != result))
        same = differ == 0
        max_diff = int(np.abs(reference.astype(np.int32) - result).max())
        # float32 sums depend on the torch thread count: with fewer threads per
        # worker than the single process, a few uint8 levels may round the other way
        print(
            f"local cluster, {workers} worker(s) x {threads_per_worker(workers)} torch thread(s): "
            f"{seconds:.1f} s, {pixels / seconds:.3f} MP/s, {seconds / single:.2f}x the "
            f"single-process time; worker peak RSS {rss} GiB; identical output: {same}"
            + ("" if same else f" ({differ} pixels differ, by at most {max_diff} uint8 level)")
        )
        results.update(
            {
                f"workers{workers}_s": round(seconds, 2),
                f"workers{workers}_mp_per_s": round(pixels / seconds, 4),
                f"workers{workers}_time_ratio": round(seconds / single, 4),
                f"workers{workers}_peak_rss_gib": rss,
                f"workers{workers}_identical": same,
                f"workers{workers}_pixels_differing": differ,
                f"workers{workers}_max_abs_diff": max_diff,
            }
        )
    results["cores"] = os.cpu_count()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
