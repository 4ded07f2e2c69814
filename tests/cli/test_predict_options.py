"""``biounet predict``'s option names: -o/--output the path, --kind the kind, --pixel-size."""

import numpy as np
import pytest
import tifffile
import torch
import zarr
from click.testing import CliRunner

from biounet.cli import main
from biounet.cli.predict import legacy_kind_options
from biounet.io.read import open_image
from biounet.io.units import PixelSize
from biounet.network.checkpoint import save_checkpoint
from biounet.network.unet import UNet, UNetConfig


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(path, UNet(UNetConfig(features=2, depth=2)))
    return path


@pytest.fixture
def plain(tmp_path, rng):
    """A 2-plane stack with no pixel size but an ImageJ Z spacing of 0.5 µm."""
    path = tmp_path / "plain.tif"
    data = rng.integers(0, 255, (2, 40, 50)).astype(np.uint8)
    tifffile.imwrite(
        path, data, imagej=True, metadata={"axes": "ZYX", "unit": "um", "spacing": 0.5}
    )
    return path


def _run(*args):
    return CliRunner().invoke(main, ["-q", "predict", *map(str, args), "--no-progress"])


def test_pixel_size_into_ome_tiff_and_ome_zarr(tmp_path, plain, model_path):
    r = _run(plain, "-o", tmp_path / "a.tif", "--model", model_path, "--pixel-size", "250nm")
    assert r.exit_code == 0, r.output
    with open_image(tmp_path / "a.tif") as src:  # read back through the OME-XML
        assert src.pixel_size == PixelSize(250.0, 250.0, 500.0, "nm")
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert 'PhysicalSizeX="250.0"' in tif.ome_metadata
        assert 'PhysicalSizeXUnit="nm"' in tif.ome_metadata
        assert 'PhysicalSizeZ="500.0"' in tif.ome_metadata
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(40000, rel=1e-6)  # per cm: 1 cm / 250 nm
    r = _run(plain, "--output", tmp_path / "b.zarr", "--model", model_path, "--pixel-size", "0.25")
    assert r.exit_code == 0, r.output
    ms = zarr.open_group(str(tmp_path / "b.zarr"), mode="r").attrs["multiscales"][0]
    assert [(a["name"], a.get("unit")) for a in ms["axes"]] == [
        ("z", "micrometer"),
        ("y", "micrometer"),
        ("x", "micrometer"),
    ]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.25, 0.25]


def test_without_pixel_size_the_input_has_none(tmp_path, plain, model_path):
    r = _run(plain, "-o", tmp_path / "a.tif", "--model", model_path)
    assert r.exit_code == 0, r.output
    with open_image(tmp_path / "a.tif") as src:
        assert src.pixel_size == PixelSize(None, None, 0.5, "µm")


def test_bad_pixel_size_is_one_line(tmp_path, plain, model_path):
    r = _run(plain, "-o", tmp_path / "a.tif", "--model", model_path, "--pixel-size", "3 parsecs")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        "Error: --pixel-size 3 parsecs: unknown unit 'parsecs' "
        "(use one of pm, Å, nm, µm (um), mm, cm, in, m)"
    ]
    assert not (tmp_path / "a.tif").exists()


def test_kind_and_the_old_output_kind_spelling(tmp_path, plain, model_path):
    r = _run(plain, "-o", tmp_path / "m.tif", "--model", model_path, "--kind", "mask")
    assert r.exit_code == 0, r.output
    new = tifffile.imread(tmp_path / "m.tif")
    assert new.dtype == np.uint8 and set(np.unique(new)) <= {0, 255}
    r = _run(plain, "-o", tmp_path / "old.tif", "--model", model_path, "--output", "mask")
    assert r.exit_code == 0, r.output
    assert "Warning: --output mask is deprecated: the output kind is --kind mask" in r.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "old.tif"), new)


def test_help_names_the_path_and_the_kind():
    r = CliRunner().invoke(main, ["predict", "--help"])
    assert "-o, --output PATH" in r.output
    assert "--kind [labels|mask|probabilities]" in r.output
    assert "--pixel-size TEXT" in r.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["a.tif", "--output", "labels"], ["a.tif", "--kind", "labels"]),
        (["a.tif", "--output=probabilities"], ["a.tif", "--kind", "probabilities"]),
        (["a.tif", "--output", "out.tif"], ["a.tif", "--output", "out.tif"]),
        (["a.tif", "--output=out.zarr"], ["a.tif", "--output=out.zarr"]),
        (["a.tif", "-o", "mask"], ["a.tif", "-o", "mask"]),  # -o is always the path
        (["--", "--output", "mask"], ["--", "--output", "mask"]),  # file names after --
        (["a.tif", "--output"], ["a.tif", "--output"]),  # click says it needs a value
    ],
)
def test_legacy_kind_options(args, expected):
    assert legacy_kind_options(args) == expected
