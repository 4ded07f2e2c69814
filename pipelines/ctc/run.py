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

``--folds K`` is the protocol that cannot choose on the frames it scores
(leave-frames-out): the annotated frames of ``--train`` are cut into K
contiguous blocks; for each block a network is trained on the other frames
(its own last ``--val-count`` of them validating and choosing ``best.pt``)
and predicts the block's probabilities (``foldI/``). The decision rule
(threshold, smallest object, splitting touching cells) that scores block I is
calibrated on the other blocks' out-of-fold probabilities only, so no frame
is both trained on or calibrated on and scored; the table reports the mean and
spread of SEG over the blocks. The rule calibrated on all blocks, and a model
trained on all frames with the same settings (``final/``), are what ships.
Several ``--data`` folders run one after the other, each under
``--out/<name>``, into one table.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import platform
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet import predict
from biounet.device import cpu_model, make_runtime
from biounet.errors import BiounetError
from biounet.evaluation.folds import fold_blocks
from biounet.evaluation.matching import average_precision, seg_score
from biounet.inference.segmentation import segment
from biounet.io.atomic import atomic_output
from biounet.limits import threads_per_worker
from biounet.network.checkpoint import load_checkpoint, save_checkpoint
from biounet.network.decision import DecisionRule
from biounet.network.unet import load_model
from biounet.training.calibrate import (
    calibrate,
    calibrate_distance_split,
    calibrate_split,
    components,
    distance_split,
    split_cells,
)
from biounet.training.config import DataConfig, load_config
from biounet.training.loop import BEST, LATEST
from biounet.training.run import finish_run
from biounet.training.runlog import read_log, training_seconds
from biounet.viz.figures import folds_figure

HERE = Path(__file__).resolve().parent
#: Table 2 of the paper: SEG of u-net (2015) on the challenge's test sequences.
PAPER = {"PhC-C2DH-U373": 0.9203, "DIC-C2DH-HeLa": 0.7756}
#: Short names (``--dataset``) and the words that identify a data set in its folder or README.
DATASETS = {"u373": "PhC-C2DH-U373", "hela": "DIC-C2DH-HeLa"}
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


def silver_truth_frames(data: Path, sequence: str) -> list[tuple[Path, Path, int]]:
    """(frame, silver truth, frame number) for every frame with ``NN_ST/SEG`` labels.

    Silver truth (labels from the best challenge entries) is a training option
    only, never scored. Empty when the data set has none.
    """
    seg = data / f"{sequence}_ST" / "SEG"
    if not seg.is_dir():
        return []
    out = []
    for st in sorted(seg.iterdir()):
        match = GT_NAME.match(st.name)
        if not match:
            continue
        t = int(match.group(1))
        frame = next(
            (f for n in (3, 4) if (f := data / sequence / f"t{t:0{n}d}.tif").is_file()), None
        )
        if frame is not None:
            out.append((frame, st, t))
    return out


def with_silver(gold: list, silver: list, kept_apart: list[int], gap: int) -> list:
    """`gold` training frames plus silver-truth frames at least `gap` + 1 frames from `kept_apart`.

    Neighbouring frames of a time-lapse nearly repeat each other, so a silver
    frame within `gap` frames of a scored (or validating) frame would leak it;
    a frame with gold truth keeps its gold truth.

    Examples
    --------
    >>> g = [("g", "G", 4)]
    >>> s = [("s", "S", t) for t in range(12)]
    >>> [t for _, _, t in with_silver(g, s, kept_apart=[8], gap=2)]
    [0, 1, 2, 3, 4, 5, 11]
    """
    have = {t for _, _, t in gold}
    extra = [f for f in silver if f[2] not in have and all(abs(f[2] - k) > gap for k in kept_apart)]
    return sorted(gold + extra, key=lambda f: f[2])


def detect_dataset(data: Path, given: str | None = None) -> str | None:
    """The challenge's name of a data set: `given` (u373, hela), else from the folder or README.

    The folder's name decides first (``PhC-C2DH-U373``, ``ctc-u373``, ``hela`` ...),
    then the first line of its ``README.md``; None when neither names U373 or HeLa.
    """
    if given:
        return DATASETS[given.lower()]
    texts = [data.resolve().name]
    readme = data / "README.md"
    if readme.is_file():
        texts.append(readme.read_text(errors="replace").split("\n", 1)[0])
    for text in texts:
        found = [name for short, name in DATASETS.items() if short in text.lower()]
        if len(found) == 1:
            return found[0]
    return None


def annotated_sequences(data: Path) -> list[str]:
    """The sequences of a CTC folder that have gold truth (``NN_GT/SEG``), sorted."""
    return sorted(
        p.name[:-3]
        for p in data.glob("*_GT")
        if (p / "SEG").is_dir() and (data / p.name[:-3]).is_dir()
    )


def link_frames(frames: list, folder: Path, sequence: str) -> Path:
    """A CTC-layout folder of symbolic links to `frames`; the sequence folder in it."""
    images, seg = folder / sequence, folder / f"{sequence}_GT" / "SEG"
    images.mkdir(parents=True, exist_ok=True)
    seg.mkdir(parents=True, exist_ok=True)
    for frame, gt, _ in frames:
        for src, dst in ((frame, images / frame.name), (gt, seg / gt.name)):
            if not dst.exists():
                dst.symlink_to(src.resolve())
    return images


def split_sequence(data: Path, out: Path, sequence: str, test_count: int) -> tuple[Path, list]:
    """Hold out the last `test_count` annotated frames of one sequence (single-sequence data)."""
    frames = gold_truth_frames(data, sequence)
    if test_count >= len(frames):
        raise SystemExit(
            f"{sequence}: {len(frames)} annotated frames, cannot hold out {test_count}"
        )
    train, test = frames[:-test_count], frames[-test_count:]
    return link_frames(train, out / "split", sequence), test


def stage_train(
    config,
    images: Path,
    run: Path,
    val_count: int,
    runtime,
    *,
    watch_training: bool = False,
    val_images: Path | None = None,
) -> Path:
    """Train (or resume, or skip when finished) on the annotated frames in `images`.

    With `watch_training` (and ``val_count`` 0) the training frames themselves
    are validated: nothing is chosen on them, but the stall check sees the run.
    `val_images` validates on other frames instead (``val_count`` 0).
    """
    data = DataConfig(images=str(images), label_kind="instance", val_count=val_count)
    if watch_training:
        data = replace(data, val_images=str(images))
    if val_images is not None:
        data = replace(data, val_images=str(val_images), val_count=0)
    config = replace(config, data=data)
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


def stage_probabilities(
    run: Path, frames: list, folder: Path, runtime, *, chosen: bool = True, tta: str = "none"
) -> list[np.ndarray]:
    """Foreground probabilities of `frames` by the run's model, kept as ``probNNN.tif``.

    The model is ``best.pt`` when `chosen` (and it exists), else the last
    (averaged) weights; `tta` is the test-time averaging.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model = None
    out = []
    for frame, _, t in frames:
        target = folder / f"prob{t:03d}.tif"
        if not target.exists():
            if model is None:
                best = run / BEST if chosen and (run / BEST).exists() else run / LATEST
                model = load_model(best)
            prob = predict(tifffile.imread(frame), model, tta=tta, runtime=runtime)[0, 1]
            with atomic_output(target, overwrite=False, inputs=[frame]) as tmp:
                tifffile.imwrite(tmp, prob.astype(np.float32))
        out.append(tifffile.imread(target))
    return out


#: The splits of touching cells the folds choose among; ``best``: whichever of the three
#: scores highest on the calibration frames.
SPLITS: tuple[str, ...] = ("none", "watershed", "distance", "best")
#: The split that ships (``--split``): at the recipe's hour per training (7400 steps) the
#: choice among the three on the calibration frames was the best or tied held out on both
#: data sets (d4: U373 0.820, it took the distance split on every fold, the watershed 0.770;
#: HeLa 0.867, the watershed on every fold, the distance split 0.829). At 35 minutes it
#: overfit on HeLa (0.660 against the distance split's 0.807): docs/results.md.
SHIPPED_SPLIT = "best"


def rule_labels(prob: np.ndarray, rule: dict) -> np.ndarray:
    """Instance labels (P, M, N) of probabilities (P, M, N) under a calibrated rule (a dict)."""
    if rule.get("split_depth") is not None:
        depth, radius = rule["split_depth"], rule.get("split_radius", 0.0)
        return distance_split(prob, rule["threshold"], rule["min_size"], depth, radius)
    if rule["seed_threshold"] is not None:
        return split_cells(prob, rule["threshold"], rule["min_size"], rule["seed_threshold"])
    return components(prob, rule["threshold"], rule["min_size"])


def calibrate_rules(probs: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, dict]:
    """The rule chosen for SEG on these frames with each choice of split (:data:`SPLITS`).

    Every rule holds the threshold and smallest object, the watershed's seed
    level or None, the distance split's neck depth or None, and its SEG on
    these frames. ``none``: plain components; ``watershed``: or a watershed
    from confident seeds; ``distance``: or a split at the necks of the cells'
    shape (each of the two includes not splitting); ``best``: the one of the
    three with the highest SEG on these frames.
    """
    rule, _ = calibrate(probs, truth, "instance")
    plain = {"threshold": rule.threshold, "min_size": rule.min_size}
    plain |= {"seed_threshold": None, "split_depth": None, "split_radius": None}
    threshold, seed, seg_watershed = calibrate_split(probs, truth, rule)
    watershed = plain | {"threshold": threshold, "seed_threshold": seed}
    threshold, split, seg_distance = calibrate_distance_split(probs, truth, rule)
    depth, radius = split or (None, None)
    distance = plain | {"threshold": threshold, "split_depth": depth, "split_radius": radius}
    seg_plain = seg_score(
        components(np.stack(probs), rule.threshold, rule.min_size), np.stack(truth)
    )
    rules = {
        "none": plain | {"seg_on_calibration_frames": float(seg_plain)},
        "watershed": watershed | {"seg_on_calibration_frames": float(seg_watershed)},
        "distance": distance | {"seg_on_calibration_frames": float(seg_distance)},
    }
    rules["best"] = max(
        rules.values(), key=lambda r: r["seg_on_calibration_frames"]
    )  # first among equals: the simplest
    return rules


def calibrate_rule(
    probs: list[np.ndarray], truth: list[np.ndarray], split: str = SHIPPED_SPLIT
) -> dict:
    """Threshold, smallest object and the `split` of touching cells (:data:`SPLITS`) for SEG."""
    return calibrate_rules(probs, truth)[split]


def score_labels(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Pooled SEG, AP at IoU 0.5 and objects per frame of labels (P, M, N) against the truth."""
    ap = [
        average_precision(x, g, iou_thresholds=(0.5,))[0.5]
        for x, g in zip(labels, truth, strict=True)
    ]
    return {
        "seg": float(seg_score(labels, truth)),
        "ap50": float(np.mean(ap)),
        "objects_per_frame": [int(np.unique(x[x > 0]).size) for x in labels],
    }


def run_folds(
    config,
    data: Path,
    out: Path,
    sequence: str,
    folds: int,
    val_count: int,
    runtime,
    *,
    final: bool = True,
    silver_gap: int | None = None,
    predict_runtime=None,
    tta: str = "none",
    split: str = SHIPPED_SPLIT,
    jobs: int = 1,
):
    """Leave-frames-out: train per block, calibrate on the other blocks, score the block.

    With ``final=False`` the model on all frames is not trained (its path is None).
    With ``val_count`` 0 every other frame trains and the block is predicted by
    the last (averaged) weights, as the final model is; otherwise the last
    `val_count` of them choose ``best.pt``. With `silver_gap` the sequence's
    silver truth joins each training, except frames within `silver_gap` of a
    scored or validating frame (:func:`with_silver`). `predict_runtime`
    (default `runtime`) predicts the probabilities, with test-time averaging
    `tta`, in a folder named for both and for the model's step
    (``probabilities-d4-step4640/``), so a training continued with a larger
    budget predicts anew. `split` names the rule that scores each fold
    (:data:`SPLITS`); every choice's held-out SEG is reported beside it.
    `jobs` > 1 trains that many folds at once, each in its own process with
    ``cpu_count // jobs`` threads (at least one), before they predict one after
    the other; a budget in minutes is then each process's wall time.

    Returns
    -------
    dict
        Per fold: the frames, the rule (chosen on the other folds), its
        scores, the steps and minutes; the mean and standard deviation of SEG;
        the rule calibrated on all folds; the final model's path.
    """
    frames = gold_truth_frames(data, sequence)
    silver = silver_truth_frames(data, sequence) if silver_gap is not None else []
    if silver_gap is not None and not silver:  # e.g. U373 beside HeLa in one command
        log.warning(f"--silver: {data / f'{sequence}_ST' / 'SEG'}: no labels; gold truth only")
    predict_runtime = predict_runtime or runtime
    try:
        blocks = fold_blocks(len(frames), folds)
    except ValueError as exc:
        raise SystemExit(f"Error: {exc}") from None
    plans = []
    for i, block in enumerate(blocks):
        held = set(block)
        rest = [f for j, f in enumerate(frames) if j not in held]
        if val_count >= len(rest):
            raise SystemExit(
                f"Error: --val-count {val_count}: fold {i} trains on {len(rest)} frames"
            )
        test = [frames[j] for j in block]
        fold = out / f"fold{i}"
        plans.append((config, rest, test, fold, sequence, val_count, runtime, silver, silver_gap))
    if jobs > 1:
        train_in_parallel(plans, jobs)
    probs, truth, runs = [], [], []
    for i, plan in enumerate(plans):
        test = plan[2]
        run = train_fold(*plan)
        chosen = val_count > 0 and (run / BEST).exists()
        step = load_checkpoint(run / (BEST if chosen else LATEST))["train_state"]["step"]
        name = "probabilities" + ("" if tta == "none" else f"-{tta}") + f"-step{step}"
        probs.append(
            stage_probabilities(
                run,
                test,
                out / f"fold{i}" / name,
                predict_runtime,
                chosen=chosen,
                tta=tta,
            )
        )
        truth.append([tifffile.imread(gt) for _, gt, _ in test])
        runs.append(run)
    results = []
    for i, block in enumerate(blocks):
        others = [j for j in range(len(blocks)) if j != i]
        rules = calibrate_rules(
            [p for j in others for p in probs[j]], [g for j in others for g in truth[j]]
        )
        rule = rules[split]
        scores = score_labels(rule_labels(np.stack(probs[i]), rule), np.stack(truth[i]))
        by_split = {
            name: float(seg_score(rule_labels(np.stack(probs[i]), r), np.stack(truth[i])))
            for name, r in rules.items()
        }
        records = read_log(runs[i])
        results.append(
            {
                "fold": i,
                "frames": [frames[j][2] for j in block],
                "rule": rule,
                **scores,
                "seg_by_split": by_split,
                "steps": load_checkpoint(runs[i] / LATEST)["train_state"]["step"],
                "train_minutes": training_seconds(records) / 60,
                "stalled": any("stall" in r for r in records),
            }
        )
    segs = [r["seg"] for r in results]
    final_rule = calibrate_rule(
        [p for ps in probs for p in ps], [g for gs in truth for g in gs], split
    )
    if final:
        train = with_silver(frames, silver, [], 0) if silver else frames
        final = stage_final(
            config, train, out / "final", sequence, final_rule, runtime, watch=frames
        )
    else:
        final = None
    return {
        "folds": results,
        "seg_mean": float(np.mean(segs)),
        "seg_std": float(np.std(segs, ddof=1)) if len(segs) > 1 else 0.0,
        "seg_by_split": {
            name: float(np.mean([r["seg_by_split"][name] for r in results])) for name in SPLITS
        },
        "rule": final_rule,
        "final_model": str(final) if final else None,
    }


def train_in_parallel(plans: list[tuple], jobs: int) -> None:
    """Run :func:`train_fold` on each argument tuple of `plans`, `jobs` at a time.

    Each worker is a fresh (spawned) process limited to ``cpu_count // jobs``
    threads, so the folds share the cores instead of oversubscribing them.
    """
    threads = threads_per_worker(jobs)
    log.info(f"train: {len(plans)} folds, {jobs} at a time, {threads} thread(s) each")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=start_worker, initargs=(threads,)
    ) as pool:
        for done in [pool.submit(train_fold, *plan) for plan in plans]:
            done.result()


def start_worker(threads: int) -> None:
    """A training worker's setup: its share of the cores, and the log on stderr."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def train_fold(
    config,
    rest: list,
    test: list,
    out: Path,
    sequence: str,
    val_count: int,
    runtime,
    silver: list,
    silver_gap: int | None,
) -> Path:
    """Train one fold on the frames `rest` (and silver truth) that `test` is not among."""
    if not silver:
        images = link_frames(rest, out / "data", sequence)
        watch = val_count == 0
        return stage_train(config, images, out / "train", val_count, runtime, watch_training=watch)
    train, val = (rest[:-val_count], rest[-val_count:]) if val_count else (rest, [])
    apart = [t for _, _, t in test + val]
    images = link_frames(with_silver(train, silver, apart, silver_gap), out / "data", sequence)
    # without validation frames the gold training frames are watched (nothing is chosen)
    val_images = link_frames(val or train, out / ("val" if val else "watch"), sequence)
    return stage_train(config, images, out / "train", 0, runtime, val_images=val_images)


def stage_final(
    config,
    frames: list,
    out: Path,
    sequence: str,
    rule: dict,
    runtime,
    *,
    watch: list | None = None,
) -> Path:
    """Train on all annotated frames with the folds' settings; store the folds' rule.

    Nothing is chosen on the training frames; they (or the frames `watch`, a
    subset) are validated only so that the stall check sees the run.

    ``final/model.pt`` is the last (averaged) weights with the folds' whole
    rule as its decision rule (threshold, smallest object, and the watershed
    seeds when the folds chose to split touching cells), so ``biounet predict
    --model final/model.pt`` labels as the folds scored; ``final/rule.json``
    holds the same rule.
    """
    images = link_frames(frames, out / "data", sequence)
    if watch is None or len(watch) == len(frames):
        run = stage_train(config, images, out / "train", 0, runtime, watch_training=True)
    else:
        watched = link_frames(watch, out / "watch", sequence)
        run = stage_train(config, images, out / "train", 0, runtime, val_images=watched)
    target = out / "model.pt"
    if not target.exists():
        model = load_model(run / LATEST)
        depth, seed = rule.get("split_depth"), rule["seed_threshold"]
        method = "distance" if depth is not None else "components" if seed is None else "watershed"
        model.decision = DecisionRule(
            rule["threshold"],
            rule["min_size"],
            f"val_seg on {len(frames)} frames by folds",
            method=method,
            seed_threshold=0.9 if seed is None else seed,
            split_depth=2.0 if depth is None else depth,
            split_radius=rule.get("split_radius") or 0.0,
        )
        save_checkpoint(target, model)
    write_text(out / "rule.json", json.dumps(rule, indent=1) + "\n")
    return target


def write_text(path: Path, text: str) -> None:
    """Write a result file under a temporary name and rename it when complete."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text)


def split_text(rule: dict) -> str:
    """How a rule splits touching cells, for the table ("" for plain components)."""
    if rule.get("split_depth") is not None:
        radius = rule.get("split_radius") or 0.0
        return f", split at necks of {rule['split_depth']:g} px, radius >= {radius:g}"
    if rule["seed_threshold"] is not None:
        return f", split at {rule['seed_threshold']:g}"
    return ""


def folds_table(entries: list[dict]) -> str:
    """The results table of fold runs: per data set the paper's row and ours (mean ± std)."""
    lines = [
        "| data | entry | SEG | AP@0.5 | frames | objects per frame | steps | train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        name, paper = e["data"], e["paper_seg"]
        paper_text = f"{paper:.4f}" if paper is not None else "-"
        lines.append(
            f"| {name} | u-net, paper (Table 2, challenge test set) | {paper_text} |"
            " - | - | - | - | - |"
        )
        folds = e["folds"]
        k = len(folds)
        lines.append(
            f"| {name} | biounet, {k} folds of sequence {e['train_sequence']}"
            f"{'' if e.get('tta', 'none') == 'none' else ', tta ' + e['tta']}, mean ± std | "
            f"{e['seg_mean']:.4f} ± {e['seg_std']:.4f} | "
            f"{np.mean([f['ap50'] for f in folds]):.3f} | {sum(len(f['frames']) for f in folds)} | "
            f"- | {int(np.mean([f['steps'] for f in folds]))} per fold | "
            f"{sum(f['train_minutes'] for f in folds):.1f} min |"
        )
        for f in folds:
            rule = f["rule"]
            split = split_text(rule)
            lines.append(
                f"| {name} | fold {f['fold']}: frames {', '.join(map(str, f['frames']))} "
                f"(threshold {rule['threshold']:g}, min size {rule['min_size']}{split}"
                f"{'; stalled' if f['stalled'] else ''}) | {f['seg']:.4f} | {f['ap50']:.3f} | "
                f"{len(f['frames'])} | {', '.join(map(str, f['objects_per_frame']))} | "
                f"{f['steps']} | {f['train_minutes']:.1f} min |"
            )
    notes = [
        f"{e['data']}: held-out SEG (mean over folds) with the rule chosen among "
        + ", ".join(f"{name} {e['seg_by_split'][name]:.4f}" for name in SPLITS)
        + f" (splits of touching cells; {e.get('split', SHIPPED_SPLIT)} scores the table)."
        for e in entries
        if "seg_by_split" in e
    ]
    return "\n".join(lines) + "\n" + "".join(f"\n{n}\n" for n in notes)


def default_sequences(data: Path, train: str | None, test: str | None, folds: int):
    """The sequence to train on and the one to score (None with folds), checked."""
    found = annotated_sequences(data)
    if train is None:
        if not found:
            gold_truth_frames(data, "01")  # the one-line error for a folder without gold truth
        train = "01" if "01" in found else found[0]
    if folds:
        return train, None
    if test is None:
        others = [s for s in found if s != train]
        if not others:
            raise SystemExit(
                f"Error: {data}: only sequence {train} has gold truth; use --folds K, "
                f"or --test {train} --test-count N"
            )
        test = others[0]
    return train, test


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Train on Cell Tracking Challenge data sets, predict held-out frames and "
        "score them with SEG next to the paper's Table 2."
    )
    parser.add_argument(
        "--data", type=Path, nargs="+", required=True, help="CTC data set folder(s)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/ctc"), help="output folder")
    parser.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        help="which of Table 2's data sets (default: from the folder's name or README)",
    )
    parser.add_argument(
        "--train", help="sequence to train on (default 01, or the one with gold truth)"
    )
    parser.add_argument("--test", help="sequence to score (default: the other sequence)")
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="leave-frames-out: K blocks of the --train sequence's annotated frames (default off)",
    )
    parser.add_argument(
        "--test-count",
        type=int,
        default=4,
        help="with --test equal to --train: hold out its last N annotated frames (default 4)",
    )
    parser.add_argument(
        "--val-count",
        type=int,
        help="annotated training frames held out to validate and calibrate (default 2; with "
        "--folds 0: every other frame trains and the last averaged weights predict, as for "
        "the final model)",
    )
    parser.add_argument(
        "--silver",
        type=int,
        metavar="GAP",
        help="with --folds: add the training sequence's silver truth (NN_ST/SEG) to every "
        "training, except frames within GAP frames of a scored or validating one",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="training precision (auto: bf16 on a CPU with AVX512-BF16 or AMX, as on CUDA; "
        "else fp32); probabilities are always predicted in fp32",
    )
    parser.add_argument(
        "--config", type=Path, default=HERE / "config.yaml", help="training configuration"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--tta",
        default="none",
        choices=("none", "d4"),
        help="with --folds: test-time averaging of the probabilities the folds calibrate and "
        "score (d4: the 8 flips and rotations; predict with the final model with the same "
        "--tta)",
    )
    parser.add_argument(
        "--split",
        default=SHIPPED_SPLIT,
        choices=SPLITS,
        help="with --folds: how touching cells are split, calibrated on the other folds "
        "(distance: at the necks of their shape; watershed: from confident seeds; best: "
        f"whichever scores higher on the calibration frames; default {SHIPPED_SPLIT})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with --folds: folds trained at once, each in its own process with an equal "
        "share of the cores (default 1); --time-limit is then each one's wall time",
    )
    parser.add_argument("--time-limit", help="training budget of each training, e.g. 45m, 1h")
    parser.add_argument("--iterations", type=int, help="training steps (default: the config's)")
    parser.add_argument(
        "--no-final",
        dest="final",
        action="store_false",
        help="with --folds: score the folds only, without the model trained on all frames",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.dataset and len(args.data) > 1:
        raise SystemExit("Error: --dataset: names the data set of a single --data folder")
    if args.val_count is None:
        args.val_count = 0 if args.folds else 2
    if args.silver is not None and not args.folds:
        raise SystemExit("Error: --silver: needs --folds")
    if args.jobs != 1 and not args.folds:
        raise SystemExit("Error: --jobs: needs --folds")
    if args.jobs < 1:
        raise SystemExit(f"Error: --jobs {args.jobs}: must be at least 1")
    runtime = make_runtime(args.device, args.precision, training=True), make_runtime(args.device)
    config = load_config(args.config)
    if args.time_limit:
        config = replace(config, time_limit=args.time_limit)
    if args.iterations:
        config = replace(config, iterations=args.iterations)
    several = len(args.data) > 1
    entries = []
    for data in args.data:
        out = args.out / data.resolve().name if several else args.out
        entries.append(run_data_set(args, config, data, out, runtime))
    if not args.folds:
        return entries[0] if not several else {"data_sets": entries}
    text = folds_table(entries) + f"\nMachine: {entries[0]['machine']}.\n"
    write_text(args.out / "results.md", text)
    folds_figure(
        args.out / "results.png",
        {e["data"]: [f["seg"] for f in e["folds"]] for e in entries},
        paper={e["data"]: e["paper_seg"] for e in entries},
    )
    write_text(args.out / "results.json", json.dumps(entries, indent=1) + "\n")
    print(text)
    return entries[0] if not several else {"data_sets": entries}


def run_data_set(args, config, data: Path, out: Path, runtimes: tuple) -> dict:
    """Train, predict and score one data set: folds, or a train/test split.

    `runtimes` is (training runtime, prediction runtime).
    """
    runtime, predict_runtime = runtimes
    name = detect_dataset(data, args.dataset)
    train_seq, test_seq = default_sequences(data, args.train, args.test, args.folds)
    machine = (
        f"{cpu_model()} ({platform.machine()}), training {runtime.describe()}, "
        f"prediction {predict_runtime.describe()}, torch {torch.__version__}"
    )
    if args.folds:
        results = run_folds(
            config,
            data,
            out,
            train_seq,
            args.folds,
            args.val_count,
            runtime,
            final=args.final,
            silver_gap=args.silver,
            predict_runtime=predict_runtime,
            tta=args.tta,
            split=args.split,
            jobs=args.jobs,
        )
        entry = {
            "data": name or data.resolve().name,
            "paper_seg": PAPER.get(name),
            "train_sequence": train_seq,
            "tta": args.tta,
            "split": args.split,
            **results,
            "machine": machine,
        }
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "results.json", json.dumps(entry, indent=1) + "\n")
        return entry
    if test_seq == train_seq:
        images, test = split_sequence(data, out, train_seq, args.test_count)
    else:
        images, test = data / train_seq, gold_truth_frames(data, test_seq)
        gold_truth_frames(data, train_seq)  # fail early on a missing GT folder
    run = stage_train(config, images, out / "train", args.val_count, runtime)
    predictions = stage_predict(run, test, out, predict_runtime)
    scores = stage_score(predictions, test)
    records = read_log(run)
    label = name or data.resolve().name
    finished = load_checkpoint(run / LATEST)["train_state"]["step"]
    results = {
        "data": label,
        "paper_seg": PAPER.get(name),
        **scores,
        "train_sequence": train_seq,
        "test_sequence": test_seq,
        "steps": finished,
        "train_minutes": training_seconds(records) / 60,
        "machine": machine,
    }
    write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    paper = f"{PAPER[name]:.4f}" if name in PAPER else "-"
    text = (
        "| data | entry | SEG | AP@0.5 | frames | objects per frame | steps | train time |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {label} | u-net, paper (Table 2, challenge test set) | {paper} | - | - | - | - | - |\n"
        f"| {label} | biounet, sequence {test_seq} | {scores['seg']:.4f} | "
        f"{scores['ap']['0.50']:.3f} | {scores['frames']} | "
        f"{', '.join(map(str, scores['objects_per_frame']))} | {finished} | "
        f"{results['train_minutes']:.1f} min |\n"
        f"\nMachine: {results['machine']}.\n"
    )
    write_text(out / "results.md", text)
    print(text)
    return results


if __name__ == "__main__":
    try:
        main()
    except BiounetError as exc:  # bad data, an interrupted training: one line, exit 1
        raise SystemExit(f"Error: {exc}") from None
