"""pipelines/ctc/run.py end to end on synthetic data in the Cell Tracking Challenge layout."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from biounet.network.checkpoint import load_checkpoint
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
def pipeline(script):
    return script("pipelines/ctc/run.py")


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


def test_too_many_folds_is_one_line(tmp_path, pipeline, one_sequence):
    folder, config = one_sequence  # 6 annotated frames
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config)]
    with pytest.raises(SystemExit, match="Error: --folds 7: need 2 to 6"):
        pipeline.main([*args, "--folds", "7"])


def test_the_data_set_is_found_by_folder_readme_or_option(tmp_path, pipeline):
    for name, want in (("PhC-C2DH-U373", "PhC-C2DH-U373"), ("ctc-hela", "DIC-C2DH-HeLa")):
        (tmp_path / name).mkdir()
        assert pipeline.detect_dataset(tmp_path / name) == want
    plain = tmp_path / "cells"
    plain.mkdir()
    assert pipeline.detect_dataset(plain) is None
    (plain / "README.md").write_text("# DIC-C2DH-HeLa (Cell Tracking Challenge), sequence 01\n")
    assert pipeline.detect_dataset(plain) == "DIC-C2DH-HeLa"
    assert pipeline.detect_dataset(plain, "u373") == "PhC-C2DH-U373"


@pytest.fixture(scope="module")
def one_sequence(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctc1") / "cells"  # named like neither set
    write_ctc_dataset(folder, "dic", sequences=1, frames=12, shape=(96, 128), seed=3)
    (folder / "README.md").write_text("# DIC-C2DH-HeLa-like synthetic cells\n")
    config = folder.parent / "tiny.yaml"
    config.write_text(TINY.replace("weights: {annotated_margin: 30}\n", ""))
    return folder, config


def test_folds_train_calibrate_and_score_on_disjoint_frames(tmp_path, pipeline, one_sequence):
    folder, config = one_sequence
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config), "--folds", "3"]
    result = pipeline.main([*args, "--val-count", "1"])
    frames = [0, 2, 4, 6, 8, 10]  # every second frame is annotated
    assert [f["frames"] for f in result["folds"]] == [[0, 2], [4, 6], [8, 10]]
    probs, truth = {}, {}
    for fold in result["folds"]:
        i, scored = fold["fold"], fold["frames"]
        trained = sorted(int(p.name[1:4]) for p in (tmp_path / f"fold{i}/data/01").iterdir())
        assert trained == [t for t in frames if t not in scored]  # no frame trained and scored
        # predicted by best.pt (--val-count 1), in a folder named for its step
        step = load_checkpoint(tmp_path / f"fold{i}/train/best.pt")["train_state"]["step"]
        folder_i = tmp_path / f"fold{i}/probabilities-step{step}"
        assert [p.name for p in (tmp_path / f"fold{i}").glob("probabilities*")] == [folder_i.name]
        held = sorted(int(p.name[4:7]) for p in folder_i.iterdir())
        assert held == scored
        for t in scored:
            probs[t] = tifffile.imread(folder_i / f"prob{t:03d}.tif")
            truth[t] = tifffile.imread(folder / "01_GT/SEG" / f"man_seg{t:03d}.tif")
    for fold in result["folds"]:  # each fold's rule is chosen on the other folds' frames only
        others = [t for t in frames if t not in fold["frames"]]
        want = pipeline.calibrate_rule([probs[t] for t in others], [truth[t] for t in others])
        assert fold["rule"] == want
        labels = pipeline.rule_labels(np.stack([probs[t] for t in fold["frames"]]), want)
        ref = np.stack([truth[t] for t in fold["frames"]])
        from biounet.evaluation.matching import seg_score

        assert fold["seg"] == pytest.approx(seg_score(labels, ref), rel=1e-12, abs=0)
        # the held-out SEG with each choice of split: the shipped split's is the one scored
        assert fold["seg_by_split"][pipeline.SHIPPED_SPLIT] == fold["seg"]
        plain = pipeline.calibrate_rules([probs[t] for t in others], [truth[t] for t in others])
        assert fold["rule"] == plain[pipeline.SHIPPED_SPLIT]
        assert plain["best"] == max(
            (plain[k] for k in ("none", "watershed", "distance")),
            key=lambda r: r["seg_on_calibration_frames"],
        )
        best = pipeline.calibrate_rule(
            [probs[t] for t in others], [truth[t] for t in others], "best"
        )
        assert best == plain["best"]
        assert plain["none"]["seed_threshold"] is None and plain["none"]["split_depth"] is None
        none = seg_score(
            pipeline.rule_labels(np.stack([probs[t] for t in fold["frames"]]), plain["none"]), ref
        )
        assert fold["seg_by_split"]["none"] == pytest.approx(none, rel=1e-12, abs=0)
    segs = [f["seg"] for f in result["folds"]]
    assert result["seg_mean"] == pytest.approx(np.mean(segs), rel=1e-12, abs=0)
    assert result["seg_std"] == pytest.approx(np.std(segs, ddof=1), rel=1e-12, abs=0)
    # the final model: trained on all six frames, with the rule of all folds
    assert sorted(p.name for p in (tmp_path / "final/data/01").iterdir()) == [
        f"t{t:03d}.tif" for t in frames
    ]
    from biounet.network.unet import load_model

    model = load_model(tmp_path / "final/model.pt")
    rule = result["rule"]
    assert pipeline.calibrate_rule(list(probs.values()), list(truth.values())) == rule
    assert (model.decision.threshold, model.decision.min_size) == (
        rule["threshold"],
        rule["min_size"],
    )
    depth, seed = rule["split_depth"], rule["seed_threshold"]  # the split travels too
    method = "distance" if depth is not None else "components" if seed is None else "watershed"
    assert model.decision.method == method
    assert seed is None or model.decision.seed_threshold == seed
    assert depth is None or model.decision.split_depth == depth
    assert depth is None or model.decision.split_radius == rule["split_radius"]
    from biounet.inference.segmentation import segment

    frame = tifffile.imread(sorted((tmp_path / "final/data/01").iterdir())[0])
    prob = pipeline.predict(frame, model)[0, 1]
    ours, folds = segment(frame, model), pipeline.rule_labels(prob[None], rule)[0]
    pairs = np.unique(np.stack([ours.ravel(), folds.ravel()]), axis=1)  # the same objects,
    assert len(pairs[0]) == len(np.unique(ours)) == len(np.unique(folds))  # numbered apart
    assert np.array_equal(ours > 0, folds > 0)
    table = (tmp_path / "results.md").read_text()
    assert "| DIC-C2DH-HeLa | u-net, paper (Table 2, challenge test set) | 0.7756 |" in table
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the plot
    assert f"{result['seg_mean']:.4f} ± {result['seg_std']:.4f}" in table
    # a second call finds every stage done
    lines = (tmp_path / "fold0/train/metrics.jsonl").read_text().count("\n")
    assert pipeline.main([*args, "--val-count", "1"])["seg_mean"] == result["seg_mean"]
    assert (tmp_path / "fold0/train/metrics.jsonl").read_text().count("\n") == lines


def test_one_command_runs_both_data_sets(tmp_path, pipeline, data, one_sequence):
    args = ["--data", str(data[0]), str(one_sequence[0]), "--out", str(tmp_path)]
    result = pipeline.main([*args, "--config", str(data[1]), "--folds", "2", "--val-count", "0"])
    assert [e["data"] for e in result["data_sets"]] == ["PhC-C2DH-U373", "DIC-C2DH-HeLa"]
    assert [e["paper_seg"] for e in result["data_sets"]] == [0.9203, 0.7756]
    table = (tmp_path / "results.md").read_text()
    assert "| PhC-C2DH-U373 | u-net, paper" in table and "| DIC-C2DH-HeLa | u-net, paper" in table
    assert (tmp_path / "PhC-C2DH-U373/fold1/train/latest.pt").is_file()


def test_stall_study_reports_the_inputs_the_start_and_short_runs(tmp_path, script):
    study = script("pipelines/ctc/stall_study.py")
    folder = write_ctc_dataset(tmp_path / "cells", "dic", sequences=1, frames=8, shape=(192, 192))
    args = ["--data", str(folder), "--out", str(tmp_path / "o"), "--seeds", "1", "--crop", "188"]
    text = study.main([*args, "--steps", "4", "--features", "4", "--input-size", "188"])
    frames = [tifffile.imread(folder / "01" / f"t{t:03d}.tif") for t in (0, 2)]  # 4, 6 held out
    crop = frames[0][:188, :188] / 255.0
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if "|" in line
    }
    assert float(rows["dtype range"][1]) == pytest.approx(crop.mean(), abs=5e-4, rel=0)
    assert float(rows["dtype range"][2]) == pytest.approx(crop.std(), abs=5e-4, rel=0)
    pixels = np.stack(frames).astype(np.float64)
    scaled = (frames[0][:188, :188] - pixels.mean()) / pixels.std()
    assert float(rows["fit (mean, std)"][1]) == pytest.approx(scaled.mean(), abs=5e-4, rel=0)
    assert len(rows["fit (mean, std)"]) == 11  # the trained columns are there
    assert (tmp_path / "o/fit/latest.pt").is_file() and (tmp_path / "o/dtype/latest.pt").is_file()


def test_no_final_scores_the_folds_without_the_model_on_all_frames(
    tmp_path, pipeline, one_sequence
):
    folder, config = one_sequence
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config)]
    result = pipeline.main([*args, "--folds", "2", "--val-count", "1", "--no-final"])
    assert result["final_model"] is None and not (tmp_path / "final").exists()
    assert len(result["folds"]) == 2 and "rule" in result
    # test-time averaging: the same models predict anew, kept apart, and the table says so
    d4 = pipeline.main([*args, "--folds", "2", "--val-count", "1", "--no-final", "--tta", "d4"])
    assert d4["tta"] == "d4" and [f["steps"] for f in d4["folds"]] == [
        f["steps"] for f in result["folds"]
    ]
    from biounet.network.unet import load_model

    model = load_model(tmp_path / "fold0/train/best.pt")
    frame = tifffile.imread(folder / "01/t000.tif")
    step = load_checkpoint(tmp_path / "fold0/train/best.pt")["train_state"]["step"]
    averaged = tifffile.imread(tmp_path / f"fold0/probabilities-d4-step{step}/prob000.tif")
    np.testing.assert_allclose(averaged, pipeline.predict(frame, model, tta="d4")[0, 1], atol=1e-6)
    assert "tta d4, mean ± std" in (tmp_path / "results.md").read_text()


def test_silver_truth_trains_but_never_near_a_scored_or_validating_frame(
    tmp_path, pipeline, one_sequence
):
    import shutil

    source, config = one_sequence
    folder = tmp_path / "cells"
    shutil.copytree(source, folder)
    silver = folder / "01_ST" / "SEG"
    silver.mkdir(parents=True)
    for t in range(12):  # silver truth on every frame (here: a copy of a gold truth)
        shutil.copy(folder / "01_GT/SEG/man_seg000.tif", silver / f"man_seg{t:03d}.tif")
    out = tmp_path / "out"
    args = ["--data", str(folder), "--out", str(out), "--config", str(config), "--folds", "3"]
    result = pipeline.main([*args, "--val-count", "1", "--silver", "1", "--no-final"])
    gold = [0, 2, 4, 6, 8, 10]
    for fold in result["folds"]:
        i, scored = fold["fold"], fold["frames"]
        rest = [t for t in gold if t not in scored]
        validating = rest[-1:]
        val = sorted(int(p.name[1:4]) for p in (out / f"fold{i}/val/01").iterdir())
        assert val == validating
        trained = {int(p.name[1:4]) for p in (out / f"fold{i}/data/01").iterdir()}
        apart = scored + validating
        want = {t for t in range(12) if all(abs(t - k) > 1 for k in apart)} | set(rest[:-1])
        assert trained == want
        # a gold frame trains on its gold truth, a silver frame on its silver truth
        for t in trained:
            link = (out / f"fold{i}/data/01_GT/SEG/man_seg{t:03d}.tif").resolve()
            assert link.parent == ((folder / "01_GT/SEG") if t in gold else silver).resolve()
    with pytest.raises(SystemExit, match="needs --folds"):
        pipeline.main(["--data", str(folder), "--out", str(out / "x"), "--silver", "1"])


def test_silver_on_a_data_set_without_it_trains_on_gold_truth(tmp_path, pipeline, one_sequence):
    folder, config = one_sequence  # no 01_ST
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config)]
    result = pipeline.main([*args, "--folds", "2", "--silver", "3", "--no-final"])
    trained = sorted(int(p.name[1:4]) for p in (tmp_path / "fold0/data/01").iterdir())
    assert trained == [t for t in (0, 2, 4, 6, 8, 10) if t not in result["folds"][0]["frames"]]


def test_jobs_trains_the_folds_at_once_into_the_same_models(tmp_path, one_sequence):
    """--jobs 2 (spawned workers, a command as users run it) == one fold after the other."""
    import os
    import subprocess
    import sys

    import torch

    folder, config = one_sequence
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # equal threads: bitwise-equal trainings
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        args = ["--data", folder, "--out", out, "--config", config, "--folds", "2"]
        command = [sys.executable, REPO / "pipelines/ctc/run.py", *args, "--no-final"]
        done = subprocess.run(
            [str(a) for a in [*command, "--jobs", jobs]], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results[jobs] = json.loads((out / "results.json").read_text())[0]  # one data set
    assert "2 folds, 2 at a time, 1 thread(s) each" in done.stderr
    assert [f["seg"] for f in results[1]["folds"]] == [f["seg"] for f in results[2]["folds"]]
    for fold in ("fold0", "fold1"):
        one, two = (
            load_checkpoint(tmp_path / f"jobs{j}" / fold / "train/latest.pt")["model_state"]
            for j in (1, 2)
        )
        assert all(torch.equal(one[k], two[k]) for k in one)


def test_jobs_without_folds_or_below_one_is_one_line(tmp_path, pipeline, one_sequence):
    folder, config = one_sequence
    args = ["--data", str(folder), "--out", str(tmp_path), "--config", str(config)]
    with pytest.raises(SystemExit, match="Error: --jobs: needs --folds"):
        pipeline.main([*args, "--jobs", "2"])
    with pytest.raises(SystemExit, match="Error: --jobs 0: must be at least 1"):
        pipeline.main([*args, "--folds", "2", "--jobs", "0"])
