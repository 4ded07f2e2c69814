"""Benchmark of the training data pipeline: weight maps and augmentation.

    python benchmarks/bench_train.py [--quick] [--isbi-dir ../shared/data/isbi2012]

Measurements (one function each; `main` assembles the JSON):

* ``bench_weightmap``: the target and weight map (Eq. 2) of one 512x512 ISBI
  slice, fast (:func:`biounet.training.weight_map.weight_map`) vs the direct way (one
  full-image distance transform per object), their ratio, and the largest
  difference of the float32 weight maps.
* ``bench_step``: one training step of a features=16 network on 572 tiles with
  the full data pipeline against forward+backward alone on random tensors
  (target: ratio <= 1.10), and the forward+backward rate in GFLOP/s (three
  times the forward pass's FLOPs) against a float32 matrix multiply timed in
  the same run (target: >= 0.60 of it).
* ``bench_step_precision``: one SGD step in float32 and in bf16 (features 16
  and 32, 1 and 2 threads), where the CPU has AVX512-BF16 or AMX.
* ``bench_validate``: validation as training runs it (whole held-out images
  predicted with overlap-tile, the decision rule calibrated on them), in
  seconds per image, against the prediction alone.
* ``bench_augment``: one augmented 572 -> 388 training tile
  (:func:`biounet.training.augment.random_tile`): elastic deformation only, and the full
  augmentation (elastic, rotation, flips, shift, grey values), with linear and
  cubic image interpolation; for reference, ``elasticdeform.deform_grid`` on
  the same three arrays.

Times are medians of wall-clock times (``*_ms``); the CPU time of the process
(``*_cpu_ms``) is printed as well, since the machine may be shared. Without
the ISBI data, synthetic touching cells of the same size are used. The last
output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ISBI = REPO.parent / "shared" / "data" / "isbi2012"


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of `repeat` calls (after one warm-up call)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def load_data(isbi_dir: Path, n: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """`n` slices as (images scaled to [0, 1], instance images, description)."""
    from biounet.training.data import load_pairs

    volume, labels = isbi_dir / "train-volume.tif", isbi_dir / "train-labels.tif"
    if volume.is_file() and labels.is_file():
        samples = load_pairs(volume, labels)[:n]
        images = [s.image.astype(np.float32) / 255 for s in samples]
        return images, [s.instances for s in samples], f"ISBI 2012 ({isbi_dir})"
    from biounet.synthetic import touching_cells
    from biounet.training.borders import separate_instances

    rng = np.random.default_rng(0)
    images, instances = [], []
    for _ in range(n):  # densely packed cells, like EM: ~130 regions per slice
        image, cells = touching_cells((512, 512), n_cells=160, radius=(30, 60), rng=rng)
        images.append(image[None].astype(np.float32) / 255)
        instances.append(separate_instances(cells))
    return images, instances, "synthetic touching cells (ISBI data not found)"


def bench_weightmap(instances: list[np.ndarray], *, quick: bool) -> dict[str, float]:
    """Weight map of one slice: fast vs the direct way (same slices, same parameters)."""
    from biounet.training.borders import _border_weight_naive, separate_instances
    from biounet.training.weight_map import weight_map

    def naive(inst: np.ndarray) -> np.ndarray:
        objects = separate_instances(inst)
        border = _border_weight_naive(objects).astype(np.float32)
        return np.float32(1.0) + border

    repeat = 3 if quick else 5
    fast = [timed(lambda inst=inst: weight_map(inst), repeat) for inst in instances]
    n_naive = 1 if quick else 3
    slow = [timed(lambda inst=inst: naive(inst), 1) for inst in instances[:n_naive]]
    diff = max(
        float(np.abs(weight_map(inst).weights - naive(inst)).max()) for inst in instances[:n_naive]
    )
    fast_ms = statistics.median(w for w, _ in fast)
    fast_same = statistics.median(w for w, _ in fast[:n_naive])
    naive_ms = statistics.median(w for w, _ in slow)
    regions = statistics.median(int(len(np.unique(i)) - 1) for i in instances)
    print(f"weight map, {len(instances)} slice(s) of {instances[0].shape}, ~{regions:.0f} regions")
    print(f"  fast : {fast_ms:8.1f} ms/slice (CPU {statistics.median(c for _, c in fast):.1f} ms)")
    print(f"  naive: {naive_ms:8.1f} ms/slice on {n_naive} slice(s)")
    print(f"  speedup {naive_ms / fast_same:.0f}x, max |fast - naive| = {diff:.3g}")
    return {
        "weightmap_ms": round(fast_ms, 2),
        "weightmap_cpu_ms": round(statistics.median(c for _, c in fast), 2),
        "weightmap_naive_ms": round(naive_ms, 1),
        "weightmap_speedup": round(naive_ms / fast_same, 1),
        "weightmap_max_abs_diff": diff,
    }


def bench_augment(
    images: list[np.ndarray], instances: list[np.ndarray], *, quick: bool
) -> dict[str, float]:
    """One augmented 572 -> 388 tile, elastic only and fully augmented."""
    from biounet.training.augment import AugmentConfig, random_tile
    from biounet.training.weight_map import weight_maps

    targets = weight_maps(instances)
    rng = np.random.default_rng(0)
    repeat = 15 if quick else 60

    def tile(config: AugmentConfig) -> Callable[[], object]:
        def one() -> object:
            k = int(rng.integers(len(images)))
            t = targets[k]
            return random_tile(
                images[k], t.classes, t.weights, input_size=572, output_size=388, rng=rng,
                config=config,
            )  # fmt: skip

        return one

    elastic_only = AugmentConfig(rotation=0.0, flip=False, gray=False)
    results = {
        "elastic": timed(tile(elastic_only), repeat),
        "augment": timed(tile(AugmentConfig()), repeat),
        "augment_cubic": timed(tile(AugmentConfig(image_order=3)), repeat),
    }
    try:
        import elasticdeform

        image = np.pad(images[0][0], 30, mode="reflect")
        arrays = [image, image.copy(), (image > 0.5).astype(np.uint8)]

        def reference() -> object:
            control = rng.normal(0, 10, (2, 3, 3))
            return elasticdeform.deform_grid(
                arrays, control, order=[1, 1, 0], mode="mirror", rotate=float(rng.uniform(0, 360))
            )

        results["elasticdeform"] = timed(reference, repeat)
    except ImportError:
        pass
    print("augmentation, one 572 -> 388 tile (image, target, weights)")
    for name, (wall, cpu) in results.items():
        print(f"  {name:14s} {wall:7.1f} ms (CPU {cpu:.1f} ms)")
    out = {f"{name}_ms": round(wall, 2) for name, (wall, _) in results.items()}
    out.update({f"{name}_cpu_ms": round(cpu, 2) for name, (_, cpu) in results.items()})
    return out


def bench_step(
    images: list[np.ndarray],
    instances: list[np.ndarray],
    *,
    quick: bool,
    features: int = 16,
    workers: int = 1,
) -> dict[str, float]:
    """Training step with the full data pipeline vs forward+backward alone, paired.

    Each iteration times one real step (next batch from the DataLoader that
    :func:`biounet.training.loop.train` uses, with its worker process augmenting the
    next tiles, then forward, weighted loss, backward, SGD) and right after it
    one step on random tensors of the same shapes. Pairing the two makes the
    ratio robust to other load on the machine.
    """
    import torch

    from biounet.device import make_runtime
    from biounet.network.unet import UNet, UNetConfig
    from biounet.training.config import TrainConfig
    from biounet.training.loop import StepIndices, TileDataset
    from biounet.training.loss import weighted_cross_entropy
    from biounet.training.weight_map import weight_maps

    cfg = TrainConfig(model=UNetConfig(features=features), workers=workers)
    steps = 8 if quick else 40
    runtime = make_runtime("cpu")
    torch.manual_seed(0)
    model = runtime.prepare(UNet(cfg.model))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    loader = torch.utils.data.DataLoader(
        TileDataset(images, weight_maps(instances, cfg.weights), cfg),
        batch_size=1,
        sampler=StepIndices(0, steps + 2, 1, 0, 1),
        num_workers=cfg.workers,
        generator=torch.Generator(),
    )

    def step(x, y, w) -> None:
        loss = weighted_cross_entropy(model(x), y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rand = (
        runtime.tensor(torch.rand(1, 1, 572, 572)),
        torch.randint(0, 2, (1, 388, 388)),
        torch.rand(1, 388, 388),
    )
    real = alone = 0.0
    batches = iter(loader)
    for i in range(steps + 2):
        t = time.perf_counter()
        x, y, w = next(batches)
        step(runtime.tensor(x), y, w)
        t_real = time.perf_counter() - t
        t = time.perf_counter()
        step(*rand)
        t_alone = time.perf_counter() - t
        if i >= 2:  # warm-up: worker start, first allocations
            real, alone = real + t_real, alone + t_alone
    from bench_predict import gemm_gflops  # the same matrix-multiply reference

    from biounet.network.summary import forward_flops

    gemm = gemm_gflops()
    rate = 3 * forward_flops(cfg.model, 572) / (alone / steps) / 1e9  # forward + 2x backward
    print(
        f"training step, features={features}, 572 -> 388, {workers} DataLoader worker(s): "
        f"{real / steps * 1e3:.0f} ms with the data pipeline, {alone / steps * 1e3:.0f} ms "
        f"forward+backward alone on random tensors -> ratio {real / alone:.3f}"
    )
    print(
        f"  forward+backward {rate:.1f} GFLOP/s, float32 matrix multiply {gemm:.1f} GFLOP/s "
        f"-> {rate / gemm:.2f} of it"
    )
    return {
        "step_ms": round(real / steps * 1e3, 1),
        "step_alone_ms": round(alone / steps * 1e3, 1),
        "step_ratio": round(real / alone, 4),
        "step_gflops": round(rate, 1),
        "gemm_gflops": round(gemm, 1),
        "step_of_gemm": round(rate / gemm, 3),
    }


def bench_step_precision(*, quick: bool = False, threads: tuple[int, ...] = (1, 2)) -> dict:
    """One SGD step (forward, weighted loss, backward, update) in float32 and in bf16.

    On random 572 tiles, features 16 and 32, for each thread count; the two
    precisions alternate and the median of each counts. Only where the CPU
    has native bfloat16 arithmetic (training's ``--precision auto`` is bf16
    there); elsewhere it returns nothing.
    """
    import torch

    from biounet.device import cpu_has_bf16, make_runtime
    from biounet.network.unet import UNet, UNetConfig
    from biounet.training.loss import weighted_cross_entropy

    if not cpu_has_bf16():
        print("training step bf16 vs fp32: skipped (no AVX512-BF16 or AMX)")
        return {}
    before, out, steps = torch.get_num_threads(), {}, 3 if quick else 6
    try:
        for n in threads:
            torch.set_num_threads(n)
            for features in (16, 32):
                times = {"fp32": [], "bf16": []}
                nets = {}
                for precision in times:
                    torch.manual_seed(0)
                    runtime = make_runtime("cpu", precision, training=True)
                    net = runtime.prepare(UNet(UNetConfig(features=features)))
                    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99)
                    nets[precision] = (runtime, net, opt)
                x = torch.rand(1, 1, 572, 572).contiguous(memory_format=torch.channels_last)
                y, w = torch.randint(0, 2, (1, 388, 388)), torch.rand(1, 388, 388)
                for i in range(steps + 1):
                    for precision, (runtime, net, opt) in nets.items():
                        t = time.perf_counter()
                        with runtime.autocast():
                            logits = net(x)
                        loss = weighted_cross_entropy(logits.float(), y, w)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if i:  # the first step of each builds oneDNN's kernels
                            times[precision].append(time.perf_counter() - t)
                fp32, bf16 = (float(np.median(times[p])) for p in ("fp32", "bf16"))
                print(
                    f"training step, features={features}, {n} thread(s): fp32 {fp32 * 1e3:.0f} "
                    f"ms, bf16 {bf16 * 1e3:.0f} ms -> bf16 takes {bf16 / fp32:.2f} of it"
                )
                key = f"f{features}_t{n}"
                out[f"step_fp32_ms_{key}"] = round(fp32 * 1e3, 1)
                out[f"step_bf16_ms_{key}"] = round(bf16 * 1e3, 1)
    finally:
        torch.set_num_threads(before)
    return out


def bench_validate(
    images: list[np.ndarray], instances: list[np.ndarray], *, features: int = 16
) -> dict[str, float]:
    """Validation as training runs it, per held-out image, against prediction alone."""
    import torch

    from biounet.device import make_runtime
    from biounet.inference.segmentation import predict
    from biounet.network.unet import UNet, UNetConfig
    from biounet.training.loop import validate
    from biounet.training.weight_map import weight_maps

    held = [image if image.ndim == 3 else image[None] for image in images[-4:]]  # (C, H, W)
    truth = [t.classes for t in weight_maps(instances[-4:])]
    runtime = make_runtime("cpu")
    torch.manual_seed(0)
    model = UNet(UNetConfig(features=features)).eval()
    predict(held[0], model, axes="CYX", runtime=runtime)  # warm-up
    t = time.perf_counter()
    for image in held:
        predict(image, model, axes="CYX", runtime=runtime)
    alone = (time.perf_counter() - t) / len(held)
    t = time.perf_counter()
    validate(model, held, truth, runtime, "binary")
    full = (time.perf_counter() - t) / len(held)
    print(
        f"validation, {len(held)} image(s) of {held[0].shape}: {full:.2f} s per image "
        f"({alone:.2f} s of it prediction, {full - alone:.2f} s calibration and scoring)"
    )
    return {"validate_s_per_image": round(full, 3), "predict_s_per_image": round(alone, 3)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes)")
    parser.add_argument("--isbi-dir", type=Path, default=DEFAULT_ISBI)
    args = parser.parse_args(argv)
    from biounet.device import cpu_model

    started = time.perf_counter()
    images, instances, source = load_data(args.isbi_dir, 6 if args.quick else 24)
    print(f"data: {source}, {len(images)} slice(s); CPU: {cpu_model()}")
    result: dict[str, object] = {"data": source, "quick": args.quick, "cpu": cpu_model()}
    # one function per measurement, each returning its JSON keys
    result.update(bench_weightmap(instances, quick=args.quick))
    result.update(bench_augment(images, instances, quick=args.quick))
    result.update(bench_step(images, instances, quick=args.quick))
    result.update(bench_validate(images, instances))
    result.update(bench_step_precision(quick=args.quick))
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
