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
    return root


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
        "train --resume oldrun --features 8",
        1,
        "oldrun: a resumed run keeps its settings; model.features is 4, not 8",
        (),
    ),
    ("resume-nothing", "train --resume nothing", 1, "config.yaml: cannot read", ()),
]


def _state(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a hash of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize(
    "argv,status,message,created", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_input(world_template, tmp_path, monkeypatch, argv, status, message, created):
    root = tmp_path / "w"
    shutil.copytree(world_template, root)
    monkeypatch.chdir(root)
    args = argv.split()
    if args[0] == "predict" and "--model" not in args:
        args += [a for a in MODEL if "--window" not in argv or a not in ("--tile-size", "116")]
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
