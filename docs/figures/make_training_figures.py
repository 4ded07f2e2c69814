"""Make the figures of docs/weight_map.md and docs/augmentation.md with the biounet commands.

    python docs/figures/make_training_figures.py [--isbi-dir ../shared/data/isbi2012]

Writes docs/figures/weight_map_isbi.png, weight_map_cells.png, augment_isbi.png and
augment_cells.png. The synthetic touching cells are written to a temporary folder
first; the ISBI figures are skipped when the data is not there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from biounet.synthetic import touching_cells

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def biounet(*args: object) -> None:
    command = [sys.executable, "-m", "biounet", *(str(a) for a in args)]
    print("$ biounet", " ".join(str(a) for a in args))
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--isbi-dir", type=Path, default=REPO.parent / "shared/data/isbi2012")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(3)
        pairs = [touching_cells((256, 256), n_cells=14, rng=rng) for _ in range(4)]
        tifffile.imwrite(tmp / "cells.tif", np.stack([p[0] for p in pairs]))
        tifffile.imwrite(
            tmp / "cells_labels.tif", np.stack([p[1] for p in pairs]).astype(np.uint16)
        )
        biounet(
            "weight-map", tmp / "cells_labels.tif", "-o", tmp / "cells_weights.tif",
            "--label-kind", "instance", "--image", tmp / "cells.tif",
            "--png", HERE / "weight_map_cells.png", "--overwrite",
        )  # fmt: skip
        biounet(
            "augment", tmp / "cells.tif", tmp / "cells_labels.tif", "-o",
            HERE / "augment_cells.png", "--label-kind", "instance", "--input-size", 256,
            "--padding", "same", "--n", 6, "--seed", 1, "--overwrite",
        )  # fmt: skip
        volume, labels = args.isbi_dir / "train-volume.tif", args.isbi_dir / "train-labels.tif"
        if not (volume.is_file() and labels.is_file()):
            print(f"ISBI data not found in {args.isbi_dir}: ISBI figures skipped")
            return
        biounet(
            "weight-map", labels, "-o", tmp / "isbi_weights.tif", "--image", volume,
            "--png", HERE / "weight_map_isbi.png", "--crop", "0:256,256:512", "--overwrite",
        )  # fmt: skip
        biounet(
            "augment", volume, labels, "-o", HERE / "augment_isbi.png", "--n", 6, "--seed", 0,
            "--dpi", 50, "--overwrite",
        )  # fmt: skip


if __name__ == "__main__":
    main()
