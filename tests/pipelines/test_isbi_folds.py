"""pipelines/isbi2012/folds.py end to end on a tiny synthetic EM volume."""

import json

import numpy as np
import pytest
import tifffile

from biounet.evaluation.isbi import evaluate_isbi
from biounet.synthetic import em_like

TINY = """\
model: {features: 4, depth: 2}
data: {label_kind: binary, foreground: high}
input_size: 124
iterations: 6
lr: 0.01
val_every: 3
checkpoint_every: 3
log_every: 3
workers: 0
"""


@pytest.fixture(scope="module")
def folds(script):
    return script("pipelines/isbi2012/folds.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("isbi")
    rng = np.random.default_rng(0)
    pairs = [em_like((64, 64), cell_size=20, rng=rng) for _ in range(6)]
    tifffile.imwrite(folder / "train-volume.tif", np.stack([p[0] for p in pairs]))
    tifffile.imwrite(
        folder / "train-labels.tif", np.stack([(p[1] > 0) * 255 for p in pairs]).astype(np.uint8)
    )
    (folder / "tiny.yaml").write_text(TINY)
    return folder


def test_folds_train_without_their_slices_and_score_at_thresholds_chosen_elsewhere(
    tmp_path, folds, data
):
    args = ["--data", str(data), "--out", str(tmp_path), "--config", str(data / "tiny.yaml")]
    result = folds.main([*args, "--folds", "3", "--tta", "none", "--no-final"])
    assert [f["slices"] for f in result["folds"]] == [[0, 1], [2, 3], [4, 5]]
    labels = tifffile.imread(data / "train-labels.tif")
    volume = tifffile.imread(data / "train-volume.tif")
    per_fold = []
    for fold in result["folds"]:
        i, held = fold["fold"], fold["slices"]
        trained = tifffile.imread(tmp_path / f"fold{i}/data/train-volume.tif")
        want = [z for z in range(6) if z not in held]
        assert np.array_equal(trained, volume[want])  # no scored slice is trained on
        prob = tifffile.imread(tmp_path / f"fold{i}/probabilities-none-step6.tif")
        assert prob.shape == (2, 64, 64)
        per_fold.append(evaluate_isbi(prob, labels[held], metrics=("rand", "warping", "pixel")))
        assert fold["steps"] == 6
    for key, r in result["scores"].items():
        for i, t in enumerate(r["thresholds"]):
            others = [per_fold[j]["per_threshold"][key] for j in range(3) if j != i]
            means = {u: np.mean([o[u] for o in others]) for u in others[0]}
            assert means[t] == min(means.values())  # chosen on the other folds
            assert r["per_fold"][i] == per_fold[i]["per_threshold"][key][t]  # read on its own
        assert r["mean"] == pytest.approx(np.mean(r["per_fold"]), rel=1e-12, abs=0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["scores"] == result["scores"]
    table = (tmp_path / "results.md").read_text()
    assert "| rand_error | 0.0382 |" in table
    # a second call trains nothing and gives the same table
    lines = (tmp_path / "fold0/train/metrics.jsonl").read_text()
    assert (
        folds.main([*args, "--folds", "3", "--tta", "none", "--no-final"])["scores"]
        == saved["scores"]
    )
    assert (tmp_path / "fold0/train/metrics.jsonl").read_text() == lines
    # a longer budget continues each training and predicts with the new weights
    longer = folds.main([*args, "--folds", "3", "--tta", "none", "--no-final", "--iterations", "9"])
    assert [f["steps"] for f in longer["folds"]] == [9, 9, 9]
    assert (tmp_path / "fold0/probabilities-none-step9.tif").is_file()


def test_too_many_folds_is_one_line(tmp_path, folds, data):
    with pytest.raises(SystemExit, match="Error: --folds 7: need 2 to 6"):
        folds.main(["--data", str(data), "--out", str(tmp_path), "--folds", "7"])
