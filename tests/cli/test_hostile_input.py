"""Hostile input: every case is one line of a table.

For each: the exit status, one line ``Error: <file or option>: <problem>`` on
stderr naming the file or option, no traceback, and the state of the working
folder before and after (every file's bytes): a refused command destroys
nothing and leaves nothing behind, not even a temporary or a run folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from click.testing import CliRunner

from biounet.cli import main
from biounet.network.checkpoint import FORMAT, FORMAT_VERSION, save_checkpoint
from biounet.network.unet import UNet, UNetConfig
from biounet.synthetic import touching_cells
from biounet.training.config import DataConfig, TrainConfig, dump_config

#: The learning rate a config without one trains with (the "good" config of the table).
DEFAULT_LR = TrainConfig().lr

MODEL = ["--model", "model.pt", "--tile-size", "116", "--no-progress"]
TRAIN = ["--images", "cells.tif", "--labels", "cells_labels.tif", "--label-kind", "instance"]
TRAIN_CFG = ["--no-progress", "--device", "cpu"]


def _bomb(path: Path) -> None:
    """A TIFF whose header claims 200000 x 200000 pixels in one small zlib strip."""
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zlib", metadata=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for name in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            tif.pages[0].tags[name].overwrite(200000)


def _config(**changes) -> str:
    cfg = TrainConfig(
        model=UNetConfig(features=4, depth=2),
        data=DataConfig(
            images="cells.tif", labels="cells_labels.tif", label_kind="instance", val_count=1
        ),
        input_size=76,
        iterations=2,
        workers=0,
    )
    values = cfg.to_dict()
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (values[section] if section else values)[name] = value
    return yaml.safe_dump(values)


@pytest.fixture(scope="module")
def world_template(tmp_path_factory) -> Path:
    """The files every case starts from (copied per case)."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    save_checkpoint(root / "model.pt", UNet(UNetConfig(features=4, depth=3)))
    image = rng.integers(0, 255, (48, 64)).astype(np.uint8)
    tifffile.imwrite(root / "img.tif", image)
    bad = image.astype(np.float32)
    bad[10:20, 10:20] = np.nan
    tifffile.imwrite(root / "nan.tif", bad)
    bad[10:20, 10:20] = np.inf
    tifffile.imwrite(root / "inf.tif", bad)
    _bomb(root / "bomb.tif")
    data = (root / "img.tif").read_bytes()
    (root / "truncated.tif").write_bytes(data[: len(data) // 2])
    (root / "text.tif").write_text("not an image")
    (root / "text.pt").write_text("not a checkpoint")
    deep = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": {"depth": 40},
        "normalization": {},
        "model_state": {},
    }
    torch.save(deep, root / "depth40.pt")
    (root / "notes.txt").write_text("a file, not a folder")
    (root / "o.png").write_bytes(b"an existing preview")
    (root / "existing.tif").write_bytes(b"an existing result")
    (root / "existing.json").write_text("{}")
    (root / "existing.png").write_bytes(b"an existing figure")
    two = root / "two"
    two.mkdir()
    tifffile.imwrite(two / "a.tif", image)
    tifffile.imwrite(two / "b.tif", image)
    gt = (rng.random((48, 64)) > 0.5).astype(np.uint8) * 255
    tifffile.imwrite(root / "gt.tif", gt)
    tifffile.imwrite(root / "pred.tif", rng.random((48, 64)).astype(np.float32))
    pairs = [touching_cells((64, 64), n_cells=4, radius=(8, 12), rng=rng) for _ in range(3)]
    images = np.stack([p[0] for p in pairs])
    tifffile.imwrite(root / "cells.tif", images, photometric="minisblack")
    labels = np.stack([p[1] for p in pairs]).astype(np.uint16)
    tifffile.imwrite(root / "cells_labels.tif", labels, photometric="minisblack")
    nan_images = images.astype(np.float32)
    nan_images[1, 5, 7] = np.nan
    tifffile.imwrite(root / "cells_nan.tif", nan_images, photometric="minisblack")
    configs = {
        "batch_true.yaml": _config(batch_size=True),
        "lr_text.yaml": _config(lr="fast"),
        "depth40.yaml": _config(**{"model.depth": 40}),
        "features_text.yaml": _config(**{"model.features": "wide"}),
        "padding_odd.yaml": _config(**{"model.padding": "reflect"}),
        "elastic_text.yaml": _config(**{"augment.elastic": "yes"}),
        "val_many.yaml": _config(**{"data.val_count": 10}),
        "good.yaml": _config(),
    }
    for name, text in configs.items():
        (root / name).write_text(text)
    (root / "model_5.yaml").write_text("model: 5\n")
    (root / "broken.yaml").write_text("lr: [1, 2\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    run = root / "oldrun"
    run.mkdir()
    (run / "config.yaml").write_text(
        dump_config(TrainConfig.from_dict(yaml.safe_load(configs["good.yaml"])))
    )
    (root / "busy").mkdir()
    (root / "busy" / "keep.txt").write_text("someone's file")
    _runs_and_packages(root, configs["good.yaml"], image)
    return root


def _runs_and_packages(root: Path, good: str, image: np.ndarray) -> None:
    """Run folders with a latest.pt, hostile configs and images, hand-made model packages."""
    cfg = TrainConfig.from_dict(yaml.safe_load(good))
    torch.manual_seed(0)
    net = UNet(cfg.model)

    def run(name, state, config=cfg):
        (root / name).mkdir()
        (root / name / "config.yaml").write_text(dump_config(config))
        save_checkpoint(root / name / "latest.pt", net, train_state=state)

    run("donerun", {"step": 1, "config": cfg.to_dict()})  # no optimizer: a damaged state
    run("editedrun", {"step": 1, "config": cfg.to_dict()}, config=cfg.with_overrides(lr=0.01))
    run("nostaterun", {"step": 1})
    (root / "withconfig").mkdir()
    (root / "withconfig" / "run.yaml").write_text(good)
    (root / "latin1.yaml").write_bytes("data:\n  images: caf\xe9.tif\n".encode("latin-1"))
    (root / "seed_neg.yaml").write_text(_config(seed=-1))
    (root / "workers_huge.yaml").write_text(_config(workers=100000))
    tifffile.imwrite(root / "one.tif", np.zeros((1, 1), np.uint8))
    tifffile.imwrite(root / "one_labels.tif", np.ones((1, 1), np.uint16))
    tifffile.imwrite(root / "bit.tif", image > 128, photometric="minisblack")
    tifffile.imwrite(root / "bigtile.tif", np.zeros((64, 64), np.uint8), tile=(64, 64),
                     compression="zlib", metadata=None)  # fmt: skip
    with tifffile.TiffFile(root / "bigtile.tif", mode="r+b") as tif:
        for name in ("TileWidth", "TileLength"):
            tif.pages[0].tags[name].overwrite(65520)
    (root / "damaged.zip").write_bytes(b"PK\x03\x04 not really a zip archive")
    small = UNet(UNetConfig(features=4, depth=3))
    weights = {k: v.detach() for k, v in small.state_dict().items()}

    def package(name, source, **weights_entry):
        folder = root / name
        folder.mkdir()
        torch.save(weights, folder / "weights.pt")
        rdf = {
            "config": {
                "biounet": {
                    "model_config": {"features": 4, "depth": 3},
                    "normalization": {},
                }
            },
            "weights": {"pytorch_state_dict": {"source": source, **weights_entry}},
        }
        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
        return folder

    digest = hashlib.sha256((package("pkg_ok", "weights.pt") / "weights.pt").read_bytes())
    package("pkg_sha_ok", "weights.pt", sha256=digest.hexdigest())
    package("pkg_sha_bad", "weights.pt", sha256="0" * 64)
    package("pkg_up", "../model.pt")
    package("pkg_abs", "/dev/zero")
    package("pkg_missing", "gone.pt")
    (package("pkg_link", "link.pt") / "link.pt").symlink_to("../model.pt")
    broken = package("pkg_yaml", "weights.pt")
    (broken / "rdf.yaml").write_text("weights: [unclosed\n")
    (package("pkg_keys", "weights.pt") / "rdf.yaml").write_text(
        yaml.safe_dump({"config": {"biounet": {}}, "weights": {"pytorch_state_dict": {}}})
    )


# id, command line, exit status, message (must appear in the one line), files created
CASES = [
    # predict: outputs
    ("predict-onto-input", "predict img.tif -o img.tif --overwrite", 1, "img.tif: is an input", ()),
    ("predict-input-exists", "predict img.tif -o img.tif", 1, "img.tif: is an input", ()),
    ("predict-existing", "predict img.tif -o existing.tif", 1, "existing.tif: already exists", ()),
    ("predict-jpg", "predict img.tif -o seg.jpg", 1, "seg.jpg: predictions are written as", ()),
    ("predict-no-suffix", "predict img.tif -o seg", 1, "seg: predictions are written as", ()),
    ("predict-no-folder", "predict img.tif -o nowhere/o.tif", 1, "folder nowhere does not", ()),
    ("predict-folder-is-file", "predict img.tif -o notes.txt/o.tif", 1, "is not a folder", ()),
    (
        "predict-preview-exists",
        "predict img.tif -o o.tif --preview",
        1,
        "o.png: already exists",
        (),
    ),
    ("predict-two-into-file", "predict two -o existing.tif", 1, "need an output folder", ()),
    ("predict-two-ok", "predict two -o res", 0, "", ("res",)),
    # predict: pixels and headers
    ("predict-nan", "predict nan.tif -o o.tif", 1, "nan.tif: NaN or infinite pixel values", ()),
    ("predict-inf", "predict inf.tif -o o.tif", 1, "inf.tif: NaN or infinite pixel values", ()),
    (
        "predict-bomb",
        "predict bomb.tif -o o.tif",
        1,
        "bomb.tif: the header claims 200000x200000",
        (),
    ),
    ("predict-truncated", "predict truncated.tif -o o.tif", 1, "truncated.tif: ", ()),
    ("predict-text", "predict text.tif -o o.tif", 1, "text.tif: not a TIFF file", ()),
    ("predict-missing", "predict missing.tif -o o.tif", 1, "missing.tif: no such file", ()),
    ("predict-folder-input", "predict notes.txt -o o.tif", 1, "notes.txt: not a TIFF file", ()),
    # predict: options
    ("predict-threshold-nan", "predict img.tif -o o.tif --threshold nan", 1, "--threshold nan", ()),
    ("predict-threshold-big", "predict img.tif -o o.tif --threshold 1.5", 1, "--threshold 1.5", ()),
    ("predict-seed-neg", "predict img.tif -o o.tif --seed-threshold -1", 1, "--seed-threshold", ()),
    ("predict-depth-zero", "predict img.tif -o o.tif --split-depth 0", 1, "--split-depth", ()),
    ("predict-radius-neg", "predict img.tif -o o.tif --split-radius -1", 1, "--split-radius", ()),
    ("predict-workers-0", "predict img.tif -o o.tif --workers 0", 1, "--workers 0: must be", ()),
    ("predict-memory-0", "predict img.tif -o o.tif --memory 0", 1, "--memory 0: must be", ()),
    ("predict-batch-0", "predict img.tif -o o.tif --batch-size 0", 1, "--batch-size 0: must", ()),
    ("predict-window-neg", "predict img.tif -o o.tif --window=-8", 1, "--window -8", ()),
    ("predict-window-odd", "predict img.tif -o o.tif --window 101", 1, "101 is not a valid", ()),
    ("predict-min-size-neg", "predict img.tif -o o.tif --min-size -1", 1, "--min-size -1", ()),
    ("predict-axes", "predict img.tif -o o.tif --axes ZYX", 1, "img.tif: axes 'ZYX' do not", ()),
    ("predict-device", "predict img.tif -o o.tif --device cuda:7", 1, "--device cuda:7", ()),
    # predict: models
    ("model-depth40", "predict img.tif -o o.tif --model depth40.pt", 1, "depth40.pt: invalid", ()),
    ("model-text", "predict img.tif -o o.tif --model text.pt", 1, "text.pt: not a readable", ()),
    ("model-missing", "predict img.tif -o o.tif --model no.pt", 1, "no.pt: no such checkpoint", ()),
    # predict: what a success leaves
    ("predict-ok", "predict img.tif -o o.tif", 0, "", ("o.tif",)),
    ("predict-ok-zarr", "predict img.tif -o o.zarr --kind mask", 0, "", ("o.zarr",)),
    # evaluate
    ("json-onto-prediction", "evaluate pred.tif gt.tif --json pred.tif", 1, "pred.tif: --json", ()),
    ("json-new", "evaluate pred.tif gt.tif --json gt.json", 0, "", ("gt.json",)),
    (
        "json-exists",
        "evaluate pred.tif gt.tif --json existing.json",
        1,
        "existing.json: already",
        (),
    ),
    ("json-no-folder", "evaluate pred.tif gt.tif --json no/s.json", 1, "folder no does not", ()),
    ("evaluate-nan", "evaluate nan.tif gt.tif", 1, "nan.tif: probability map has NaN", ()),
    ("evaluate-shape", "evaluate cells.tif gt.tif", 1, "cells.tif: shape", ()),
    ("evaluate-bomb", "evaluate pred.tif bomb.tif", 1, "bomb.tif: ", ()),
    # weight-map and augment
    ("weights-onto-input", "weight-map gt.tif -o gt.tif --overwrite", 1, "gt.tif: is an input", ()),
    ("weights-png", "weight-map gt.tif -o w.png", 1, "w.png: the weight map is written", ()),
    ("weights-fig-exists", "weight-map gt.tif -o w.tif --png existing.png", 1, "existing.png", ()),
    ("weights-fig-onto-out", "weight-map gt.tif -o w.tif --png w.tif", 1, "must be a .png", ()),
    ("augment-exists", "augment cells.tif cells_labels.tif -o existing.png", 1, "existing.png", ()),
    ("augment-jpg", "augment cells.tif cells_labels.tif -o a.jpg", 1, "a.jpg: the figure", ()),
    # train: inputs and configs, checked before any run folder appears
    (
        "train-nan",
        "train --images cells_nan.tif --labels cells_labels.tif --out run",
        1,
        "cells_nan.tif: NaN or infinite",
        (),
    ),
    (
        "train-batch-true",
        "train --config batch_true.yaml --out run",
        1,
        "batch_true.yaml: batch_size: expected an integer, got True",
        (),
    ),
    ("train-lr-text", "train --config lr_text.yaml --out run", 1, "lr: expected a number", ()),
    ("train-depth40", "train --config depth40.yaml --out run", 1, "depth must be at most 10", ()),
    (
        "train-features-text",
        "train --config features_text.yaml --out run",
        1,
        "model: features: expected an integer, got 'wide'",
        (),
    ),
    (
        "train-padding",
        "train --config padding_odd.yaml --out run",
        1,
        "model: padding: expected",
        (),
    ),
    ("train-elastic-text", "train --config elastic_text.yaml --out run", 1, "augment: elastic", ()),
    ("train-model-5", "train --config model_5.yaml --out run", 1, "model: expected a mapping", ()),
    (
        "train-yaml-broken",
        "train --config broken.yaml --out run",
        1,
        "broken.yaml: cannot read",
        (),
    ),
    ("train-yaml-list", "train --config list.yaml --out run", 1, "list.yaml: a config must be", ()),
    ("train-val-many", "train --config val_many.yaml --out run", 1, "cannot hold out 10", ()),
    ("train-out-file", "train --config good.yaml --out notes.txt", 1, "notes.txt: is a file", ()),
    ("train-out-under-file", "train --config good.yaml --out notes.txt/run", 1, "is a file", ()),
    ("train-out-busy", "train --config good.yaml --out busy", 1, "busy: folder is not empty", ()),
    (
        "train-missing",
        "train --images gone.tif --labels gt.tif --out run",
        1,
        "gone.tif: no such",
        (),
    ),
    (
        "train-size",
        "train --config good.yaml --out run --input-size 75",
        1,
        "75 is not a valid",
        (),
    ),
    ("resume-no-latest", "train --resume oldrun", 1, "oldrun: no latest.pt to resume from", ()),
    (
        "resume-other-net",
        "train --resume donerun --features 8",
        1,
        "donerun: a resumed run keeps its settings; model.features is 4 in latest.pt, not 8",
        (),
    ),
    ("resume-nothing", "train --resume nothing", 1, "config.yaml: cannot read", ()),
    # round 3: no command destroys its own inputs
    (
        "resume-edited-config",
        "train --resume editedrun",
        1,
        f"lr is {DEFAULT_LR:g} in latest.pt, not 0.01 (start a new run with --out to change them, "
        "or continue anyway with --accept-changes)",
        (),
    ),
    (
        "resume-two-changes",
        "train --resume editedrun --momentum 0.9",
        1,
        f"lr is {DEFAULT_LR:g} in latest.pt, not 0.01; momentum is 0.99 in latest.pt, not 0.9",
        (),
    ),
    ("resume-damaged-state", "train --resume donerun", 1, "latest.pt: damaged training", ()),
    ("resume-no-saved-config", "train --resume nostaterun", 1, "no readable training state", ()),
    ("resume-overwrite", "train --resume donerun --overwrite", 1, "--overwrite: a resumed", ()),
    (
        "resume-config-onto-record",
        "train --resume donerun --config donerun/config.yaml",
        1,
        "donerun/config.yaml: is an input of this command",
        (),
    ),
    (
        "train-onto-config-folder",
        "train --config withconfig/run.yaml --out withconfig --overwrite",
        1,
        "withconfig: holds an input of this command (withconfig/run.yaml)",
        (),
    ),
    (
        "train-onto-own-record",
        "train --config oldrun/config.yaml --out oldrun --overwrite",
        1,
        "oldrun: holds an input of this command (oldrun/config.yaml)",
        (),
    ),
    (
        "train-out-inside-data",
        "train --config good.yaml --images two --out two/run",
        1,
        "two/run: is inside two, an input of this command",
        (),
    ),
    ("train-accept-new-run", "train --config good.yaml --out r --accept-changes", 1, "only", ()),
    ("train-yaml-latin1", "train --config latin1.yaml --out run", 1, "not UTF-8 text", ()),
    ("train-yaml-device", "train --config /dev/zero --out run", 1, "not a regular file", ()),
    ("train-yaml-folder", "train --config two --out run", 1, "two: cannot read the config", ()),
    ("train-yaml-seed-neg", "train --config seed_neg.yaml --out run", 1, "seed must be at", ()),
    (
        "train-yaml-workers",
        "train --config workers_huge.yaml --out run",
        1,
        "workers must be at most 256, got 100000",
        (),
    ),
    ("train-seed-neg", "train --config good.yaml --out run --seed -1", 1, "--seed -1: must", ()),
    ("train-sigma-inf", "train --config good.yaml --out r --sigma inf", 1, "--sigma inf: must", ()),
    ("train-lr-inf", "train --config good.yaml --out r --lr inf", 1, "--lr inf: must be a", ()),
    (
        "train-workers-huge",
        "train --config good.yaml --out r --workers 100000",
        1,
        "--workers 100000: must be at most",
        (),
    ),
    (
        "train-1x1",
        "train --images one.tif --labels one_labels.tif --out run",
        1,
        "one.tif: 1x1 px is too small to train on",
        (),
    ),
    # usage errors: one line and exit status 1, like any bad input
    ("usage-text-number", "predict img.tif -o o.tif --workers abc", 1, "--workers: 'abc'", ()),
    ("usage-unknown-option", "predict img.tif -o o.tif --bogus", 1, "--bogus: no such opt", ()),
    ("usage-missing-output", "predict img.tif", 1, "-o: missing (see ", ()),
    ("usage-no-command", "segment img.tif", 1, "no such command 'segment'", ()),
    ("usage-choice", "predict img.tif -o o.tif --kind edges", 1, "--kind: 'edges'", ()),
    (
        "predict-workers-huge",
        "predict img.tif -o o.tif --workers 100000",
        1,
        "--workers 100000: must be at most",
        (),
    ),
    ("predict-memory-huge", "predict img.tif -o o.tif --memory 10000000000", 1, "--memory", ()),
    ("predict-into-input", "predict two -o two", 1, "two: is an input of this command", ()),
    ("predict-1bit", "predict bit.tif -o b.tif", 0, "", ("b.tif",)),
    ("predict-device-file", "predict /dev/zero -o o.tif", 1, "/dev/zero: not a regular file", ()),
    ("predict-fifo", "predict fifo.tif -o o.tif", 1, "fifo.tif: not a regular file", ()),
    ("evaluate-device", "evaluate /dev/zero gt.tif", 1, "/dev/zero: not a regular file", ()),
    ("predict-big-tile", "predict bigtile.tif -o o.tif", 1, "tiles of 65520x65520", ()),
    ("weights-sigma-inf", "weight-map gt.tif -o w.tif --sigma inf", 1, "--sigma inf: must", ()),
    ("weights-w0-nan", "weight-map gt.tif -o w.tif --w0 nan", 1, "--w0 nan: must be a", ()),
    (
        "weights-crop-empty",
        "weight-map gt.tif -o w.tif --png f.png --crop 5:5,0:10",
        1,
        "--crop 5:5,0:10: need",
        (),
    ),
    (
        "weights-crop-outside",
        "weight-map gt.tif -o w.tif --png f.png --crop 100:200,0:10",
        1,
        "--crop 100:200,0:10: selects no pixel of gt.tif (48x64)",
        (),
    ),
    ("weights-1bit", "weight-map bit.tif -o w.tif", 0, "", ("w.tif",)),
    ("augment-seed-neg", "augment cells.tif cells_labels.tif -o a.png --seed -1", 1, "--seed", ()),
    (
        "augment-grid-huge",
        "augment cells.tif cells_labels.tif -o a.png --elastic-grid 100000",
        1,
        "--elastic-grid 100000: must be at most 64",
        (),
    ),
    (
        "augment-sigma-inf",
        "augment cells.tif cells_labels.tif -o a.png --elastic-sigma inf",
        1,
        "--elastic-sigma inf: must be a finite number",
        (),
    ),
    ("augment-n-huge", "augment cells.tif cells_labels.tif -o a.png --n 100000", 1, "--n", ()),
    ("summary-features-0", "summary --features 0", 1, "--features 0: must be at least 1", ()),
    # model packages: read only from their own members, bounded, verified
    ("package-ok", "predict img.tif -o o.tif --model pkg_ok", 0, "", ("o.tif",)),
    ("package-sha-ok", "predict img.tif -o o.tif --model pkg_sha_ok", 0, "", ("o.tif",)),
    ("package-sha-bad", "predict img.tif -o o.tif --model pkg_sha_bad", 1, "sha256", ()),
    ("package-up", "predict img.tif -o o.tif --model pkg_up", 1, "points outside the pack", ()),
    ("package-abs", "predict img.tif -o o.tif --model pkg_abs", 1, "is an absolute path", ()),
    ("package-link", "predict img.tif -o o.tif --model pkg_link", 1, "points outside the", ()),
    ("package-missing", "predict img.tif -o o.tif --model pkg_missing", 1, "is missing", ()),
    ("package-yaml", "predict img.tif -o o.tif --model pkg_yaml", 1, "is not valid YAML", ()),
    ("package-keys", "predict img.tif -o o.tif --model pkg_keys", 1, "not one exported by", ()),
    ("package-zip", "predict img.tif -o o.tif --model damaged.zip", 1, "damaged zip", ()),
]


def _state(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a hash of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out[rel] = "dir"
        elif not path.is_file():  # a FIFO: opening it to read would wait for a writer
            out[rel] = "special"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize(
    "argv,status,message,created", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_input(world_template, tmp_path, monkeypatch, argv, status, message, created):
    root = tmp_path / "w"
    shutil.copytree(world_template, root, symlinks=True)
    os.mkfifo(root / "fifo.tif")  # a pipe: reading it would wait for a writer for ever
    monkeypatch.chdir(root)
    args = argv.split()
    if args[0] == "predict":
        args += [
            a
            for a in MODEL
            if not ("--window" in argv and a in ("--tile-size", "116"))
            and not ("--model" in argv and a in ("--model", "model.pt"))
        ]
    if args[0] == "train":
        args += TRAIN_CFG
        if "--config" not in args and "--images" not in args and "--resume" not in args:
            args += TRAIN
    before = _state(root)
    result = CliRunner().invoke(main, ["-q", *args])
    after = _state(root)
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit | type(None)), repr(result.exception)
    if status:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert message in lines[0], lines[0]
        assert result.stdout == ""
    new = sorted(k for k in after if k not in before and "/" not in k)
    assert new == sorted(created)
    changed = [k for k in before if after.get(k) != before[k]]
    assert changed == [], changed
    assert not [k for k in after if ".biounet-tmp-" in k], after


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_every_kind_has_a_row():
    """Every kind of mechanism has a row: outputs, pixels, headers, options, configs, runs."""
    ids = " ".join(c[0] for c in CASES)
    for kind in (
        "onto",
        "exists",
        "nan",
        "bomb",
        "jpg",
        "threshold",
        "workers",
        "memory",
        "depth40",
        "batch-true",
        "out-file",
        "resume-other-net",
    ):
        assert kind in ids, kind


def test_os_errors_are_one_line(tmp_path):
    from biounet.io.atomic import os_error_message

    message = os_error_message(PermissionError(13, "Permission denied", str(tmp_path / "x")))
    assert (
        message
        == f"{tmp_path / 'x'}: permission denied (write somewhere else, or change the permissions)"
    )
    assert os.linesep not in message


def test_predict_refuses_an_output_folder_that_holds_its_model(world_template, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(world_template, root, symlinks=True)
    (root / "res").mkdir()
    shutil.copy(root / "model.pt", root / "res" / "model.pt")
    before = _state(root)
    result = CliRunner().invoke(
        main, ["-q", "predict", str(root / "img.tif"), "-o", str(root / "res"),
               "--model", str(root / "res" / "model.pt"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1 and "res: holds an input of this command" in result.stderr
    assert _state(root) == before
