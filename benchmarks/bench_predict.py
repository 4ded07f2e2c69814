"""Benchmark `biounet predict` on large synthetic TIFFs (issue 3).

Prints, from one run on one machine:

- megapixels per second of `biounet predict` on an N x N uint8 TIFF, and the ratio
  to the network alone on the same tiles (forward passes of the module on random
  tensors of the tile size; above 1 when the pipeline's fused pass beats it), and to
  the pipeline's own forward pass alone: what tiling, reading, stitching and writing
  cost (paired tile by tile, in the first run); and, as ``ratio_vs_network_warm``,
  unpaired: the network's best pass times the tiles over the best warm pipeline run;
- the achieved GFLOP/s against a float32 matrix multiply measured in the same run;
- peak RSS of the whole `biounet predict` process for N^2 and (2N)^2 images;
- MONAI's sliding_window_inference (roi 512, overlap 0.25, gaussian blending) with a
  zero-padded U-Net of the same width on the same image: `monai_ratio` is MONAI's
  time over biounet's (above 1: biounet is faster), and MONAI's peak RSS; measured
  in this process (which has biounet's malloc settings, so MONAI gains from them
  too) and, as ``monai_own_process_ratio``, in a process of MONAI's own (glibc's
  default malloc; warm, as biounet's is: the best of two runs after a first, cold one,
  whose seconds are ``monai_own_process_cold_seconds``);
- for both, the largest deviation from the network applied to the whole image at
  once (measured on a crop that fits in memory);
- the seconds of the in-process pipeline with the fused pass and the look-ahead
  thread each on and off;
- useful megapixels per second of one forward pass per window size (``--windows``)
  and precision (fp32, and bf16 where the CPU has AVX512-BF16 or AMX).

The last line is one JSON object. `--quick` uses 2048/4096 px images (under two
minutes). Run: `python benchmarks/bench_predict.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet.inference.predictor import Predictor, plan_tiles, predict_whole
from biounet.inference.segmentation import predict
from biounet.network.checkpoint import save_checkpoint
from biounet.network.fused import fusion_works
from biounet.network.summary import forward_flops
from biounet.network.unet import UNet, UNetConfig


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 matrix-multiply rate of this process (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def synthetic_tiff(path: Path, size: int, seed: int = 0, **imwrite) -> None:
    """A cell-like uint8 image written tile by tile (never whole in memory).

    `imwrite` goes to ``tifffile.imwrite`` (e.g. ``ome=True, metadata=...``).
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.random((1024 + 64, 1024 + 64)), 6)
    base = ((base - base.min()) / np.ptp(base) * 255).astype(np.uint8)

    def tiles():
        for _ in range((size // 512) ** 2):
            oy, ox = rng.integers(0, 512, 2)
            yield base[oy : oy + 512, ox : ox + 512]

    tifffile.imwrite(
        path,
        tiles(),
        shape=(size, size),
        dtype=np.uint8,
        tile=(512, 512),
        bigtiff=size * size > 2**31,
        **imwrite,
    )


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; return wall seconds, its peak RSS in GiB, and its stdout."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err}")
    return seconds, usage.ru_maxrss / 2**20, out  # ru_maxrss is in KiB on Linux


def biounet_predict(image: Path, model: Path, out: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "biounet",
        "-q",
        "predict",
        str(image),
        "-o",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--no-progress",
        "--overwrite",
        *extra,
    ]
    seconds, rss, stdout = run_measured(cmd)
    m = re.search(r"(\d+) tiles of (\d+)x(\d+) in", stdout)
    return {
        "seconds": seconds,
        "rss_gib": rss,
        "tiles": int(m.group(1)),
        "window": (int(m.group(2)), int(m.group(3))),
        "line": stdout.strip(),
    }


class PairedPredictor(Predictor):
    """The real predictor, followed after every batch by the reference measurements.

    After each batch it runs the network on a random tensor of the same shape
    (the "network alone": the module as PyTorch runs it), the predictor's own
    forward pass on it (with fused ReLUs on the CPU,
    :mod:`biounet.network.fused`) and a fixed float32 matrix multiply, each
    timed on its own and excluded from the pipeline's time. Pairing them tile by tile makes
    the ratios robust to other load on the machine.
    """

    gemm_n = 1024

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.net_seconds = 0.0
        self.own_seconds = 0.0
        self.gemm_seconds = 0.0
        self.gemm_flops = 0.0
        self.extra_seconds = 0.0
        self._a = torch.randn(self.gemm_n, self.gemm_n)

    def __call__(self, windows):
        out = super().__call__(windows)
        t0 = time.perf_counter()
        x = self.runtime.tensor(torch.rand(windows.shape))
        with torch.inference_mode():
            t = time.perf_counter()
            torch.softmax(self.model(x), 1)
            self.net_seconds += time.perf_counter() - t
            t = time.perf_counter()
            torch.softmax(self.forward(x), 1)  # the pass the pipeline runs (fused ReLUs)
            self.own_seconds += time.perf_counter() - t
            t = time.perf_counter()
            self._a @ self._a
            self.gemm_seconds += time.perf_counter() - t
        self.gemm_flops += 2 * self.gemm_n**3
        self.extra_seconds += time.perf_counter() - t0
        return out


def paired_run(image: Path, model: UNet, out: Path, window: int | None, batch: int) -> dict:
    """Run segment_file in this process with PairedPredictor; return the paired timings."""
    import biounet.inference.files as files
    import biounet.inference.segmentation as seg

    made = []

    class Recorder(PairedPredictor):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    original = seg.Predictor
    seg.Predictor = Recorder
    try:
        t = time.perf_counter()
        summary = files.segment_file(
            image,
            out,
            model,
            tiles=seg.TileOptions(window=window, batch_size=batch),
            output=seg.OutputOptions(kind="probabilities", dtype="uint8"),
            overwrite=True,
        )
        wall = time.perf_counter() - t
    finally:
        seg.Predictor = original
    p = made[0]
    return {
        "pipeline_seconds": wall - p.extra_seconds,
        "net_seconds": p.net_seconds,
        "own_seconds": p.own_seconds,
        "gemm_gflops": p.gemm_flops / p.gemm_seconds / 1e9,
        "tiles": summary.tiles,
        "window": summary.window,
    }


def network_seconds(model: UNet, window: tuple[int, int], tiles: int, repeats: int = 2) -> float:
    """`tiles` forward passes of the plain module (and softmax) on one window: best of `repeats`."""
    x = torch.rand(1, 1, *window).contiguous(memory_format=torch.channels_last)
    net = model.eval().to(memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode():
        torch.softmax(net(x), 1)
        for _ in range(repeats):
            t = time.perf_counter()
            torch.softmax(net(x), 1)
            best = min(best, time.perf_counter() - t)
    return best * tiles


def monai_seconds(image: Path, padded: UNet) -> float:
    """Wall seconds of MONAI's sliding window over `image`, in this process."""
    from monai.inferers import sliding_window_inference

    net = padded.eval().to(memory_format=torch.channels_last)
    t = time.perf_counter()
    x = torch.from_numpy(tifffile.imread(image)).float().div_(255)[None, None]
    with torch.inference_mode():
        sliding_window_inference(
            x,
            (512, 512),
            1,
            lambda b: torch.softmax(net(b.contiguous(memory_format=torch.channels_last)), 1),
            overlap=0.25,
            mode="gaussian",
        )
    return time.perf_counter() - t


def ours_seconds(image: Path, model: UNet, out: Path, window: int | None, batch: int) -> float:
    """Wall seconds of segment_file (read, predict, write) in this process."""
    from biounet.inference.files import segment_file
    from biounet.options import OutputOptions, TileOptions

    t = time.perf_counter()
    segment_file(
        image,
        out,
        model,
        tiles=TileOptions(window=window, batch_size=batch),
        output=OutputOptions(kind="probabilities", dtype="uint8"),
        overwrite=True,
    )
    return time.perf_counter() - t


MONAI_CHILD = r"""
import sys, time, json, numpy as np, tifffile, torch
from monai.inferers import sliding_window_inference
from biounet.network.unet import UNet
net = UNet.from_checkpoint(sys.argv[2]).eval().to(memory_format=torch.channels_last)
img = tifffile.imread(sys.argv[1])
times = []
for _ in range(3):  # the first is cold (oneDNN builds its kernels); best of the other two
    t = time.perf_counter()
    x = torch.from_numpy(img).float().div_(255)[None, None]
    with torch.inference_mode():
        out = sliding_window_inference(x, (512, 512), 1, lambda b: torch.softmax(
            net(b.contiguous(memory_format=torch.channels_last)), 1), overlap=0.25,
            mode="gaussian")
    times.append(time.perf_counter() - t)
print(json.dumps({"seconds": min(times[1:]), "cold_seconds": times[0],
                  "shape": list(out.shape)}))
"""


def monai_run(image: Path, padded_model: Path) -> dict:
    seconds, rss, stdout = run_measured(
        [sys.executable, "-c", MONAI_CHILD, str(image), str(padded_model)]
    )
    return {"wall_seconds": seconds, "rss_gib": rss, **json.loads(stdout)}


def deviations(model: UNet, padded: UNet, size: int, window: int) -> dict:
    """Largest deviation of each tiled method from its own whole-image prediction."""
    rng = np.random.default_rng(1)
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(rng.random((size, size)), 6)
    img = ((img - img.min()) / np.ptp(img) * 255).astype(np.uint8)
    ours = predict(img, model, window=window)[0]
    ours_whole = predict_whole(img[None], model)
    result = {"ours": float(np.abs(ours - ours_whole).max())}
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return result
    x = torch.from_numpy(img).float().div(255)[None, None]
    with torch.inference_mode():

        def net(b):
            return torch.softmax(padded(b), 1)

        tiled = sliding_window_inference(x, (512, 512), 1, net, overlap=0.25, mode="gaussian")
        whole = net(x)
    result["monai"] = float((tiled - whole).abs().max())
    return result


def ablation(image: Path, model: UNet, out: Path, rounds: int = 2) -> dict:
    """segment_file's seconds with the fused pass and the look-ahead each on and off.

    Interleaved rounds; the best of each setting counts. The two switches are
    module attributes (``predictor.can_fuse``, ``segmentation.LOOK_AHEAD``),
    set here for the measurement only.
    """
    import biounet.inference.predictor as pred
    import biounet.inference.segmentation as seg

    fuse, depth = pred.can_fuse, seg.LOOK_AHEAD
    settings = {
        "plain": (False, 0),
        "fused": (True, 0),
        "ahead": (False, 1),
        "fused+ahead": (True, 1),
    }
    best = {k: float("inf") for k in settings}
    try:
        for _ in range(rounds):
            for name, (fused, ahead) in settings.items():
                pred.can_fuse = fuse if fused else (lambda *a: False)
                seg.LOOK_AHEAD = ahead
                best[name] = min(best[name], ours_seconds(image, model, out, None, 1))
    finally:
        pred.can_fuse, seg.LOOK_AHEAD = fuse, depth
    for name, t in best.items():
        print(f"  {name:12s}: {t:.2f} s ({best['plain'] / t:.3f}x plain)")
    return {k: round(v, 3) for k, v in best.items()}


def window_sweep(model: UNet, windows: list[int], repeats: int = 2) -> list[dict]:
    """Useful megapixels per second of one forward pass per window size and precision.

    The predictor (as the pipeline builds it) on a cell-like window, best of
    `repeats` after a warm-up pass; bf16 only where the CPU has native
    bfloat16 arithmetic. Useful pixels are the output tile's.
    """
    from scipy import ndimage as ndi

    from biounet.device import cpu_has_bf16, make_runtime

    rng = np.random.default_rng(2)
    rows = []
    for precision in ("fp32", "bf16") if cpu_has_bf16() else ("fp32",):
        predictor = Predictor(model, make_runtime("cpu", precision))
        for w in windows:
            img = ndi.gaussian_filter(rng.random((w, w)), 6)
            img = ((img - img.min()) / np.ptp(img) * 255).astype(np.uint8)[None, None]
            out = predictor(img)  # warm-up: oneDNN builds its kernels for the shape
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                predictor(img)
                best = min(best, time.perf_counter() - t)
            useful = out.shape[-2] * out.shape[-1]
            rows.append(
                {"precision": precision, "window": w, "tile": out.shape[-1],
                 "seconds": round(best, 4), "useful_mp_per_s": round(useful / best / 1e6, 4)}
            )  # fmt: skip
            print(
                f"  {precision} window {w} (tile {out.shape[-1]}): {best:.3f} s per pass, "
                f"{useful / best / 1e6:.3f} useful MP/s"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2048/4096 px, under two minutes")
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--tile-size", type=int, help="window (default: biounet's choice)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--no-monai", action="store_true")
    parser.add_argument(
        "--windows",
        default="700,1084,1212,1324",
        help="window sizes of the per-window, per-precision sweep ('' to skip)",
    )
    parser.add_argument("--workdir", type=Path, help="where the synthetic TIFFs go")
    args = parser.parse_args()
    size = 2048 if args.quick else args.size
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = UNet(UNetConfig(features=args.features))
    padded = UNet(UNetConfig(features=args.features, padding="same"))
    save_checkpoint(work / "valid.pt", model)
    save_checkpoint(work / "same.pt", padded)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )

    gemm = gemm_gflops()
    print(f"float32 matrix multiply (2048, best of 5): {gemm:.1f} GFLOP/s")

    paths = {}
    for n in (size, 2 * size):
        paths[n] = work / f"synthetic_{n}.tif"
        if not paths[n].exists():
            synthetic_tiff(paths[n], n)
    # oneDNN makes its kernels on the first pass of each shape; the paired reference
    # passes come after the pipeline's, so warm the shape up first (not timed)
    spec = plan_tiles(model.config, (size, size), window=args.tile_size, batch_size=args.batch_size)
    Predictor(model)(np.zeros((args.batch_size, 1, *spec.window), np.uint8))
    run = paired_run(paths[size], model, work / "paired.tif", args.tile_size, args.batch_size)
    window = run["window"]
    flops = forward_flops(model.config, window) * run["tiles"]
    mp_per_s = size * size / 1e6 / run["pipeline_seconds"]
    ratio = run["net_seconds"] / run["pipeline_seconds"]
    own_ratio = run["own_seconds"] / run["pipeline_seconds"]
    gflops = flops / run["pipeline_seconds"] / 1e9
    print(
        f"{size}x{size}, {run['tiles']} tiles of {window[0]}x{window[1]}: "
        f"{run['pipeline_seconds']:.1f} s, {mp_per_s:.3f} MP/s; network alone on the same "
        f"tiles {run['net_seconds']:.1f} s -> ratio {ratio:.3f}; the pipeline's own "
        f"forward pass alone {run['own_seconds']:.1f} s -> ratio {own_ratio:.3f}"
    )
    print(
        f"achieved {gflops:.1f} GFLOP/s; paired 1024 matrix multiply "
        f"{run['gemm_gflops']:.1f} GFLOP/s -> ratio {gflops / run['gemm_gflops']:.3f}"
    )

    extra = ["--kind", "probabilities", "--dtype", "uint8", "--batch-size", str(args.batch_size)]
    if args.tile_size:
        extra += ["--window", str(args.tile_size)]
    results = {}
    for n in (size, 2 * size):
        results[n] = biounet_predict(paths[n], work / "valid.pt", work / f"out_{n}.tif", extra)
        r = results[n]
        print(
            f"biounet predict {n}x{n} (whole process): {r['seconds']:.1f} s, "
            f"peak RSS {r['rss_gib']:.2f} GiB  [{r['line']}]"
        )

    monai = None
    if not args.no_monai:
        try:
            import monai as _  # noqa: F401
        except ImportError:
            print("MONAI not installed (pip install monai): skipped")
        else:
            # alternate the two in this process, each warmed up first (oneDNN makes its
            # kernels on the first pass of a shape, and the paired run above interleaves
            # reference passes with the pipeline's): the fastest run of each counts
            rounds = 2
            monai_seconds(paths[size], padded)
            m_times, o_times = [], []
            for _round in range(rounds):
                o_times.append(
                    ours_seconds(
                        paths[size], model, work / "again.tif", args.tile_size, args.batch_size
                    )
                )
                m_times.append(monai_seconds(paths[size], padded))
            net_warm = network_seconds(model, window, run["tiles"])
            mem = monai_run(paths[size], work / "same.pt")
            monai = {
                "seconds": min(m_times),
                "ours_seconds": min(o_times),
                "rss_gib": mem["rss_gib"],
                "own_process_seconds": mem["seconds"],
                "own_process_cold_seconds": mem["cold_seconds"],
                "net_seconds": net_warm,
            }
            print(
                f"warm, unpaired: biounet {monai['ours_seconds']:.2f} s, the network alone "
                f"{net_warm:.2f} s ({run['tiles']} passes, best of 2) -> ratio "
                f"{net_warm / monai['ours_seconds']:.3f}"
            )
            print(
                f"MONAI sliding window (roi 512, overlap 0.25, gaussian) with the padded "
                f"U-Net: {monai['seconds']:.1f} s vs biounet {monai['ours_seconds']:.1f} s "
                f"-> biounet {monai['seconds'] / monai['ours_seconds']:.2f}x as fast; "
                f"MONAI peak RSS {monai['rss_gib']:.2f} GiB (whole process)"
            )
            print(
                f"MONAI in a process of its own (glibc's default malloc, as its users run it), "
                f"warm (best of 2 after a first run of {monai['own_process_cold_seconds']:.1f} s): "
                f"{monai['own_process_seconds']:.1f} s -> biounet "
                f"{monai['own_process_seconds'] / monai['ours_seconds']:.2f}x as fast"
            )
    print("fused pass and look-ahead on and off (segment_file in this process, best of 2):")
    parts = ablation(paths[size], model, work / "ablation.tif")
    sweep = []
    if args.windows:
        print("forward pass per window size and precision (the predictor, one window):")
        sweep = window_sweep(model, [int(w) for w in args.windows.split(",")])
    crop = 1024 if args.quick else 2048
    dev = deviations(
        model.eval(), padded.eval(), crop, window[0] if window[0] <= crop + 188 else 700
    )
    print(
        f"max |tiled - whole image| on a {crop}x{crop} crop: biounet {dev['ours']:.2e}"
        + (f", MONAI {dev['monai']:.2e}" if "monai" in dev else "")
    )
    summary = {
        "size": size,
        "features": args.features,
        "window": window[0],
        "tiles": run["tiles"],
        "mp_per_s": round(mp_per_s, 4),
        "ratio_vs_network": round(ratio, 4),
        "ratio_vs_own_forward": round(own_ratio, 4),
        "ratio_vs_network_warm": (
            round(monai["net_seconds"] / monai["ours_seconds"], 4) if monai else None
        ),
        "fused": bool(fusion_works()),
        "gflops": round(gflops, 2),
        "gemm_gflops": round(run["gemm_gflops"], 2),
        "gflops_ratio_vs_gemm": round(gflops / run["gemm_gflops"], 4),
        "gemm_gflops_best_2048": round(gemm, 2),
        f"peak_rss_gib_{size // 1024}k": round(results[size]["rss_gib"], 3),
        f"peak_rss_gib_{2 * size // 1024}k": round(results[2 * size]["rss_gib"], 3),
        "peak_rss_gib_8k": round(results[size]["rss_gib"], 3) if size == 8192 else None,
        "peak_rss_gib_16k": round(results[2 * size]["rss_gib"], 3) if size == 8192 else None,
        "monai_ratio": round(monai["seconds"] / monai["ours_seconds"], 4) if monai else None,
        "monai_peak_rss_gib": round(monai["rss_gib"], 3) if monai else None,
        "monai_own_process_cold_seconds": (
            round(monai["own_process_cold_seconds"], 3) if monai else None
        ),
        "monai_own_process_ratio": (
            round(monai["own_process_seconds"] / monai["ours_seconds"], 4) if monai else None
        ),
        "ablation_seconds": parts,
        "sweep": sweep,
        "max_abs_diff_vs_whole": dev["ours"],
        "monai_max_abs_diff_vs_whole": dev.get("monai"),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
