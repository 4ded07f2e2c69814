"""pipelines/ctc/run.py end to end on synthetic data in the Cell Tracking Challenge layout."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from biounet.synthetic import write_ctc_dataset

REPO = Path(__file__).resolve().parents[2]
TINY = """\
model: {features: 4, depth: 2}
weights: {annotated_margin: 30}
input_size: 124
iterations: 12
lr: 0.01
val_every: 6
checkpoint_every: 6
log_every: 3
workers: 0
"""


@pytest.fixture(scope="module")
def pipeline():
    spec = importlib.util.spec_from_file_location("ctc_run", REPO / "pipelines/ctc/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctc") / "PhC-C2DH-U373"  # named like the real set
    write_ctc_dataset(folder, "phc", frames=6, annotated_fraction=0.8, shape=(96, 128))
    config = folder.parent / "tiny.yaml"
    config.write_text(TINY)
    return folder, config


def test_two_sequences_train_predict_score_and_resume(tmp_path, pipeline, data):
    folder, config = data
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config)]
    results = pipeline.main([*args, "--val-count", "1"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seg"] == results["seg"] and 0.0 <= saved["seg"] <= 1.0
    assert saved["paper_seg"] == 0.9203 and saved["steps"] == 12
    assert saved["frames"] == 3 and saved["test_sequence"] == "02"
    masks = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert masks == ["mask000.tif", "mask002.tif", "mask004.tif"]
    # the score is the challenge's SEG of exactly these files
    from biounet.evaluation.matching import seg_score

    res = np.stack([tifffile.imread(tmp_path / "predictions" / m) for m in masks])
    ref = np.stack(
        [tifffile.imread(folder / "02_GT/SEG" / f"man_seg{t:03d}.tif") for t in (0, 2, 4)]
    )
    assert saved["seg"] == pytest.approx(seg_score(res, ref))
    assert "| PhC-C2DH-U373 | u-net, paper (Table 2" in (tmp_path / "results.md").read_text()
    # a second call finds every stage done: same result, no new training
    log_lines = (tmp_path / "train" / "metrics.jsonl").read_text().count("\n")
    again = pipeline.main([*args, "--val-count", "1"])
    assert again["seg"] == results["seg"]
    assert (tmp_path / "train" / "metrics.jsonl").read_text().count("\n") == log_lines


def test_one_sequence_holds_out_its_last_frames(tmp_path, pipeline, data):
    folder, config = data
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config)]
    results = pipeline.main([*args, "--test", "01", "--test-count", "1", "--val-count", "1"])
    assert results["frames"] == 1
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["mask004.tif"]
    assert sorted(p.name for p in (tmp_path / "split/01").iterdir()) == ["t000.tif", "t002.tif"]


def test_missing_gold_truth_is_one_clear_line(tmp_path, pipeline):
    (tmp_path / "01").mkdir()
    with pytest.raises(SystemExit, match="01_GT/SEG: not found"):
        pipeline.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--test", "01"])
