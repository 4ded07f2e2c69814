"""Benchmark of training and prediction on an accelerator (issue 11, section 4).

    python benchmarks/bench_gpu.py --device cuda [--features 64] [--isbi-dir DIR]

Measurements, each from this one run (runs on the CPU too, for testing: ``--device cpu
--features 4 --steps 3``):

* ``matmul``: the device's rate for a large matrix multiply in the training
  precision (bf16 on a recent GPU), the ceiling the network is compared with;
* ``train``: one training step of the paper's network (572 -> 388 tile, batch 1,
  weighted cross-entropy, SGD with momentum) on random tensors already on the
  device ("alone"), then with the full data pipeline of
  :func:`biounet.training.loop.train`, once with the tiles cut on the device
  (``augment_on: device``, the CUDA default) and once in the DataLoader workers
  (``augment_on: workers``); milliseconds per step, steps per second, the ratio
  to the step alone, and the network's rate (three forward passes' FLOPs per
  step) as a fraction of the matrix multiply;
* ``predict``: :func:`biounet.inference.predictor.predict` on a synthetic
  image (megapixels per second, batch of tiles chosen by the library), and the
  largest difference to the network applied to a whole crop at once.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ISBI = REPO.parent / "shared" / "data" / "isbi2012"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(runtime, n: int = 8192, repeats: int = 10) -> float:
    """Matrix-multiply rate in the runtime's precision (mean of `repeats` after warm-up)."""
    dtype = runtime.amp_dtype or torch.float32
    n = n if runtime.is_cuda else 1024
    a = torch.randn(n, n, device=runtime.device, dtype=dtype)
    b = torch.randn(n, n, device=runtime.device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(runtime.device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(runtime.device)
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e12


def training_data(isbi_dir: Path, config) -> tuple[list[np.ndarray], list, str]:
    """Training images scaled to [0, 1] and their targets: ISBI slices 0-19, else synthetic."""
    from bench_train import load_data  # the same slices (or synthetic cells) as bench_train

    from biounet.training.weight_map import weight_maps

    images, instances, source = load_data(isbi_dir, 20)
    return images, weight_maps(instances, config.weights), source


def make_step(runtime, config):
    """A training step of a fresh network: ``step(x, y, w)`` returns the loss (on the device)."""
    from biounet.network.unet import UNet
    from biounet.training.loss import weighted_cross_entropy

    torch.manual_seed(0)
    model = runtime.prepare(UNet(config.model))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.99)
    scaler = torch.amp.GradScaler("cuda") if runtime.amp_dtype == torch.float16 else None

    def step(x, y, w) -> torch.Tensor:
        with runtime.autocast():
            logits = model(runtime.tensor(x))
        loss = weighted_cross_entropy(logits, y, w)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss.detach()

    return step


def time_steps(step, batches, device: torch.device, warm: int = 5) -> float:
    """Milliseconds per step over `batches`, after `warm` untimed steps."""
    losses = []
    for i, batch in enumerate(batches):
        if i == warm:
            sync(device)
            t = time.perf_counter()
        losses.append(step(*batch))
    sync(device)
    assert torch.isfinite(torch.stack(losses)).all()
    return (time.perf_counter() - t) / (len(losses) - warm) * 1e3


def bench_train(runtime, images, targets, *, features: int, steps: int, workers: int) -> dict:
    """Milliseconds per training step: alone, tiles cut on the device, tiles cut in workers.

    On CUDA also the step alone without channels_last and in float32 (TF32
    convolutions), to show what bf16 and the memory format bring.
    """
    from dataclasses import replace

    from biounet.device import Runtime
    from biounet.network.summary import forward_flops
    from biounet.network.unet import UNetConfig
    from biounet.training.config import TrainConfig
    from biounet.training.tiles import DeviceTiles, TileDataset

    config = TrainConfig(model=UNetConfig(features=features), workers=workers)
    out, dev, warm = config.output_size, runtime.device, 5
    rand = (
        torch.rand(1, 1, 572, 572, device=dev),
        torch.randint(0, 2, (1, out, out), device=dev),
        torch.rand(1, out, out, device=dev),
    )
    variants = {"alone": runtime}
    if runtime.is_cuda:
        variants["alone_contiguous"] = replace(runtime, channels_last=False)
        variants["alone_fp32"] = Runtime(dev, None, runtime.channels_last)
    results = {}
    for name, variant in variants.items():
        step = make_step(variant, config)
        results[f"{name}_ms"] = time_steps(step, (rand for _ in range(steps + warm)), dev, warm)
    step = make_step(runtime, config)
    for where in ("device", "workers"):
        on_device = where == "device"
        dataset = TileDataset(images, targets, config, plans=on_device)
        cut = DeviceTiles(images, targets, config, dev) if on_device else None
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=1,
            sampler=range(steps + warm),
            num_workers=workers,
            pin_memory=runtime.is_cuda,
        )

        def batches(loader=loader, cut=cut):
            for batch in loader:
                x, y, w = cut(batch) if cut is not None else batch
                yield x, y.to(dev, non_blocking=True), w.to(dev, non_blocking=True)

        results[f"{where}_ms"] = time_steps(step, batches(), dev, warm)
    flops = 3 * forward_flops(config.model, 572)
    results["tflops_alone"] = flops / results["alone_ms"] / 1e9
    for key in ("device", "workers"):
        results[f"{key}_ratio"] = results[f"{key}_ms"] / results["alone_ms"]
        results[f"{key}_steps_per_s"] = 1e3 / results[f"{key}_ms"]
    print(
        f"training step, features={features}, 572 -> 388, batch 1, {workers} worker(s): "
        f"alone {results['alone_ms']:.1f} ms ({results['tflops_alone']:.1f} TFLOP/s); "
        f"tiles on the device {results['device_ms']:.1f} ms "
        f"(ratio {results['device_ratio']:.3f}, {results['device_steps_per_s']:.1f} steps/s); "
        f"tiles in workers {results['workers_ms']:.1f} ms (ratio {results['workers_ratio']:.3f})"
    )
    for name in variants:
        if name != "alone":
            print(f"  {name}: {results[name + '_ms']:.1f} ms per step")
    return {f"train_{k}": round(v, 4) for k, v in results.items()}


def bench_predict(runtime, *, features: int, size: int) -> dict:
    """Megapixels per second of overlap-tile prediction, and tiled against whole.

    The tiled-versus-whole check runs the tiles in float32 on the device and the
    whole crop in float32 on the CPU, so it also shows the device's arithmetic
    (TF32 convolutions on a GPU) against the CPU's.
    """
    from biounet.device import make_runtime
    from biounet.inference.predictor import predict_whole
    from biounet.inference.segmentation import predict
    from biounet.network.unet import UNet, UNetConfig
    from biounet.synthetic import touching_cells

    torch.manual_seed(0)
    model = UNet(UNetConfig(features=features)).eval()
    image, _ = touching_cells(
        (size, size), n_cells=size * size // 4000, rng=np.random.default_rng(1)
    )
    print(f"predict: warm-up, then {size}x{size}, then the seam check", flush=True)
    predict(image[:700, :700], model, runtime=runtime)  # warm-up
    sync(runtime.device)
    t = time.perf_counter()
    prob = predict(image, model, runtime=runtime)
    sync(runtime.device)
    seconds = time.perf_counter() - t
    print(f"predict {size}x{size}: {seconds:.2f} s", flush=True)
    crop = image[:1024, :1024]
    tiled = predict(crop, model, runtime=make_runtime(str(runtime.device), "fp32"))
    whole = predict_whole(crop[None], model.cpu())
    diff = float(np.abs(tiled - whole).max())
    mps = size * size / seconds / 1e6
    print(
        f"predict {size}x{size}, features={features}: {seconds:.2f} s, {mps:.1f} MP/s; "
        f"max |tiled - whole| on 1024x1024 = {diff:.2e}"
    )
    assert prob.shape[-2:] == (size, size)
    return {"predict_mp_per_s": round(mps, 3), "predict_tiled_vs_whole": diff}


def main(argv: list[str] | None = None) -> dict:
    from biounet.device import make_runtime
    from biounet.training.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant [100]")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers [4]")
    parser.add_argument("--size", type=int, default=4096, help="side of the predicted image")
    parser.add_argument("--isbi-dir", type=Path, default=DEFAULT_ISBI)
    args = parser.parse_args(argv)
    runtime = make_runtime(args.device)
    result: dict[str, object] = {"device": runtime.describe(), "torch": torch.__version__}
    print(f"{runtime.describe()}, torch {torch.__version__}")
    tflops = matmul_tflops(runtime)
    print(f"matrix multiply: {tflops:.1f} TFLOP/s")
    result["matmul_tflops"] = round(tflops, 2)
    images, targets, source = training_data(args.isbi_dir, TrainConfig())
    result["data"] = source
    train = bench_train(
        runtime, images, targets, features=args.features, steps=args.steps, workers=args.workers
    )
    train["train_of_matmul"] = round(train["train_tflops_alone"] / tflops, 4)
    result.update(train)
    result.update(bench_predict(runtime, features=args.features, size=args.size))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
