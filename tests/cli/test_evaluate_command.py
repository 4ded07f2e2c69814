"""``biounet evaluate``: table, JSON, options and one-line errors."""

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from scipy import ndimage as ndi

from biounet.cli import main
from biounet.evaluation.isbi import evaluate_isbi

KEYS = ["pixel_error", "rand_error", "warping_error", "vrand", "vinfo"]


def run(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)])


@pytest.fixture
def files(tmp_path):
    """A 2-slice binary ground truth and a perturbed cell-probability map."""
    rng = np.random.default_rng(7)
    gt = np.full((2, 20, 24), 255, np.uint8)
    gt[:, :, 11] = 0
    gt[1, 9, :] = 0
    prob = np.clip(ndi.gaussian_filter(gt / 255.0, (0, 1, 1)) + rng.normal(0, 0.1, gt.shape), 0, 1)
    paths = {
        "gt": tmp_path / "gt.tif",
        "prob": tmp_path / "prob.tif",
        "membrane": tmp_path / "membrane.tif",
        "prob8": tmp_path / "prob8.tif",
    }
    tifffile.imwrite(paths["gt"], gt)
    tifffile.imwrite(paths["prob"], prob.astype(np.float32))
    tifffile.imwrite(paths["membrane"], (1 - prob).astype(np.float32))
    tifffile.imwrite(paths["prob8"], np.round(prob * 255).astype(np.uint8))
    return paths, gt, prob.astype(np.float32)


def test_help_states_the_polarity():
    r = run("--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert (
        "HIGH = CELL" in text and "membrane-probability map must be inverted: pass --invert" in text
    )
    assert "evaluate" in CliRunner().invoke(main, ["--help"]).output


def test_table_and_json(files, tmp_path):
    paths, gt, prob = files
    out = tmp_path / "scores.json"
    r = run(paths["prob"], paths["gt"], "--json", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    expected = evaluate_isbi(prob, gt)
    for key in KEYS:
        assert data[key] == pytest.approx(expected[key])
        line = next(x for x in r.output.splitlines() if x.startswith(key + " "))
        assert f"{expected[key]:.7f}" in line and f"{expected['threshold'][key]:.1f}" in line
    assert "seg" not in data and data["pixel_error"] > 0
    assert set(data["per_threshold"]) == set(KEYS) | {"warping_error_classic"}
    assert list(data["per_threshold"]["rand_error"]) == [f"{k / 10:.1f}" for k in range(11)]
    assert data["details"]["prediction"] == str(paths["prob"])
    assert "split and" in r.output and f"wrote {out}" in r.output
    assert not list(tmp_path.glob(".*partial*"))


def test_invert_and_uint8_probability(files):
    paths, gt, prob = files
    right = run(paths["prob"], paths["gt"], "--metrics", "pixel,rand").output
    inverted = run(paths["membrane"], paths["gt"], "--metrics", "pixel,rand", "--invert")
    assert inverted.exit_code == 0 and inverted.output == right
    wrong = run(paths["membrane"], paths["gt"], "--metrics", "pixel,rand").output
    assert wrong != right
    r = run(paths["prob8"], paths["gt"], "--metrics", "pixel", "--kind", "probabilities")
    assert r.exit_code == 0
    expected = evaluate_isbi(np.round(prob.astype(np.float64) * 255) / 255, gt, metrics=["pixel"])
    assert f"{expected['pixel_error']:.7f}" in r.output


def test_label_images_are_scored_as_they_are(files, tmp_path):
    paths, gt, _ = files
    r = run(paths["gt"], paths["gt"], "--metrics", "pixel,rand,warping,vrand,vinfo,seg")
    assert r.exit_code == 0, r.output
    rows = {x.split()[0]: x.split()[1:] for x in r.output.splitlines()}
    assert rows["pixel_error"][:2] == ["0.0000000", "-"] and rows["vrand"][0] == "1.0000000"
    assert rows["seg"][0] == "1.0000000"
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    instances = ndi.label(gt > 0, in_plane)[0]
    inst = tmp_path / "instances.tif"
    tifffile.imwrite(inst, instances.astype(np.uint16))
    r = run(inst, inst)  # instance ground truth: SEG and AP by default
    assert r.exit_code == 0, r.output
    rows = {x.split()[0]: x.split()[1:] for x in r.output.splitlines()}
    assert rows["seg"][0] == rows["ap"][0] == "1.0000000" and "pixel_error" not in rows
    assert "average precision at IoU 0.5 1.0000, 0.6 1.0000" in r.output
    r = run(inst, inst, "--metrics", "pixel")  # the ISBI metrics refuse instance labels
    assert r.exit_code == 1 and "leave out --metrics for instance labels" in r.output
    r = run(inst, inst, "--metrics", "seg")
    assert r.exit_code == 0 and "seg" in r.output and "pixel_error" not in r.output
    as_float = tmp_path / "float-labels.tif"
    tifffile.imwrite(as_float, instances.astype(np.float32))
    r = run(as_float, inst, "--kind", "labels", "--metrics", "seg")  # integral floats: labels
    assert r.exit_code == 0 and "1.0000000" in r.output


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "missing.tif: no such file"),
        ("not_tiff", "bad.tif: not a readable image"),
        ("shape", "differs from"),
        ("range", r"probability values outside [0, 1]"),
        ("instances", "not a binary cell mask"),
        ("float_gt", "non-integer value"),
        ("invert_labels", "--invert applies to probability maps"),
        ("metric", "--metrics: unknown dice"),
        ("empty_gt", "no cell pixels"),
        ("rgb", "expected a 2-D image or a (Z, Y, X) stack"),
        ("float_labels", "label image has non-integer values"),
    ],
)
def test_one_line_errors(files, tmp_path, case, message):
    paths, gt, prob = files
    pred, truth, extra = paths["prob"], paths["gt"], []
    if case == "missing":
        pred = tmp_path / "missing.tif"
    elif case == "not_tiff":
        pred = tmp_path / "bad.tif"
        pred.write_text("not an image")
    elif case == "shape":
        pred = tmp_path / "small.tif"
        tifffile.imwrite(pred, prob[:, :-1])
    elif case == "range":
        pred = tmp_path / "range.tif"
        tifffile.imwrite(pred, prob * 2)
    elif case == "instances":
        truth = tmp_path / "inst.tif"
        tifffile.imwrite(truth, (gt > 0) * np.arange(gt.shape[2], dtype=np.uint16))
        extra = ["--metrics", "rand"]
    elif case == "float_gt":
        truth = tmp_path / "float_gt.tif"
        tifffile.imwrite(truth, prob)
    elif case == "invert_labels":
        pred, extra = paths["gt"], ["--invert"]
    elif case == "metric":
        extra = ["--metrics", "pixel,dice"]
    elif case == "empty_gt":
        truth = tmp_path / "empty.tif"
        tifffile.imwrite(truth, np.zeros_like(gt))
        extra = ["--metrics", "rand"]
    elif case == "rgb":
        pred = truth = tmp_path / "rgb.tif"
        tifffile.imwrite(pred, np.zeros((2, 3, 4, 5), np.uint8), photometric="minisblack")
    elif case == "float_labels":
        extra = ["--kind", "labels"]
    r = run(pred, truth, *extra)
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: ") and message in r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output


def test_json_in_missing_folder_fails_before_scoring(files, tmp_path):
    paths, _, _ = files
    r = run(paths["prob"], paths["gt"], "--json", tmp_path / "nope" / "s.json")
    assert r.exit_code == 1 and "does not exist" in r.output


@pytest.mark.isbi
def test_isbi_labels_against_themselves_and_eroded(isbi_dir, tmp_path):
    labels = tifffile.imread(isbi_dir / "train-labels.tif")[:2]
    gt = tmp_path / "gt.tif"
    tifffile.imwrite(gt, labels)
    out = tmp_path / "same.json"
    r = run(gt, gt, "--json", out)
    assert r.exit_code == 0, r.output
    same = json.loads(out.read_text())
    assert [same[k] for k in KEYS] == [0.0, 0.0, 0.0, 1.0, 1.0]
    # cells eroded by one pixel (4-connected): pixel F1 = 2|E| / (|E| + |G|) exactly,
    # and erosion can split or delete cells but never merge them
    cells = labels > 0
    eroded = np.stack([ndi.binary_erosion(c, ndi.generate_binary_structure(2, 1)) for c in cells])
    pred = tmp_path / "eroded.tif"
    tifffile.imwrite(pred, eroded.astype(np.float32))
    out = tmp_path / "eroded.json"
    assert run(pred, gt, "--metrics", "pixel,warping", "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    e, g = int(eroded.sum()), int(cells.sum())
    assert data["pixel_error"] == pytest.approx(1 - 2 * e / (e + g))
    assert set(data["details"]["warping_mergers"].values()) == {0}
    assert data["warping_error"] > 0
