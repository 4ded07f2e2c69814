import numpy as np
import pytest
import tifffile

from biounet import BiounetError
from biounet.io.read import from_array, open_image


@pytest.fixture
def stack(rng):
    return rng.integers(0, 65535, (3, 2, 40, 50)).astype(np.uint16)  # ZCYX


@pytest.mark.parametrize(
    "compression,tile",
    [
        (None, None),
        ("zlib", None),
        ("lzw", None),
        ("zstd", None),
        ("zlib", (16, 32)),
        (None, (16, 16)),
    ],
)
def test_formats_read_region_by_region(tmp_path, stack, compression, tile):
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(
        path,
        stack,
        ome=True,
        bigtiff=True,
        compression=compression,
        tile=tile,
        metadata={"axes": "ZCYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2},
    )
    with open_image(path) as src:
        assert (src.axes, src.n_planes, src.channels, src.height, src.width) == (
            "ZCYX",
            3,
            2,
            40,
            50,
        )
        assert src.pixel_size.x == pytest.approx(0.2)
        for plane in range(3):
            block = src.read(plane, slice(5, 33), slice(7, 41))
            assert np.array_equal(block, stack[plane, :, 5:33, 7:41])
        memmapped = isinstance(src.data, np.memmap)
    assert memmapped == (compression is None and tile is None)


def test_imagej_hyperstack_and_pixel_size(tmp_path, rng):
    data = rng.integers(0, 255, (2, 3, 30, 20)).astype(np.uint8)  # TZYX
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        metadata={"axes": "TZYX", "unit": "um"},
        resolution=(1 / 0.5, 1 / 0.5),
    )
    with open_image(path) as src:
        assert src.axes == "TZYX" and src.n_planes == 6 and src.channels == 1
        assert np.array_equal(src.read(4, slice(0, 30), slice(0, 20))[0], data[1, 1])
        assert src.pixel_size.x == pytest.approx(0.5)


def test_rgb_samples_are_channels(tmp_path, rng):
    data = rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    with open_image(tmp_path / "rgb.tif") as src:
        assert src.axes == "YXS" and src.channels == 3
        assert np.array_equal(src.read(0, slice(2, 9), slice(0, 30)), np.moveaxis(data[2:9], -1, 0))


def test_axes_override(tmp_path, rng):
    data = rng.random((3, 20, 30)).astype(np.float32)
    tifffile.imwrite(tmp_path / "q.tif", data, photometric="minisblack")
    with open_image(tmp_path / "q.tif", axes="CYX") as src:
        assert src.channels == 3 and src.n_planes == 1
    with pytest.raises(BiounetError, match=r"q.tif: axes 'YX' do not match the data's 3 dim"):
        open_image(tmp_path / "q.tif", axes="YX")
    with pytest.raises(BiounetError, match="need a Y and an X"):
        open_image(tmp_path / "q.tif", axes="ZCY")


def test_bad_files(tmp_path, rng):
    with pytest.raises(BiounetError, match="nope.tif: no such file"):
        open_image(tmp_path / "nope.tif")
    (tmp_path / "text.tif").write_text("hello")
    with pytest.raises(BiounetError, match="text.tif: not a TIFF file"):
        open_image(tmp_path / "text.tif")
    tifffile.imwrite(tmp_path / "full.tif", rng.random((64, 64)).astype(np.float32))
    raw = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BiounetError, match="cut.tif: .*truncated|cut.tif: cannot read"):
        open_image(tmp_path / "cut.tif")
    with pytest.raises(BiounetError, match="is a folder"):
        open_image(tmp_path)
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((4, 4), np.complex64))
    with pytest.raises(BiounetError, match="pixel type complex64 is not supported"):
        open_image(tmp_path / "c.tif")


def test_from_array_defaults():
    assert from_array(np.zeros((4, 5))).axes == "YX"
    assert from_array(np.zeros((2, 4, 5))).n_planes == 2
    with pytest.raises(BiounetError, match="give axes"):
        from_array(np.zeros((1, 2, 3, 4, 5)))
