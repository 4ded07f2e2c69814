"""Physical pixel sizes from every TIFF convention, --pixel-size, and their way into outputs."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from biounet.errors import BiounetError
from biounet.io.read import open_image
from biounet.io.units import (
    PixelSize,
    parse_pixel_size,
    stated_pixel_size,
    tiff_resolution,
)

DATA = np.zeros((20, 30), np.uint8)


def _read(path):
    with open_image(path) as src:
        return src.pixel_size


# resolution (pixels per unit, X and Y), ResolutionUnit -> size in µm, worked by hand:
# 50800 px/inch = 2 px/µm -> 0.5 µm; 20000 px/cm -> 0.5 µm; 2000 px/mm -> 0.5 µm; 4 px/µm -> 0.25
@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        ((50800, 25400), 2, PixelSize(0.5, 1.0, None, "µm")),
        ((20000, 40000), 3, PixelSize(0.5, 0.25, None, "µm")),
        ((2000, 250), 4, PixelSize(0.5, 4.0, None, "µm")),
        ((4, 2), 5, PixelSize(0.25, 0.5, None, "µm")),
        ((4, 2), 1, PixelSize()),  # RESUNIT none: an aspect ratio, no physical size
        ((1, 1), 3, PixelSize()),  # 1 pixel per unit: what writers put when they know nothing
    ],
)
def test_every_resolution_unit(tmp_path, resolution, unit, expected):
    path = tmp_path / "r.tif"
    tifffile.imwrite(path, DATA, resolution=resolution, resolutionunit=unit)
    with tifffile.TiffFile(path) as tif:
        assert int(tif.pages[0].tags["ResolutionUnit"].value) == unit
    assert _read(path) == expected


def test_no_resolution_tags_state_nothing(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", DATA)
    assert _read(tmp_path / "plain.tif") == PixelSize()


def test_ome_sizes_in_their_units_mixed_units_converted(tmp_path):
    stack = np.zeros((2, 20, 30), np.uint8)
    meta = {
        "axes": "ZYX",
        "PhysicalSizeX": 4.0,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.006,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 0.05,
        "PhysicalSizeZUnit": "µm",
    }
    tifffile.imwrite(tmp_path / "o.ome.tif", stack, ome=True, metadata=meta)
    assert _read(tmp_path / "o.ome.tif") == PixelSize(4.0, 6.0, 50.0, "nm")
    # OME's default unit is the micrometre; OME wins over (contradicting) resolution tags
    tifffile.imwrite(
        tmp_path / "d.ome.tif",
        DATA,
        ome=True,
        metadata={"PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3},
        resolution=(1, 1),
        resolutionunit=5,
    )
    assert _read(tmp_path / "d.ome.tif") == PixelSize(0.3, 0.3, None, "µm")
    # a unit that is no length (a pixel) keeps the numbers, with no unit
    meta = {"PhysicalSizeX": 2.0, "PhysicalSizeXUnit": "pixel", "PhysicalSizeY": 2.0}
    tifffile.imwrite(tmp_path / "p.ome.tif", DATA, ome=True, metadata=meta)
    assert _read(tmp_path / "p.ome.tif") == PixelSize(2.0, 2.0, None, "")


def test_imagej_unit_and_spacing(tmp_path):
    stack = np.zeros((3, 20, 30), np.uint8)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        resolution=(250, 125),  # pixels per micron
        metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.05},
    )
    assert _read(tmp_path / "ij.tif") == PixelSize(0.004, 0.008, 0.05, "µm")
    tifffile.imwrite(
        tmp_path / "nm.tif", DATA, imagej=True, resolution=(0.25, 0.25), metadata={"unit": "nm"}
    )
    assert _read(tmp_path / "nm.tif") == PixelSize(4.0, 4.0, None, "nm")
    # ImageJ's "pixel" unit states no size (the resolution tags say none either)
    tifffile.imwrite(
        tmp_path / "px.tif", DATA, imagej=True, resolution=(2, 2), metadata={"unit": "pixel"}
    )
    assert _read(tmp_path / "px.tif") == PixelSize()


def test_sample_file():
    sample = _read(Path(__file__).resolve().parents[2] / "sample_data" / "em_synthetic.tif")
    # ImageJ metadata: unit "um", 250 px per micron
    assert sample == PixelSize(0.004, 0.004, None, "µm")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5", PixelSize(0.5, 0.5, None, "µm")),
        ("4nm", PixelSize(4.0, 4.0, None, "nm")),
        ("4 nm", PixelSize(4.0, 4.0, None, "nm")),
        ("0.65um", PixelSize(0.65, 0.65, None, "µm")),
        ("0.65µm", PixelSize(0.65, 0.65, None, "µm")),
        ("0.65 micron", PixelSize(0.65, 0.65, None, "µm")),
        ("1e-3mm", PixelSize(0.001, 0.001, None, "mm")),
        (".25", PixelSize(0.25, 0.25, None, "µm")),
    ],
)
def test_parse_pixel_size(text, expected):
    assert parse_pixel_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "--pixel-size 0: give a positive size"),
        ("-1", "--pixel-size -1: give a positive size"),
        ("nm", "--pixel-size nm: give a positive size"),
        ("4pt", "--pixel-size 4pt: unknown unit 'pt'"),
        ("4 pixel", "--pixel-size 4 pixel: unknown unit 'pixel'"),
        ("", "--pixel-size : give a positive size"),
    ],
)
def test_parse_pixel_size_refuses(text, message):
    with pytest.raises(BiounetError, match="^" + message):
        parse_pixel_size(text)


def test_conversion_and_stated_size_keeps_z():
    assert PixelSize(0.004, 0.004, 0.05, "µm").to("nm") == PixelSize(4.0, 4.0, 50.0, "nm")
    found = PixelSize(1.0, 1.0, 0.5, "µm")
    assert stated_pixel_size(found, PixelSize(250.0, 250.0, None, "nm")) == PixelSize(
        250.0, 250.0, 500.0, "nm"
    )
    assert stated_pixel_size(found, None) is found
    assert stated_pixel_size(PixelSize(), PixelSize(2.0, 2.0)) == PixelSize(2.0, 2.0, None, "µm")
    # Z without a length unit is not carried into a stated one
    assert stated_pixel_size(PixelSize(1, 1, 3, ""), PixelSize(2.0, 2.0)).z is None
    with pytest.raises(ValueError, match="cannot convert"):
        PixelSize(1.0, 1.0, None, "").to("nm")


def test_tiff_resolution_round_trips_through_the_reader(tmp_path):
    for size in (PixelSize(4.0, 8.0, None, "nm"), PixelSize(0.5, 0.5, None, "mm")):
        (res, unit) = tiff_resolution(size)
        path = tmp_path / "t.tif"
        tifffile.imwrite(path, DATA, resolution=res, resolutionunit=unit)
        back = _read(path)
        assert back.to(size.unit).x == pytest.approx(size.x, rel=1e-6)
        assert back.to(size.unit).y == pytest.approx(size.y, rel=1e-6)
    assert tiff_resolution(PixelSize()) is None
    assert tiff_resolution(PixelSize(2.0, 2.0, None, "")) is None


def test_open_image_pixel_size_override(tmp_path):
    tifffile.imwrite(
        tmp_path / "a.tif",
        np.zeros((2, 20, 30), np.uint8),
        imagej=True,
        resolution=(1, 1),
        metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0},
    )
    assert _read(tmp_path / "a.tif") == PixelSize(None, None, 2.0, "µm")
    with open_image(tmp_path / "a.tif", pixel_size=parse_pixel_size("100nm")) as src:
        assert src.pixel_size == PixelSize(100.0, 100.0, 2000.0, "nm")


def test_sizes_without_a_unit_are_not_written_as_micrometres(tmp_path):
    from biounet.io.write import Layout, write_tiles

    data = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    for unit, expected in (("", PixelSize()), ("nm", PixelSize(2.0, 2.0, None, "nm"))):
        layout = Layout((), "", 32, 32, 1, data.dtype, PixelSize(2.0, 2.0, None, unit), "labels")
        path = tmp_path / f"u{unit}.tif"
        write_tiles(path, iter([(0, slice(0, 32), slice(0, 32), data)]), layout, (32, 32), "zlib")
        assert _read(path) == expected
