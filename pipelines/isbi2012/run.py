"""Reproduce the ISBI 2012 experiment of the U-Net paper (Table 1) in one command.

    python pipelines/isbi2012/run.py --data ../shared/data/isbi2012 --out runs/isbi2012

Stages, each skipped when its output exists (so an interrupted run resumes):

1. train on slices 0-19 of the labelled training volume, validating on 20-23
   (``train/full``); with ``--ablations`` (two more trainings) also without
   the border term of the weight map (``train/no_border``, w0 = 0) and
   without elastic deformation (``train/no_elastic``);
2. predict slices 20-23 with each final model (no test-time averaging; the
   full model also with the 8 flips/rotations and with 7 rotations) and score
   them with the ISBI metrics (``eval/*.json``);
3. predict the 30-slice test volume with the full model (``d4`` averaging) as a
   float32 TIFF stack of cell probabilities (``test-volume-probabilities.tif``);
4. write ``results.json`` and ``results.md``: our rows next to the paper's.

``--bundle FILE`` also writes the full model as a compact checkpoint (float16
weights, no training state): the model that ships with biounet.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet.device import make_runtime
from biounet.errors import BiounetError
from biounet.evaluation.isbi import evaluate_isbi
from biounet.inference.segmentation import predict
from biounet.network.checkpoint import load_checkpoint, save_checkpoint
from biounet.network.unet import UNet
from biounet.training.config import DataConfig, load_config
from biounet.training.loop import LATEST
from biounet.training.run import finish_run
from biounet.training.runlog import read_log, training_seconds

HERE = Path(__file__).resolve().parent
PAPER = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
METRICS = ("warping_error", "rand_error", "pixel_error", "vrand", "vinfo")
TRAIN, VAL = slice(0, 20), slice(20, 24)
log = logging.getLogger("isbi2012")


def stage_train(name: str, config, data: Path, out: Path, runtime) -> Path:
    """Train (or resume, or skip when finished) one configuration."""
    run = out / "train" / name
    vol, lab = data / "train-volume.tif", data / "train-labels.tif"
    split = out / "split"
    split.mkdir(parents=True, exist_ok=True)
    for src, stem in ((vol, "volume"), (lab, "labels")):  # slices 0-19 and 20-23 as stacks
        for part, rows in (("train", TRAIN), ("val", VAL)):
            path = split / f"{part}-{stem}.tif"
            if not path.exists():
                stack = tifffile.imread(src)[rows]
                tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    config = replace(
        config,
        data=DataConfig(
            images=str(split / "train-volume.tif"),
            labels=str(split / "train-labels.tif"),
            val_images=str(split / "val-volume.tif"),
            val_labels=str(split / "val-labels.tif"),
            label_kind="binary",
            foreground="high",
        ),
    )
    step = finish_run(config, run, runtime=runtime, progress=True)
    log.info(f"{name}: {step} of {config.iterations} steps")
    return run


def stage_eval(name: str, run: Path, data: Path, out: Path, tta: str, runtime) -> dict:
    """Score the final model of `run` on slices 20-23."""
    path = out / "eval" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    model = UNet.from_checkpoint(run / LATEST)
    images = tifffile.imread(data / "train-volume.tif")[VAL]
    truth = tifffile.imread(data / "train-labels.tif")[VAL]
    t = time.perf_counter()
    prob = predict(images, model, axes="ZYX", tta=tta, runtime=runtime)[:, 1]
    seconds = time.perf_counter() - t
    scores = evaluate_isbi(
        prob, truth, metrics=("pixel", "rand", "warping", "vrand", "vinfo"), kind="probabilities"
    )
    result = {
        "name": name,
        "tta": tta,
        "predict_seconds": round(seconds, 2),
        **{m: scores[m] for m in METRICS},
        "threshold": {m: scores["threshold"].get(m) for m in METRICS},
    }
    path.write_text(json.dumps(result, indent=1))
    log.info(f"{name}: " + ", ".join(f"{m} {result[m]:.4f}" for m in METRICS))
    return result


def stage_test_volume(run: Path, data: Path, out: Path, runtime) -> Path:
    """Cell probabilities (float32, high = cell) for the 30-slice test volume."""
    path = out / "test-volume-probabilities.tif"
    if not path.exists() and (data / "test-volume.tif").exists():
        model = UNet.from_checkpoint(run / LATEST)
        prob = predict(
            tifffile.imread(data / "test-volume.tif"), model, axes="ZYX", tta="d4", runtime=runtime
        )[:, 1].astype(np.float32)
        tifffile.imwrite(path, prob, imagej=True, metadata={"axes": "ZYX"})
    return path


def run_info(run: Path) -> dict:
    records = read_log(run)
    seconds = training_seconds(records)
    ckpt = load_checkpoint(run / LATEST)
    cfg = ckpt["train_state"]["config"]
    return {
        "steps": ckpt["train_state"]["step"],
        "features": cfg["model"]["features"],
        "train_minutes": round(seconds / 60, 1),
        "lr": cfg["lr"],
    }


def bundle(run: Path, path: Path) -> None:
    """The full model as a compact checkpoint: float16 weights, no training state."""
    model = UNet.from_checkpoint(run / LATEST)
    model = model.to(memory_format=torch.contiguous_format).half()
    save_checkpoint(path, model, model_card="docs/model_card.md")


def table(rows: list[dict], infos: dict[str, dict]) -> str:
    head = (
        "| entry | warping | Rand | pixel | V_rand | V_info | data | width | steps | "
        "train time |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| u-net, paper (Table 1) | {PAPER['warping_error']:.6f} | "
        f"{PAPER['rand_error']:.4f} | {PAPER['pixel_error']:.4f} | - | - | "
        "ISBI test set (secret labels) | 64 | not stated | 10 h (Titan GPU) |"
    ]
    for r in rows:
        info = infos[r["run"]]
        lines.append(
            f"| {r['label']} | {r['warping_error']:.6f} | {r['rand_error']:.4f} | "
            f"{r['pixel_error']:.4f} | {r['vrand']:.4f} | {r['vinfo']:.4f} | training slices "
            f"20-23 | {info['features']} | {info['steps']} | {info['train_minutes']} min |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=HERE.parents[2] / "shared/data/isbi2012",
        help="folder with train-volume.tif, train-labels.tif, test-volume.tif "
        "(default: ../shared/data/isbi2012 beside the repository)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/isbi2012"),
        help="output folder; stages whose output exists are skipped (default: runs/isbi2012)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=HERE / "config.yaml",
        help="training configuration (default: the CPU configuration, config.yaml)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--ablations",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also train without the border term and without elastic deformation "
        "(two more trainings of the same length)",
    )
    parser.add_argument("--bundle", type=Path, help="also write the compact model here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("train-volume.tif", "train-labels.tif"):
        if not (args.data / name).is_file():
            raise SystemExit(f"{args.data / name}: not found (give --data)")
    runtime = make_runtime(args.device)
    config = load_config(args.config)
    runs = {"full": stage_train("full", config, args.data, args.out, runtime)}
    if args.ablations:
        runs["no_border"] = stage_train(
            "no_border",
            replace(config, weights=replace(config.weights, w0=0.0)),
            args.data,
            args.out,
            runtime,
        )
        runs["no_elastic"] = stage_train(
            "no_elastic",
            replace(config, augment=replace(config.augment, elastic=False)),
            args.data,
            args.out,
            runtime,
        )
    evals = [
        ("full", "none", "biounet, full"),
        ("full", "d4", "biounet, full + 8 flips/rotations"),
        ("full", "rot7", "biounet, full + 7 rotations (k * 360/7)"),
    ]
    if args.ablations:
        evals += [
            ("no_border", "none", "biounet, without border term (w0 = 0)"),
            ("no_elastic", "none", "biounet, without elastic deformation"),
        ]
    rows = []
    for run, tta, label in evals:
        r = stage_eval(f"{run}_{tta}", runs[run], args.data, args.out, tta, runtime)
        rows.append({**r, "run": run, "label": label})
    stage_test_volume(runs["full"], args.data, args.out, runtime)
    infos = {name: run_info(path) for name, path in runs.items()}
    machine = (
        f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"{runtime.describe()}, torch {torch.__version__}"
    )
    results = {
        "paper": PAPER,
        "rows": rows,
        "runs": infos,
        "machine": machine,
        "split": "train on training slices 0-19, evaluate on 20-23",
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(rows, infos) + f"\nMachine: {machine}. Split: {results['split']}.\n"
    (args.out / "results.md").write_text(text)
    print(text)
    if args.bundle:
        bundle(runs["full"], args.bundle)
        print(f"bundled model: {args.bundle}")


if __name__ == "__main__":
    try:
        main()
    except BiounetError as exc:  # bad data, an interrupted training: one line, exit 1
        raise SystemExit(f"Error: {exc}") from None
