"""Recipe study: validation errors against CPU minutes for the choices the paper leaves open.

Every candidate keeps the paper's network, loss (weighted cross-entropy with
Eq. 2) and optimiser (SGD, momentum 0.99) and changes one of: the learning
rate, its schedule, the class-balance weights, the width. Each trains on ISBI
slices 0-19 for the same number of steps (per width) and is scored every
`--every` steps on slices 20-23 with the challenge's pixel, Rand and warping
errors (each the best over the thresholds, PAPER.md section 3), without
test-time averaging. The x axis is training time (wall clock of the training
steps, on however many cores torch uses; scoring is not counted).

    python pipelines/isbi2012/recipe_study.py --data ../shared/data/isbi2012 \\
        --out runs/recipe --seeds 0
    python pipelines/isbi2012/recipe_study.py --out runs/recipe --seeds 1,2 \\
        --only poly_0.003,constant_0.001            # the finalists with more seeds
    python pipelines/isbi2012/recipe_study.py --out runs/recipe --report-only \\
        --figure docs/figures/recipe_isbi2012.png

Calling it again continues: a finished candidate is skipped, an interrupted one
resumes from its last checkpoint, and scores already computed are kept in
RUN/scores.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from biounet.device import make_runtime
from biounet.evaluation.isbi import evaluate_isbi
from biounet.inference.segmentation import predict
from biounet.network.checkpoint import load_checkpoint
from biounet.network.unet import UNet
from biounet.training.config import TrainConfig
from biounet.training.loop import LATEST, load_data, train
from biounet.training.run import prepare_run
from biounet.training.runlog import read_log, training_seconds

log = logging.getLogger("recipe_study")

#: The base recipe: pipelines/isbi2012/config.yaml (16 features, 572 tiles, batch 1).
BASE = Path(__file__).with_name("config.yaml")
#: Candidates: name -> changes to the base recipe (nested like the YAML).
CANDIDATES: dict[str, dict[str, Any]] = {
    "constant_0.001": {"lr": 0.001},  # the default before this study
    "constant_0.003": {"lr": 0.003},
    "constant_0.01": {"lr": 0.01},  # collapses: every pixel "cell" from step 250 on
    # against the stalls of 0.003 on the trivial answer (2 of 5 runs)
    "constant_0.003_warmup200": {"lr": 0.003, "warmup": 200},
    "poly_0.001": {"lr": 0.001, "lr_schedule": "poly"},
    "poly_0.003": {"lr": 0.003, "lr_schedule": "poly", "warmup": 100},
    "poly_0.003_unbalanced": {
        "lr": 0.003,
        "lr_schedule": "poly",
        "warmup": 100,
        "weights": {"class_weights": "none"},
    },
    # weight averaging, added after the study (docs/training.md#weight-averaging); not run
    "constant_0.003_ema": {"lr": 0.003, "ema": 0.999},
    "poly_0.003_width32": {
        "lr": 0.003,
        "lr_schedule": "poly",
        "warmup": 100,
        "model": {"features": 32},
    },
}
METRICS = ("rand_error", "warping_error", "pixel_error")
VAL = slice(20, 24)  # scored; val_count=4 holds out the same slices


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied, nested dictionaries merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) else value
    return out


def candidate_config(name: str, seed: int, data: Path, iterations: int) -> TrainConfig:
    import yaml

    base = yaml.safe_load(BASE.read_text())
    base.update(lr_schedule="constant", warmup=0, ema=0.0)  # what a candidate does not say
    values = merged(base, CANDIDATES[name])
    width = values["model"]["features"]
    values.update(
        seed=seed,
        iterations=iterations * 16 // width if width > 16 else iterations,
        val_every=10**9,  # scored here, with all three metrics
        checkpoint_every=10**9,
        log_every=50,
    )
    values["data"] = {
        "images": str(data / "train-volume.tif"),
        "labels": str(data / "train-labels.tif"),
        "val_count": 4,  # slices 20-23
        "label_kind": "binary",
        "foreground": "high",
    }
    return TrainConfig.from_dict(values)


def score(run: Path, images: np.ndarray, truth: np.ndarray, runtime) -> dict[str, float]:
    """Pixel, Rand and warping error of the run's latest model on slices 20-23."""
    model = UNet.from_checkpoint(run / LATEST)
    prob = predict(images, model, axes="ZYX", runtime=runtime)[:, 1]
    scores = evaluate_isbi(prob, truth, metrics=("pixel", "rand", "warping"), kind="probabilities")
    return {m: float(scores[m]) for m in METRICS}


def study_one(
    name: str, seed: int, args: argparse.Namespace, images: np.ndarray, truth: np.ndarray
) -> Path:
    """Train one candidate in chunks of `args.every` steps, scoring after each chunk.

    Training runs in `args.precision`; scoring always in the device's default
    precision, so candidates trained in different precisions are scored alike.
    """
    runtime = make_runtime(args.device, args.precision)
    scoring = make_runtime(args.device)
    config = candidate_config(name, seed, args.data, args.iterations)
    run = args.out / f"{name}_s{seed}"
    done = run / "scores.jsonl"
    step = 0
    if (run / LATEST).exists():
        step = int(load_checkpoint(run / LATEST)["train_state"]["step"])
    else:
        prepare_run(config, run, overwrite=True)
        done.unlink(missing_ok=True)
    data = load_data(config)
    every = max(1, args.every * 16 // config.model.features)
    while step < config.iterations:
        chunk = min(every - step % every, config.iterations - step)
        summary = train(config, run, runtime=runtime, resume=step > 0, stop_after=chunk, data=data)
        step = summary.steps
        record = {
            "step": step,
            "minutes": training_seconds(read_log(run)) / 60,
            **score(run, images, truth, scoring),
        }
        with done.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info(
            f"{run.name} step {step}: "
            + ", ".join(f"{m} {record[m]:.4f}" for m in METRICS)
            + f" after {record['minutes']:.1f} min"
        )
    return run


def curves(out: Path) -> dict[str, dict[int, list[dict]]]:
    """Scores of every run under `out`: candidate -> seed -> records."""
    found: dict[str, dict[int, list[dict]]] = {}
    for path in sorted(out.glob("*_s*/scores.jsonl")):
        name, _, seed = path.parent.name.rpartition("_s")
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if records:
            found.setdefault(name, {})[int(seed)] = records
    return found


def table(found: dict[str, dict[int, list[dict]]]) -> str:
    """Final scores per candidate: mean (and spread over seeds) of the last evaluation."""

    def cell(values: list[float], digits: int) -> str:
        mean = statistics.fmean(values)
        if len(values) == 1:
            return f"{mean:.{digits}f}"
        return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    lines = [
        "| candidate | seeds | steps | minutes | Rand error | warping error | pixel error |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seeds in found.items():
        last = [records[-1] for records in seeds.values()]
        lines.append(
            f"| {name} | {len(last)} | {last[0]['step']} | "
            f"{statistics.fmean(r['minutes'] for r in last):.1f} | "
            f"{cell([r['rand_error'] for r in last], 3)} | "
            f"{cell([r['warping_error'] for r in last], 6)} | "
            f"{cell([r['pixel_error'] for r in last], 4)} |"
        )
    return "\n".join(lines) + "\n"


def figure(found: dict[str, dict[int, list[dict]]], path: Path) -> None:
    """Three panels (Rand, warping, pixel error) against training minutes, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from biounet.io.atomic import atomic_output

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, seeds) in enumerate(found.items()):
        for j, (_seed, records) in enumerate(sorted(seeds.items())):
            minutes = [r["minutes"] for r in records]
            for ax, metric in zip(axes, METRICS, strict=True):
                ax.plot(
                    minutes,
                    [r[metric] for r in records],
                    color=colours[i % len(colours)],
                    marker="o",
                    markersize=3,
                    alpha=1.0 if j == 0 else 0.5,
                    label=name if j == 0 else None,
                )
    for ax, metric in zip(axes, METRICS, strict=True):
        ax.set_xlabel("training minutes (2-core CPU)")
        ax.set_title(f"{metric.replace('_', ' ')}, ISBI slices 20-23")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/isbi2012"))
    parser.add_argument("--out", type=Path, default=Path("runs/recipe"))
    parser.add_argument("--only", help="comma-separated candidates [all]: " + ", ".join(CANDIDATES))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds [0]")
    parser.add_argument("--iterations", type=int, default=1500, help="steps at width 16 [1500]")
    parser.add_argument("--every", type=int, default=250, help="score every N steps [250]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision", default="auto", help="of training: auto, fp32, bf16, fp16 [auto]"
    )
    parser.add_argument("--report-only", action="store_true", help="only the table and figure")
    parser.add_argument("--figure", type=Path, help="write the figure here [OUT/recipe.png]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidates: {', '.join(unknown)}")
    if not args.report_only:
        images = tifffile.imread(args.data / "train-volume.tif")[VAL]
        truth = tifffile.imread(args.data / "train-labels.tif")[VAL]
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in names:
                study_one(name, seed, args, images, truth)
    found = curves(args.out)
    text = table(found)
    (args.out / "table.md").write_text(text)
    print(text)
    figure(found, args.figure or args.out / "recipe.png")


if __name__ == "__main__":
    main()
