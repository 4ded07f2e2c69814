"""Short learning-rate sweep for the training defaults (the paper gives no learning rate).

Trains the CPU configuration (features=16, 572 tiles, batch 1, momentum 0.99) for a
few hundred steps at each learning rate on ISBI slices 0-19 and reports the
validation errors on slices 20-23. Run:

    python pipelines/isbi2012/lr_sweep.py --data ../shared/data/isbi2012 --out runs/lr_sweep
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from biounet.device import make_runtime
from biounet.network.unet import UNetConfig
from biounet.training.config import DataConfig, TrainConfig
from biounet.training.run import run_training
from biounet.training.runlog import read_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/isbi2012"))
    parser.add_argument("--out", type=Path, default=Path("runs/lr_sweep"))
    parser.add_argument("--lrs", default="0.003,0.01,0.03,0.1,0.3")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for lr in [float(v) for v in args.lrs.split(",")]:
        cfg = TrainConfig(
            model=UNetConfig(features=args.features),
            data=DataConfig(
                images=str(args.data / "train-volume.tif"),
                labels=str(args.data / "train-labels.tif"),
                val_count=4,
            ),
            iterations=args.iterations,
            lr=lr,
            val_every=args.iterations // 4,
            checkpoint_every=args.iterations,
            log_every=10,
        )
        run = args.out / f"lr_{lr:g}"
        try:
            summary = run_training(cfg, run, runtime=make_runtime("cpu"), overwrite=True)
            val = [r for r in read_log(run) if "val_rand_error" in r]
            losses = [r["loss"] for r in read_log(run) if "loss" in r]
            rows.append(
                {
                    "lr": lr,
                    "final_loss": sum(losses[-5:]) / 5,
                    "val_pixel_error": val[-1]["val_pixel_error"],
                    "val_rand_error": val[-1]["val_rand_error"],
                    "best_val_rand_error": summary.best.get("val_rand_error"),
                }
            )
        except Exception as exc:  # a diverging rate is a result, not a crash
            rows.append({"lr": lr, "error": str(exc)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
