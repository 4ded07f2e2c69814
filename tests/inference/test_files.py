"""biounet predict end to end: files in, files out, errors as one line."""

import os

import numpy as np
import pytest
import tifffile
import torch
import zarr
from click.testing import CliRunner
from skimage.measure import label
from zarr_levels import zarr_level

from biounet.cli import main
from biounet.inference.files import segment_file
from biounet.inference.predictor import Predictor
from biounet.inference.segmentation import predict
from biounet.network.checkpoint import save_checkpoint
from biounet.network.unet import UNet, UNetConfig
from biounet.options import OutputOptions, TileOptions


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(3)
    net = UNet(UNetConfig(features=4, depth=3))
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(path, net)
    return path


@pytest.fixture
def stack_path(tmp_path, rng):
    data = rng.integers(0, 255, (2, 90, 130)).astype(np.uint8)
    path = tmp_path / "in.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        metadata={"axes": "ZYX", "unit": "um"},
        resolution=(1 / 0.25, 1 / 0.25),
        compression="zlib",
    )
    return path


def _run(*args):
    return CliRunner().invoke(main, ["-q", *map(str, args)])


def _predict_to(stack_path, model_path, out, *options):
    return _run("predict", stack_path, "-o", out, "--model", model_path, *options)


def _expected(stack_path, model_path):
    net = UNet.from_checkpoint(model_path)
    return predict(tifffile.imread(stack_path), net, axes="ZYX", window=116)


def test_probabilities_equal_library_prediction(tmp_path, stack_path, model_path):
    out = tmp_path / "p.tif"
    r = _predict_to(
        stack_path,
        model_path,
        out,
        "--kind",
        "probabilities",
        "--tile-size",
        "116",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "in.tif: 2x90x130 (ZYX)" in r.output and "tiles" in r.output
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.is_bigtiff and tif.pages[0].is_tiled
        assert tif.series[0].axes == "ZYX"
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata
        got = tif.asarray()
    expected = _expected(stack_path, model_path)[:, 1]  # another tile size: same result
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_uint8_mask_labels_and_zarr(tmp_path, stack_path, model_path):
    fg = _expected(stack_path, model_path)[:, 1]
    r = _predict_to(
        stack_path, model_path, tmp_path / "u8.tif", "--kind", "probabilities", "--dtype", "uint8"
    )
    assert r.exit_code == 0, r.output
    u8 = tifffile.imread(tmp_path / "u8.tif")
    assert u8.dtype == np.uint8 and np.abs(u8 / 255 - fg).max() <= 0.5 / 255 + 1e-6
    r = _predict_to(
        stack_path, model_path, tmp_path / "m.tif", "--kind", "mask", "--threshold", "0.5"
    )
    assert r.exit_code == 0, r.output
    mask = tifffile.imread(tmp_path / "m.tif")
    sure = np.abs(fg - 0.5) > 1e-4
    assert np.array_equal((mask == 255)[sure], (fg > 0.5)[sure])
    r = _predict_to(
        stack_path, model_path, tmp_path / "l.tif", "--tile-size", "116", "--min-size", "3"
    )
    assert r.exit_code == 0, r.output
    labels = tifffile.imread(tmp_path / "l.tif")
    for z in range(2):
        ref = label(fg[z] > 0.5, connectivity=1)
        sizes = np.bincount(ref.ravel())
        ref[sizes[ref] < 3] = 0
        assert labels[z].max() == len(np.unique(ref)) - 1
        assert np.array_equal(labels[z] > 0, ref > 0)
    r = _predict_to(stack_path, model_path, tmp_path / "p.zarr", "--kind", "probabilities")
    assert r.exit_code == 0, r.output
    z = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert z.attrs["multiscales"][0]["axes"][0]["name"] == "z"
    np.testing.assert_allclose(zarr_level(tmp_path / "p.zarr")[:], fg, atol=1e-5, rtol=0)


def test_folder_input_and_output(tmp_path, stack_path, model_path, rng):
    tifffile.imwrite(tmp_path / "second.tif", rng.integers(0, 255, (40, 50)).astype(np.uint8))
    r = _run("predict", tmp_path, "-o", tmp_path / "res", "--model", model_path, "--kind", "mask")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [
        "in_mask.tif",
        "second_mask.tif",
    ]


def test_library_call_without_cli(tmp_path, stack_path, model_path):
    net = UNet.from_checkpoint(model_path)
    summary = segment_file(
        stack_path,
        tmp_path / "o.tif",
        net,
        tiles=TileOptions(window=132, batch_size=2),
        output=OutputOptions(kind="probabilities"),
    )
    assert summary.planes == 2 and summary.tiles == 2 * 3 * 5
    assert summary.megapixels_per_second > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.tif"], "missing.tif: no such file"),
        (["notimage.tif"], "notimage.tif: not a TIFF file"),
        (["in.tif", "--axes", "CYX"], "in.tif: 2 channel(s) (axes CYX) but the model expects 1"),
        (["in.tif", "--axes", "YX"], "axes 'YX' do not match"),
        (["in.tif", "--tile-size", "101"], "101 is not a valid input size"),
        (["in.tif", "--device", "cuda:7"], "--device cuda:7"),
    ],
)
def test_bad_input_is_one_line(tmp_path, stack_path, model_path, args, message):
    (tmp_path / "notimage.tif").write_text("just text")
    os.chdir(tmp_path)
    r = _run("predict", *args, "-o", tmp_path / "o.tif", "--model", model_path)
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and message in r.output, r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "o.tif").exists()


def test_existing_unwritable_and_bad_model(tmp_path, stack_path, model_path):
    (tmp_path / "o.tif").write_text("keep me")
    r = _run("predict", stack_path, "-o", tmp_path / "o.tif", "--model", model_path)
    assert r.exit_code == 1 and "already exists (use --overwrite" in r.output
    assert (tmp_path / "o.tif").read_text() == "keep me"
    r = _predict_to(stack_path, model_path, tmp_path / "o.tif", "--overwrite", "--kind", "mask")
    assert r.exit_code == 0 and tifffile.imread(tmp_path / "o.tif").shape == (2, 90, 130)
    r = _run("predict", stack_path, "-o", tmp_path / "no" / "o.tif", "--model", model_path)
    assert r.exit_code == 1 and "does not exist" in r.output
    r = _run("predict", stack_path, "-o", tmp_path / "x.tif", "--model", stack_path)
    assert r.exit_code == 1 and "not a readable biounet checkpoint" in r.output


def test_interrupted_run_leaves_nothing(tmp_path, stack_path, model_path, monkeypatch):
    calls = []
    original = Predictor.__call__

    def failing(self, windows):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, windows)

    monkeypatch.setattr(Predictor, "__call__", failing)
    r = _run(
        "predict", stack_path, "-o", tmp_path / "o.tif", "--model", model_path, "--tile-size", "116"
    )
    assert r.exit_code != 0 and len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_an_existing_zarr_store_is_refused_then_replaced_whole(tmp_path, stack_path, model_path):
    """`-o x.zarr` names a store, never a folder of outputs (no TIFF is written inside it)."""
    store = tmp_path / "seg.zarr"
    args = ("predict", stack_path, "-o", store, "--model", model_path, "--window", 116)
    assert _run(*args, "--kind", "mask").exit_code == 0
    first = zarr_level(store)[:]
    again = _run(*args)
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"Error: {store}: already exists (use --overwrite to replace it)"
    ]
    assert list(store.rglob("*.tif")) == [] and np.array_equal(zarr_level(store)[:], first)
    assert _run(*args, "--overwrite").exit_code == 0  # labels now replace the mask
    labels = zarr_level(store)[:]
    assert list(store.rglob("*.tif")) == [] and labels.dtype == np.uint16
    np.testing.assert_array_equal(labels > 0, first > 0)  # the same threshold (0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "seg.zarr"]


def test_an_ome_zarr_input_predicts_like_its_tiff(tmp_path, stack_path, model_path):
    """OME-Zarr in (axes and pixel size from its metadata): the TIFF's labels, the same scale."""
    from biounet.io.read import PixelSize, open_image
    from biounet.io.write import Layout, write_tiles

    data = tifffile.imread(stack_path)
    layout = Layout((2,), "Z", 90, 130, 1, np.dtype(np.uint8), PixelSize(0.25, 0.25, None, "µm"))
    planes = ((p, slice(0, 90), slice(0, 130), data[p]) for p in range(2))
    write_tiles(tmp_path / "in.zarr", planes, layout, (48, 48), "none")
    for name in ("in.zarr", "in.tif"):
        args = ("predict", tmp_path / name, "-o", tmp_path / f"{name}.tif", "--model", model_path)
        assert _run(*args, "--window", 116).exit_code == 0
    from_zarr = tifffile.imread(tmp_path / "in.zarr.tif")
    np.testing.assert_array_equal(from_zarr, tifffile.imread(tmp_path / "in.tif.tif"))
    assert from_zarr.shape == (2, 90, 130) and from_zarr.max() > 0
    with open_image(tmp_path / "in.zarr.tif") as written:
        assert (written.pixel_size.x, written.pixel_size.unit) == (0.25, "µm")


def test_a_folder_that_is_not_an_ome_zarr_is_one_line(tmp_path, model_path):
    (tmp_path / "empty.zarr").mkdir()
    r = _run("predict", tmp_path / "empty.zarr", "-o", tmp_path / "o.tif", "--model", model_path)
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {tmp_path / 'empty.zarr'}: not an OME-Zarr image (")
    assert len(r.output.strip().splitlines()) == 1
