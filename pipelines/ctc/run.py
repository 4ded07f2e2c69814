"""Reproduce Table 2 of the U-Net paper (Cell Tracking Challenge SEG) on one CTC data set.

    python pipelines/ctc/run.py --data PhC-C2DH-U373 --out runs/u373

The data folder is a Cell Tracking Challenge training set in its standard
layout: sequences ``01/``, ``02/`` of frames ``tNNN.tif`` and gold-truth
segmentations ``01_GT/SEG/man_segNNN.tif`` for some frames. Stages, each
skipped when its output exists (an interrupted run resumes where it stopped):

1. **train** on the gold-truth frames of ``--train`` (default ``01``),
   holding out its last ``--val-count`` annotated frames to validate, to
   calibrate the decision rule (threshold, minimum size) for SEG and to pick
   ``best.pt`` by SEG (``train/``);
2. **predict** every gold-truth frame of ``--test`` (default ``02``, a
   sequence the network has not seen) with ``best.pt`` as instance labels
   named as the challenge wants them (``predictions/maskNNN.tif``);
3. **score** them with SEG (and object average precision at IoU 0.5-0.9)
   and write ``results.json`` / ``results.md`` beside the paper's row.

With a single sequence, ``--test`` equal to ``--train`` holds out the last
``--test-count`` annotated frames of it instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet.device import make_runtime
from biounet.errors import BiounetError
from biounet.evaluation.matching import average_precision, seg_score
from biounet.inference.segmentation import segment
from biounet.io.atomic import atomic_output
from biounet.network.checkpoint import load_checkpoint
from biounet.network.unet import load_model
from biounet.training.config import DataConfig, load_config
from biounet.training.loop import BEST, LATEST
from biounet.training.run import finish_run
from biounet.training.runlog import read_log, training_seconds

HERE = Path(__file__).resolve().parent
#: Table 2 of the paper: SEG of u-net (2015) on the challenge's test sequences.
PAPER = {"PhC-C2DH-U373": 0.9203, "DIC-C2DH-HeLa": 0.7756}
GT_NAME = re.compile(r"^man_seg_?(\d+)\.tiff?$")
log = logging.getLogger("ctc")


def gold_truth_frames(data: Path, sequence: str) -> list[tuple[Path, Path, int]]:
    """(frame, gold truth, frame number) for every annotated frame of a sequence."""
    seg = data / f"{sequence}_GT" / "SEG"
    if not seg.is_dir():
        raise SystemExit(f"{seg}: not found (is --data a Cell Tracking Challenge folder?)")
    out = []
    for gt in sorted(seg.iterdir()):
        match = GT_NAME.match(gt.name)
        if not match:
            continue
        t = int(match.group(1))
        frames = [data / sequence / f"t{t:0{n}d}.tif" for n in (3, 4)]
        frame = next((f for f in frames if f.is_file()), None)
        if frame is None:
            raise SystemExit(f"{gt}: no frame t{t:03d}.tif in {data / sequence}")
        out.append((frame, gt, t))
    if not out:
        raise SystemExit(f"{seg}: holds no man_segNNN.tif gold truth")
    return out


def split_sequence(data: Path, out: Path, sequence: str, test_count: int) -> tuple[Path, list]:
    """Hold out the last `test_count` annotated frames of one sequence (single-sequence data)."""
    frames = gold_truth_frames(data, sequence)
    if test_count >= len(frames):
        raise SystemExit(
            f"{sequence}: {len(frames)} annotated frames, cannot hold out {test_count}"
        )
    train, test = frames[:-test_count], frames[-test_count:]
    folder = out / "split" / sequence
    seg = out / "split" / f"{sequence}_GT" / "SEG"
    seg.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    for frame, gt, _ in train:
        for src, dst in ((frame, folder / frame.name), (gt, seg / gt.name)):
            if not dst.exists():
                dst.symlink_to(src.resolve())
    return folder, test


def stage_train(config, images: Path, run: Path, val_count: int, runtime) -> Path:
    """Train (or resume, or skip when finished) on the annotated frames in `images`."""
    config = replace(
        config,
        data=DataConfig(images=str(images), label_kind="instance", val_count=val_count),
    )
    step = finish_run(config, run, runtime=runtime, progress=True)
    log.info(f"train: {step} of {config.iterations} steps")
    return run


def stage_predict(run: Path, test: list, out: Path, runtime) -> Path:
    """Instance labels of every held-out annotated frame, as ``predictions/maskNNN.tif``."""
    folder = out / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    model = load_model(run / BEST if (run / BEST).exists() else run / LATEST)
    rule = model.decision
    log.info(f"predict: threshold {rule.threshold:g}, min size {rule.min_size} ({rule.chosen_by})")
    start = time.perf_counter()
    for frame, _, t in test:
        target = folder / f"mask{t:03d}.tif"
        if target.exists():
            continue
        labels = segment(tifffile.imread(frame), model, runtime=runtime)
        with atomic_output(target, overwrite=False, inputs=[frame]) as tmp:
            tifffile.imwrite(tmp, labels.astype(np.uint16))
    log.info(f"predict: {len(test)} frames in {time.perf_counter() - start:.1f} s")
    return folder


def stage_score(predictions: Path, test: list) -> dict:
    """SEG over all held-out frames (as the challenge sums it) and object AP."""
    labels, truth = [], []
    for _, gt, t in test:
        labels.append(tifffile.imread(predictions / f"mask{t:03d}.tif"))
        truth.append(tifffile.imread(gt))
    # SEG pools the reference objects of all frames (the challenge's definition)
    seg = seg_score(np.stack(labels), np.stack(truth))
    count = sum(int(np.unique(ref[ref > 0]).size) for ref in truth)
    ap = {}
    for res, ref in zip(labels, truth, strict=True):
        for k, v in average_precision(res, ref).items():
            ap.setdefault(k, []).append(v)
    objects = [int(np.unique(x[x > 0]).size) for x in labels]
    return {
        "seg": float(seg),
        "ap": {f"{k:.2f}": float(np.mean(v)) for k, v in ap.items()},
        "frames": len(test),
        "reference_objects": int(count),
        "objects_per_frame": objects,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Train on a Cell Tracking Challenge data set, predict held-out frames and "
        "score them with SEG next to the paper's Table 2."
    )
    parser.add_argument("--data", type=Path, required=True, help="CTC data set folder")
    parser.add_argument("--out", type=Path, default=Path("runs/ctc"), help="output folder")
    parser.add_argument("--train", default="01", help="sequence to train on (default 01)")
    parser.add_argument("--test", default="02", help="sequence to score (default 02)")
    parser.add_argument(
        "--test-count",
        type=int,
        default=4,
        help="with --test equal to --train: hold out its last N annotated frames (default 4)",
    )
    parser.add_argument(
        "--val-count",
        type=int,
        default=2,
        help="annotated training frames held out to validate and calibrate (default 2)",
    )
    parser.add_argument(
        "--config", type=Path, default=HERE / "config.yaml", help="training configuration"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--time-limit", help="training budget of this call, e.g. 45m, 1h")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runtime = make_runtime(args.device)
    config = load_config(args.config)
    if args.time_limit:
        config = replace(config, time_limit=args.time_limit)
    if args.test == args.train:
        images, test = split_sequence(args.data, args.out, args.train, args.test_count)
    else:
        images, test = args.data / args.train, gold_truth_frames(args.data, args.test)
        gold_truth_frames(args.data, args.train)  # fail early on a missing GT folder
    run = stage_train(config, images, args.out / "train", args.val_count, runtime)
    predictions = stage_predict(run, test, args.out, runtime)
    scores = stage_score(predictions, test)
    records = read_log(run)
    name = args.data.resolve().name
    finished = load_checkpoint(run / LATEST)["train_state"]["step"]
    results = {
        "data": name,
        "paper_seg": PAPER.get(name),
        **scores,
        "train_sequence": args.train,
        "test_sequence": args.test,
        "steps": finished,
        "train_minutes": training_seconds(records) / 60,
        "machine": f"{platform.machine()}, {runtime.describe()}, torch {torch.__version__}",
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    paper = f"{PAPER[name]:.4f}" if name in PAPER else "-"
    text = (
        "| data | entry | SEG | AP@0.5 | frames | objects per frame | steps | train time |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {name} | u-net, paper (Table 2, challenge test set) | {paper} | - | - | - | - | - |\n"
        f"| {name} | biounet, sequence {args.test} | {scores['seg']:.4f} | "
        f"{scores['ap']['0.50']:.3f} | {scores['frames']} | "
        f"{', '.join(map(str, scores['objects_per_frame']))} | {finished} | "
        f"{results['train_minutes']:.1f} min |\n"
        f"\nMachine: {results['machine']}.\n"
    )
    (args.out / "results.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    try:
        main()
    except BiounetError as exc:  # bad data, an interrupted training: one line, exit 1
        raise SystemExit(f"Error: {exc}") from None
