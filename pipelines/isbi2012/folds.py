"""ISBI 2012 errors on slices that neither trained nor chose anything: K folds with retraining.

    python pipelines/isbi2012/folds.py --data ../shared/data/isbi2012 --out runs/isbi_folds \\
        --folds 4 --tta d4

The 24 labelled training slices are cut into K blocks of consecutive slices
(:func:`biounet.evaluation.folds.fold_blocks`). For block I a network is
trained with the ISBI recipe (``config.yaml``) on the other slices, nothing
chosen on them: its last (averaged) weights predict block I, as the shipped
model's do (``foldI/probabilities.tif``, with ``--tta``). Each error of block
I is then read at the threshold that is best on the *other* blocks
(:func:`biounet.evaluation.folds.chosen_elsewhere`), so no slice is trained on,
or calibrated on, and scored. ``results.md`` gives each error's mean and
standard deviation over the blocks beside the paper's Table 1; ``final/``
trains on all 24 slices with the same settings (``--no-final`` skips it).

Every stage skips what exists, so calling it again continues where it stopped;
``--time-limit`` is each training's whole budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet.device import make_runtime
from biounet.errors import BiounetError
from biounet.evaluation.folds import chosen_elsewhere, fold_blocks
from biounet.evaluation.isbi import evaluate_isbi
from biounet.inference.segmentation import predict
from biounet.io.atomic import atomic_output
from biounet.network.unet import load_model
from biounet.training.config import DataConfig, load_config
from biounet.training.loop import LATEST
from biounet.training.run import finish_run, saved_step
from biounet.training.runlog import read_log, training_seconds

HERE = Path(__file__).resolve().parent
PAPER = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
METRICS = {"rand": "rand_error", "warping": "warping_error", "pixel": "pixel_error"}
#: Training slices validated during a fold's training, for the stall check and
#: the plot only (nothing is chosen on them): the last ones of its training slices.
WATCHED = 2
log = logging.getLogger("isbi2012.folds")


def write_stack(path: Path, stack: np.ndarray) -> None:
    """A ZYX stack as an ImageJ TIFF, under a temporary name until complete."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=False) as tmp:
        tifffile.imwrite(tmp, stack, imagej=True, metadata={"axes": "ZYX"})


def stage_train(config, volume, labels, slices: list[int], out: Path, runtime) -> Path:
    """Train (or resume, or see done) on `slices` of the volume; the last few are watched."""
    data = out / "data"
    write_stack(data / "train-volume.tif", volume[slices])
    write_stack(data / "train-labels.tif", labels[slices])
    watched = slices[-WATCHED:]
    write_stack(data / "watch-volume.tif", volume[watched])
    write_stack(data / "watch-labels.tif", labels[watched])
    config = replace(
        config,
        data=DataConfig(
            images=str(data / "train-volume.tif"),
            labels=str(data / "train-labels.tif"),
            val_images=str(data / "watch-volume.tif"),
            val_labels=str(data / "watch-labels.tif"),
            label_kind="binary",
            foreground="high",
        ),
    )
    run = out / "train"
    step = finish_run(config, run, runtime=runtime, progress=True)
    log.info(f"{run}: {step} of {config.iterations} steps")
    return run


def stage_probabilities(run: Path, images: np.ndarray, path: Path, tta: str, runtime):
    """Cell probabilities (P, M, N) of `images` by the run's last weights, kept in `path`.

    `path` names the step of the weights, so a training continued with a larger
    ``--time-limit`` predicts anew instead of reusing the shorter one's file.
    """
    if not path.exists():
        model = load_model(run / LATEST)
        prob = predict(images, model, axes="ZYX", tta=tta, runtime=runtime)[:, 1]
        write_stack(path, prob.astype(np.float32))
    return tifffile.imread(path)


def score_folds(probs: list[np.ndarray], truths: list[np.ndarray]) -> dict:
    """Each block's errors at the thresholds best on the other blocks; mean and spread.

    Parameters
    ----------
    probs, truths : list of ndarray of shape (P, M, N)
        Per block, its out-of-fold cell probabilities and its labels.

    Returns
    -------
    dict
        Per error key: ``per_fold`` errors, the ``thresholds`` chosen elsewhere,
        their ``mean`` and ``std`` (ddof 1).
    """
    per_fold = [
        evaluate_isbi(p, t, metrics=tuple(METRICS), kind="probabilities")
        for p, t in zip(probs, truths, strict=True)
    ]
    out = {}
    for key in METRICS.values():
        errors, chosen = chosen_elsewhere(per_fold, key)
        out[key] = {
            "per_fold": errors,
            "thresholds": chosen,
            "mean": float(np.mean(errors)),
            "std": float(np.std(errors, ddof=1)) if len(errors) > 1 else 0.0,
        }
    return out


def table(result: dict) -> str:
    """The folds' errors beside the paper's Table 1."""
    lines = [
        "| error | paper (Table 1, test set) | held-out folds: mean ± std | per fold "
        "| thresholds (chosen on the other folds) |",
        "|---|---|---|---|---|",
    ]
    for key in METRICS.values():
        r = result["scores"][key]
        lines.append(
            f"| {key} | {PAPER[key]:g} | {r['mean']:.5f} ± {r['std']:.5f} | "
            f"{', '.join(f'{e:.5f}' for e in r['per_fold'])} | {', '.join(r['thresholds'])} |"
        )
    folds = ", ".join(
        f"fold {f['fold']}: slices {f['slices'][0]}-{f['slices'][-1]}, {f['steps']} steps, "
        f"{f['train_minutes']:.1f} min"
        for f in result["folds"]
    )
    return "\n".join(lines) + f"\n\n{folds}. tta {result['tta']}. Machine: {result['machine']}.\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared/data/isbi2012")
    parser.add_argument("--out", type=Path, default=Path("runs/isbi_folds"))
    parser.add_argument("--folds", type=int, default=4, help="blocks of slices (default 4)")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    parser.add_argument("--tta", default="d4", choices=("none", "d4", "rot7"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="training precision (auto: bf16 on CUDA and on CPUs with native bf16); "
        "probabilities are predicted in fp32",
    )
    parser.add_argument("--time-limit", help="each training's budget, e.g. 45m")
    parser.add_argument("--iterations", type=int, help="training steps (default: the config's)")
    parser.add_argument(
        "--no-final",
        dest="final",
        action="store_false",
        help="score the folds only, without the model trained on all slices",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("train-volume.tif", "train-labels.tif"):
        if not (args.data / name).is_file():
            raise SystemExit(f"Error: {args.data / name}: not found (give --data)")
    volume = tifffile.imread(args.data / "train-volume.tif")
    labels = tifffile.imread(args.data / "train-labels.tif")
    try:
        blocks = fold_blocks(len(volume), args.folds)
    except ValueError as exc:
        raise SystemExit(f"Error: {exc}") from None
    config = load_config(args.config)
    if args.time_limit:
        config = replace(config, time_limit=args.time_limit)
    if args.iterations:
        config = replace(config, iterations=args.iterations)
    train_rt = make_runtime(args.device, args.precision, training=True)
    predict_rt = make_runtime(args.device)
    probs, truths, folds = [], [], []
    for i, block in enumerate(blocks):
        rest = [z for z in range(len(volume)) if z not in block]
        out = args.out / f"fold{i}"
        run = stage_train(config, volume, labels, rest, out, train_rt)
        step = saved_step(run / LATEST)  # in the name: a longer training predicts anew
        prob = stage_probabilities(
            run,
            volume[block],
            out / f"probabilities-{args.tta}-step{step}.tif",
            args.tta,
            predict_rt,
        )
        probs.append(prob)
        truths.append(labels[block])
        folds.append(
            {
                "fold": i,
                "slices": block,
                "steps": step,
                "train_minutes": training_seconds(read_log(run)) / 60,
            }
        )
    final = None
    if args.final:
        final = stage_train(
            config, volume, labels, list(range(len(volume))), args.out / "final", train_rt
        )
    result = {
        "folds": folds,
        "tta": args.tta,
        "scores": score_folds(probs, truths),
        "final_model": str(final / LATEST) if final else None,
        "machine": f"{platform.machine()}, training {train_rt.describe()}, prediction "
        f"{predict_rt.describe()}, torch {torch.__version__}",
    }
    text = table(result)
    for name, content in (("results.md", text), ("results.json", json.dumps(result, indent=1))):
        with atomic_output(args.out / name, overwrite=True) as tmp:
            tmp.write_text(content + ("" if content.endswith("\n") else "\n"))
    print(text)
    return result


if __name__ == "__main__":
    try:
        main()
    except BiounetError as exc:  # bad data, an interrupted training: one line, exit 1
        raise SystemExit(f"Error: {exc}") from None
