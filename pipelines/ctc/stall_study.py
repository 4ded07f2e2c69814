"""Why a training stalls on low-contrast frames: input statistics, the network at its start, runs.

    python pipelines/ctc/stall_study.py --data ../shared/data/ctc-hela --out runs/stall

For the annotated frames of one sequence (the last ``--val-count`` held out)
it prints, for each grey-value scaling (the dtype's range, the authors'
setting; the training frames' mean and standard deviation, ``mode: fit``):

1. the scaled input's mean and standard deviation;
2. of freshly initialised networks (``--seeds``), the share of ReLUs that are
   on in some and off in other pixels of a frame (units that act nonlinearly
   on it; a unit on everywhere is linear there, one off everywhere is dead)
   and the spread of the output logit over the frame;
3. with ``--steps N``, a short training of each (``pipelines/ctc/config.yaml``
   at ``--features`` and ``--input-size``, the stall check off so that both
   run their N steps), its loss over the second half, its validation SEG and
   pixel error, and the same two statistics of the trained network.

The weight maps' constant-answer loss (:mod:`biounet.training.stall`) is
printed first: a loss that stays there is a network that ignores the image.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import gold_truth_frames, link_frames  # noqa: E402  (the pipeline beside this file)

from biounet.device import make_runtime  # noqa: E402
from biounet.network.normalize import Normalization, fit_normalization, normalize  # noqa: E402
from biounet.network.unet import UNet, UNetConfig  # noqa: E402
from biounet.training.config import DataConfig, load_config  # noqa: E402
from biounet.training.data import load_pairs  # noqa: E402
from biounet.training.loop import LATEST, train  # noqa: E402
from biounet.training.run import prepare_run  # noqa: E402
from biounet.training.runlog import read_log  # noqa: E402
from biounet.training.stall import constant_loss  # noqa: E402
from biounet.training.weight_map import weight_maps  # noqa: E402


def unit_statistics(net: UNet, image: np.ndarray) -> tuple[float, float, float]:
    """Share of ReLU channels on in 5-95% of a frame's pixels (first layer, all), logit spread.

    Parameters
    ----------
    net : UNet
    image : ndarray of shape (C, M, N), as stored (the model scales it)
    """
    x = torch.as_tensor(normalize(image[None], net.normalization))
    outputs = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: outputs.append(o))
        for m in net.modules()
        if isinstance(m, torch.nn.ReLU)
    ]
    net.eval()
    with torch.no_grad():
        logits = net(x)
    for h in hooks:
        h.remove()
    shares = []
    for o in outputs:
        on = (o > 0).flatten(2).float().mean(-1)[0]
        shares.append(float(((on > 0.05) & (on < 0.95)).float().mean()))
    diff = logits[0, 1] - logits[0, 0]
    return shares[0], float(np.mean(shares)), float(diff.std())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="CTC data set folder")
    parser.add_argument("--sequence", default="01", help="sequence with gold truth (default 01)")
    parser.add_argument("--out", type=Path, default=Path("runs/stall_study"))
    parser.add_argument("--val-count", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="initialisations per scaling")
    parser.add_argument("--steps", type=int, default=0, help="train each scaling N steps")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=380)
    parser.add_argument("--crop", type=int, default=252, help="frame crop for the statistics")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    frames = gold_truth_frames(args.data, args.sequence)
    images = link_frames(frames, args.out / "data", args.sequence)
    samples = load_pairs(images, None, label_kind="instance")
    train_set = samples[: len(samples) - args.val_count]
    targets = weight_maps([s.instances for s in train_set])
    trivial = constant_loss([t.classes for t in targets], [t.weights for t in targets])
    raw = np.concatenate([s.image.ravel() for s in train_set]).astype(np.float64)
    lines = [
        f"{len(train_set)} training frames ({samples[0].image.dtype}, mean {raw.mean():.1f}, "
        f"std {raw.std():.1f}); the constant answer's loss {trivial:.4f}",
        "",
        "| scaling | input mean | input std | nonlinear ReLUs at init, first layer | all layers"
        " | logit spread at init"
        + (
            " | loss, 2nd half | val SEG | val pixel error | nonlinear ReLUs | logit spread |"
            if args.steps
            else " |"
        ),
        "|---|---|---|---|---|---|" + ("---|---|---|---|---|" if args.steps else ""),
    ]
    crop = train_set[0].image[:, : args.crop, : args.crop]
    config = load_config(args.config)
    runtime = make_runtime("cpu")
    for name, norm in (("dtype range", Normalization()), ("fit (mean, std)", Normalization("fit"))):
        fitted = fit_normalization([s.image for s in train_set], norm)
        x = normalize(crop, fitted)
        stats = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            stats.append(unit_statistics(UNet(UNetConfig(features=16), fitted), crop))
        first, share, spread = np.mean(stats, axis=0)
        row = (
            f"| {name} | {x.mean():.3f} | {x.std():.3f} | {first:.2f} | {share:.2f} | "
            f"{spread:.3f} |"
        )
        if args.steps:
            run = args.out / name.split()[0]
            cfg = replace(
                config,
                model=replace(config.model, features=args.features),
                normalization=norm,
                data=DataConfig(
                    images=str(images), label_kind="instance", val_count=args.val_count
                ),
                input_size=args.input_size,
                iterations=args.steps,
                val_every=args.steps,
                checkpoint_every=args.steps,
                log_every=max(1, args.steps // 20),
                stall_after=0,
                time_limit=None,
                workers=0,
            )
            if not (run / LATEST).exists():
                prepare_run(cfg, run, overwrite=True)
                train(cfg, run, runtime=runtime)
            records = read_log(run)
            losses = [r["loss"] for r in records if "loss" in r and r["step"] > args.steps / 2]
            val = [r for r in records if "val_seg" in r][-1]
            trained = UNet.from_checkpoint(run / LATEST)
            _, share, spread = unit_statistics(trained, crop)
            row += (
                f" {np.mean(losses):.4f} | {val['val_seg']:.4f} | {val['val_pixel_error']:.4f} |"
                f" {share:.2f} | {spread:.3f} |"
            )
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
