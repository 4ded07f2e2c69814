"""Prediction throughput per window size and precision on this CPU (issue 22), and the ISA facts.

For each window (the network input per tile) and each precision, times one
forward pass of the U-Net (features=16, unpadded) and reports the useful output
megapixels per second: the kept tile (a multiple of 16 px) over the time of the
whole window. Rounds are interleaved (every window and precision once per
round, best of the rounds), so load from other processes falls on all of them
alike; compare the ratios within one run. bf16 is measured also where the CPU
has no native bf16 arithmetic, to show what that costs (biounet refuses
``--precision bf16`` there). The last line is one JSON object.

    python benchmarks/bench_windows.py [--windows 700,892,1084,1212,1324] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from biounet.device import cpu_has_bf16, cpu_model, reuse_freed_memory
from biounet.inference.tiling import tile_spec
from biounet.network.unet import UNet, UNetConfig


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def forward_seconds(net: UNet, window: int, precision: str) -> float:
    x = torch.rand(1, 1, window, window).contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else torch.autocast("cpu", enabled=False)
    )
    with torch.inference_mode(), autocast:
        t = time.perf_counter()
        torch.softmax(net(x).float(), 1)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", default="700,892,1084,1212,1324")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args()
    reuse_freed_memory()  # as every biounet command does (make_runtime)
    windows = [int(w) for w in args.windows.split(",")]
    precisions = args.precisions.split(",")
    torch.manual_seed(0)
    net = UNet(UNetConfig(features=args.features)).eval().to(memory_format=torch.channels_last)
    flags = cpu_flags()
    isa = {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")}
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("ISA: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in isa.items()))
    print(f"biounet.device.cpu_has_bf16(): {cpu_has_bf16()}")
    for w in windows:  # warm-up: oneDNN picks its kernels on the first pass of a shape
        for p in precisions:
            forward_seconds(net, w, p)
    best: dict[tuple[int, str], float] = {}
    for _ in range(args.rounds):
        for w in windows:
            for p in precisions:
                s = forward_seconds(net, w, p)
                best[(w, p)] = min(best.get((w, p), float("inf")), s)
    rows = []
    base = None
    for w in windows:
        tile = tile_spec(w).tile[0]
        for p in precisions:
            s = best[(w, p)]
            mp = tile * tile / 1e6 / s
            base = base or mp
            rows.append(
                {"window": w, "tile": tile, "precision": p, "seconds": round(s, 4),
                 "useful_mp_per_s": round(mp, 4), "vs_first": round(mp / base, 3)}
            )  # fmt: skip
            print(
                f"window {w:5d} (tile {tile:4d}, useful {tile * tile / w / w:.2f}) {p:5s}: "
                f"{s * 1e3:7.0f} ms per pass, {mp:.3f} useful MP/s ({mp / base:.2f}x)"
            )
    print(json.dumps({"cpu": cpu_model(), "isa": isa, "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
