"""pipelines/ctc/contacts.py: the held-out probabilities of a contact, per fold run."""

import json

import numpy as np
import pytest
import tifffile


@pytest.fixture()
def fold_run(tmp_path):
    """A CTC sequence of two annotated frames and a fold run that holds each out once."""
    data = tmp_path / "data"
    (data / "02").mkdir(parents=True)
    (data / "02_GT" / "SEG").mkdir(parents=True)
    truth = np.zeros((20, 30), np.uint16)
    truth[2:10, 2:10] = 1
    truth[2:10, 11:20] = 2  # touches object 1 across a 1-px gap
    for t in (3, 7):
        tifffile.imwrite(data / "02" / f"t{t:03d}.tif", (truth > 0).astype(np.uint8) * 200)
        tifffile.imwrite(data / "02_GT" / "SEG" / f"man_seg{t:03d}.tif", truth)
    run = tmp_path / "run"
    rule = {"threshold": 0.5, "min_size": 4, "seed_threshold": None}
    rule |= {"split_depth": None, "split_radius": None}
    merged = np.where(truth > 0, 0.9, 0.1).astype(np.float32)
    merged[2:10, 10] = 0.9  # no dip: the two cells come out as one object
    apart = np.where(truth > 0, 0.9, 0.1).astype(np.float32)
    folds = []
    for i, (t, prob) in enumerate(((3, merged), (7, apart))):
        folder = run / f"fold{i}" / "probabilities-d4-step10"
        folder.mkdir(parents=True)
        tifffile.imwrite(folder / f"prob{t:03d}.tif", prob)
        folds.append({"fold": i, "frames": [t], "rule": rule})
    (run / "results.json").write_text(json.dumps({"folds": folds}))
    return data, run


def test_contacts_draws_each_runs_held_out_fold_and_scores_its_objects(
    tmp_path, script, fold_run, capsys
):
    contacts = script("pipelines/ctc/contacts.py")
    data, run = fold_run
    out = tmp_path / "c.png"
    contacts.main(["--data", str(data), "--frame", "3", "--box", "0", "12", "0", "22"]
                  + ["--run", f"a=b={run}", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    # the merged object covers all of object 2 (72 px) and object 1 (64 px), 144 px in all
    assert "a=b: gold-truth objects in the crop, Jaccard: {1: 0.44, 2: 0.5}" in printed
    assert out.stat().st_size > 0
    contacts.main(["--data", str(data), "--frame", "7", "--run", f"x={run}", "--out", str(out)])
    assert "x: gold-truth objects in the crop, Jaccard: {1: 1.0, 2: 1.0}" in capsys.readouterr().out


def test_a_frame_without_gold_truth_or_fold_is_one_line(tmp_path, script, fold_run):
    contacts = script("pipelines/ctc/contacts.py")
    data, run = fold_run
    with pytest.raises(SystemExit, match="frame 5 has no gold truth"):
        contacts.main(["--data", str(data), "--frame", "5", "--run", f"a={run}", "--out", "x.png"])
    (run / "results.json").write_text(json.dumps({"folds": []}))
    with pytest.raises(SystemExit, match="no fold holds frame 3 out"):
        contacts.main(["--data", str(data), "--frame", "3", "--run", f"a={run}", "--out", "x.png"])
