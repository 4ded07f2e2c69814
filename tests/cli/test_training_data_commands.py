import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from biounet.cli import main
from biounet.synthetic import touching_cells
from biounet.training.weight_map import WeightMapConfig, weight_maps


@pytest.fixture
def cells(tmp_path):
    """A two-plane stack of touching cells (instance labels) and its image."""
    rng = np.random.default_rng(5)
    pairs = [touching_cells((64, 72), n_cells=6, radius=(10, 16), rng=rng) for _ in range(2)]
    images = np.stack([p[0] for p in pairs])
    labels = np.stack([p[1] for p in pairs]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", labels, photometric="minisblack")
    return tmp_path, labels


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, text):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and text in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_weight_map_command_writes_maps_and_figure(cells):
    folder, labels = cells
    out, png = folder / "w.tif", folder / "w.png"
    result = run(
        "weight-map", folder / "lab.tif", "-o", out, "--label-kind", "instance",
        "--image", folder / "img.tif", "--png", png, "--plane", 1, "--crop", "0:40,0:40",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 weight map(s)" in result.output
    maps = tifffile.imread(out)
    assert maps.shape == (2, 64, 72) and maps.dtype == np.float32
    expected = weight_maps(list(labels.astype(np.int32)), WeightMapConfig())
    np.testing.assert_array_equal(maps, np.stack([t.weights for t in expected]))
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size < 300_000
    assert not list(folder.glob(".*partial*"))


def test_weight_map_options(cells):
    folder, labels = cells
    out = folder / "plain.tif"
    result = run(
        "weight-map", folder / "lab.tif", "-o", out, "--label-kind", "instance",
        "--w0", 0, "--class-weights", "0.5,2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    maps = tifffile.imread(out)
    assert set(np.unique(maps).tolist()) == {0.5, 2.0}


def test_weight_map_detects_instance_labels(cells, tmp_path):
    folder, labels = cells
    stated = run(
        "weight-map", folder / "lab.tif", "-o", folder / "i.tif", "--label-kind", "instance"
    )
    detected = run("weight-map", folder / "lab.tif", "-o", folder / "a.tif")  # > 2 values
    assert stated.exit_code == 0 and detected.exit_code == 0, detected.output
    np.testing.assert_array_equal(
        tifffile.imread(folder / "a.tif"), tifffile.imread(folder / "i.tif")
    )
    # two values, but the file states instance labels (as biounet predict writes them):
    # one object in two parts stays one instance, where a binary mask gives two
    one = np.zeros((64, 72), np.uint16)
    one[10:30, 10:20] = one[10:30, 22:30] = 5
    meta = {"Description": "instance labels"}
    tifffile.imwrite(tmp_path / "one.ome.tif", one, ome=True, metadata=meta)
    tifffile.imwrite(tmp_path / "plain.tif", one)
    from biounet.training.data import load_labels

    assert load_labels(tmp_path / "one.ome.tif")[0][1].max() == 5  # the stated instance id
    assert load_labels(tmp_path / "plain.tif")[0][1].max() == 2  # binary: two components


def test_weight_map_bad_input(cells):
    folder, labels = cells
    out = folder / "w.tif"
    # instance labels read as a binary mask (the flag overrides detection): more than two values
    result = run("weight-map", folder / "lab.tif", "-o", out, "--label-kind", "binary")
    assert_one_line_error(result, "at most 2 values")
    assert not out.exists()
    assert_one_line_error(run("weight-map", folder / "nope.tif", "-o", out), "nope.tif: no such")
    (folder / "bad.tif").write_text("not an image")
    assert_one_line_error(
        run("weight-map", folder / "bad.tif", "-o", out), "bad.tif: not a readable image"
    )
    lab = ["weight-map", folder / "lab.tif", "--label-kind", "instance"]
    assert_one_line_error(run(*lab, "-o", out, "--class-weights", "x"), "--class-weights x")
    assert_one_line_error(
        run(*lab, "-o", out, "--sigma", "0"), "--sigma 0.0: must be greater than 0"
    )
    assert_one_line_error(run(*lab, "-o", out, "--plane", "5"), "--plane 5")
    assert_one_line_error(run(*lab, "-o", out, "--crop", "1-2"), "--crop 1-2")
    assert_one_line_error(run(*lab, "-o", folder / "w.png"), "written as TIFF")
    assert not out.exists()
    out.write_bytes(b"old")
    assert_one_line_error(run(*lab, "-o", out), "already exists")
    assert out.read_bytes() == b"old"
    assert run(*lab, "-o", out, "--overwrite").exit_code == 0


def test_augment_command(cells):
    folder, _ = cells
    png = folder / "aug.png"
    result = run(
        "augment", folder / "img.tif", folder / "lab.tif", "-o", png, "--n", 3,
        "--label-kind", "instance", "--input-size", 188, "--seed", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 augmented tiles of 188 px (output 4 px)" in result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    same = folder / "same.png"
    result = run(
        "augment", folder / "img.tif", folder / "lab.tif", "-o", same, "--n", 2,
        "--label-kind", "instance", "--input-size", 64, "--padding", "same", "--no-elastic",
        "--no-gray", "--rotation", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "output 64 px" in result.output


def test_augment_bad_input(cells):
    folder, _ = cells
    args = ["augment", folder / "img.tif", folder / "lab.tif", "--label-kind", "instance"]
    assert_one_line_error(run(*args, "-o", folder / "a.png", "--input-size", 571), "556 and 572")
    assert_one_line_error(run(*args, "-o", folder / "a.png", "--rotation", 400), "rotation")
    assert_one_line_error(run(*args, "-o", folder / "a.png", "--n", 0), "--n 0")
    assert_one_line_error(run(*args, "-o", folder / "a.jpg"), "must be a .png")
    assert_one_line_error(
        run("augment", folder / "img.tif", folder / "other.tif", "-o", folder / "a.png"),
        "other.tif: no such file",
    )
    assert not (folder / "a.png").exists()


@pytest.mark.slow
@pytest.mark.isbi
def test_isbi_weight_map_figure(isbi_dir, tmp_path):
    result = run(
        "weight-map", isbi_dir / "train-labels.tif", "-o", tmp_path / "w.tif",
        "--image", isbi_dir / "train-volume.tif", "--png", tmp_path / "w.png",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "24 weight map(s)" in result.output
