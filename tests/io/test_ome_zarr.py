"""OME-Zarr output: pyramid, units, label metadata; OME-TIFF units and stated label kinds."""

import warnings

import numpy as np
import pytest
import tifffile
import zarr
from zarr_levels import zarr_axes, zarr_level

from biounet.io.atomic import temp_path
from biounet.io.read import PixelSize, open_image, stated_label_kind
from biounet.io.write import Layout, pyramid_levels, write_tiles

H, W, T = 600, 700, 128


def _tiles(array):
    return (
        (0, slice(y, min(y + T, H)), slice(x, min(x + T, W)), array[y : y + T, x : x + T])
        for y in range(0, H, T)
        for x in range(0, W, T)
    )


NM4 = PixelSize(4.0, 4.0, None, "nm")


def _write(path, array, kind, pixel_size=NM4):
    layout = Layout((), "", H, W, 1, array.dtype, pixel_size, kind)
    write_tiles(path, _tiles(array), layout, (T, T), "zlib")


def _reader_nodes(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ome-zarr's import-time Scaler
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

    return list(Reader(parse_url(str(path)))())


def test_label_pyramid_nearest_with_units_and_label_metadata(tmp_path, rng):
    labels = rng.integers(0, 1000, (H, W)).astype(np.uint16)
    _write(tmp_path / "l.zarr", labels, "labels")
    assert pyramid_levels(H, W, (T, T)) == 4
    levels = [zarr_level(tmp_path / "l.zarr", k)[:] for k in range(4)]
    assert [a.shape for a in levels] == [(600, 700), (300, 350), (150, 175), (75, 87)]
    assert all(a.dtype == np.uint16 for a in levels)
    assert np.array_equal(levels[0], labels)
    # nearest neighbour: one pixel of each 2x2 block, no new values
    assert np.array_equal(levels[1], labels[1::2, 1::2])
    assert np.array_equal(levels[2], levels[1][1::2, 1::2])
    assert np.isin(levels[3], labels).all()
    assert zarr_axes(tmp_path / "l.zarr") == "YX"
    attrs = zarr.open_group(str(tmp_path / "l.zarr"), mode="r").attrs
    assert "image-label" in attrs
    ms = attrs["multiscales"][0]
    assert [a.get("unit") for a in ms["axes"]] == ["nanometer", "nanometer"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[:3] == [[4.0, 4.0], [8.0, 8.0], [16.0, 16.0]]
    # the ome-zarr reader sees a label image with four levels in nanometres
    (node,) = [n for n in _reader_nodes(tmp_path / "l.zarr") if n.data]
    assert [type(s).__name__ for s in node.specs][0] == "Label"
    assert len(node.data) == 4 and node.metadata["axes"][0]["unit"] == "nanometer"


def test_probability_pyramid_is_the_2x2_mean(tmp_path, rng):
    prob = rng.random((H, W)).astype(np.float32)
    _write(tmp_path / "p.zarr", prob, "probabilities", PixelSize(0.5, 0.5, None, "µm"))
    one = zarr_level(tmp_path / "p.zarr", 1)[:]
    expected = prob.reshape(H // 2, 2, W // 2, 2).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_allclose(one, expected, rtol=0, atol=1e-6)
    attrs = zarr.open_group(str(tmp_path / "p.zarr"), mode="r").attrs
    assert "image-label" not in attrs
    assert attrs["multiscales"][0]["axes"][0]["unit"] == "micrometer"


def test_small_image_has_one_level_and_no_unit_without_pixel_size(tmp_path, rng):
    small = rng.random((100, 90)).astype(np.float32)
    layout = Layout((), "", 100, 90, 1, small.dtype, PixelSize(), "probabilities")
    write_tiles(
        tmp_path / "s.zarr", iter([(0, slice(0, 100), slice(0, 90), small)]), layout, (T, T), "zlib"
    )
    ms = zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs["multiscales"][0]
    assert len(ms["datasets"]) == 1 and "unit" not in ms["axes"][0]
    assert np.array_equal(zarr_level(tmp_path / "s.zarr")[:], small)
    assert not list(tmp_path.glob(".biounet-scratch-*"))  # the scratch level is removed


def test_multiscales_name_is_the_published_name_not_the_temporary(tmp_path, rng):
    tmp = temp_path(tmp_path / "cells.zarr")  # what atomic_output hands the writer
    _write(tmp, rng.integers(0, 9, (H, W)).astype(np.uint16), "labels")
    assert zarr.open_group(str(tmp), mode="r").attrs["multiscales"][0]["name"] == "cells"


@pytest.mark.parametrize("unit", ["nm", "µm"])
def test_ome_tiff_unit_round_trip_and_stated_kind(tmp_path, rng, unit):
    labels = rng.integers(0, 9, (H, W)).astype(np.uint16)
    layout = Layout((), "", H, W, 1, labels.dtype, PixelSize(4.0, 4.0, None, unit), "labels")
    write_tiles(tmp_path / "l.tif", _tiles(labels), layout, (T, T), "zlib")
    with open_image(tmp_path / "l.tif") as src:
        assert src.pixel_size == PixelSize(4.0, 4.0, None, unit)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        num, den = tif.pages[0].tags["XResolution"].value
        metres = {"nm": 1e-9, "µm": 1e-6}[unit]
        assert num / den == pytest.approx(1e-2 / (4.0 * metres), rel=1e-6)  # pixels per cm
    assert stated_label_kind(tmp_path / "l.tif") == "instance"
    mask = Layout((), "", H, W, 1, np.dtype(np.uint8), PixelSize(), "mask")
    write_tiles(tmp_path / "m.tif", _tiles(labels.astype(np.uint8)), mask, (T, T), "zlib")
    assert stated_label_kind(tmp_path / "m.tif") == "binary"
    tifffile.imwrite(tmp_path / "plain.tif", labels)
    assert stated_label_kind(tmp_path / "plain.tif") is None


def test_ome_pixel_size_default_unit_and_imagej_nanometres(tmp_path):
    data = np.zeros((20, 30), np.uint8)
    tifffile.imwrite(tmp_path / "a.ome.tif", data, ome=True, metadata={"PhysicalSizeX": 0.3})
    with open_image(tmp_path / "a.ome.tif") as src:
        assert src.pixel_size == PixelSize(0.3, None, None, "µm")  # OME's default unit
    tifffile.imwrite(
        tmp_path / "ij.tif", data, imagej=True, metadata={"unit": "nm"}, resolution=(0.25, 0.25)
    )
    with open_image(tmp_path / "ij.tif") as src:
        assert src.pixel_size == PixelSize(4.0, 4.0, None, "nm")


@pytest.mark.parametrize(
    ("shape", "chunk", "sizes"),
    [
        ((512, 512), 512, [(512, 512), (256, 256)]),  # one chunk, still an overview level
        ((700, 300), 1024, [(700, 300), (350, 150), (175, 75)]),
        ((257, 40), 512, [(257, 40), (129, 20)]),
        ((256, 256), 512, [(256, 256)]),  # small enough to be its own overview
        ((600, 700), 128, [(600, 700), (300, 350), (150, 175), (75, 88)]),  # chunks decide
    ],
)
def test_pyramid_goes_down_to_256_px(shape, chunk, sizes):
    levels = pyramid_levels(*shape, (chunk, chunk))
    assert levels == len(sizes)
    h, w = shape
    got = [(h, w)]
    for _ in range(levels - 1):
        h, w = (h + 1) // 2, (w + 1) // 2
        got.append((h, w))
    assert got == sizes
    assert max(sizes[-1]) <= 256 and (len(sizes) == 1 or max(sizes[-2]) > 256 or chunk < 256)


def test_a_512_image_in_one_chunk_gets_two_levels(tmp_path, rng):
    labels = rng.integers(0, 50, (512, 512)).astype(np.uint16)
    layout = Layout((), "", 512, 512, 1, labels.dtype, NM4, "labels")
    write_tiles(
        tmp_path / "l.zarr",
        iter([(0, slice(0, 512), slice(0, 512), labels)]),
        layout,
        (512, 512),
        "zlib",
    )
    ms = zarr.open_group(str(tmp_path / "l.zarr"), mode="r").attrs["multiscales"][0]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[4.0, 4.0], [8.0, 8.0]]
    assert np.array_equal(zarr_level(tmp_path / "l.zarr", 1)[:], labels[1::2, 1::2])
    (node,) = [n for n in _reader_nodes(tmp_path / "l.zarr") if n.data]
    assert [d.shape for d in node.data] == [(512, 512), (256, 256)]
