"""The boundary between inputs and outputs: is, holds, lies inside; links and hard links."""

import os

import pytest

from biounet.errors import BiounetError
from biounet.io.boundary import check_outputs, overlap, real, resolve_inputs


def test_overlap_kinds(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    image = data / "a.tif"
    image.write_text("precious")
    os.link(image, tmp_path / "hard.tif")
    (tmp_path / "soft").symlink_to(data)
    assert overlap(image, image) == "is"
    assert overlap(tmp_path / "hard.tif", image) == "is"  # a second hard link is the file
    assert overlap(tmp_path / "soft" / "a.tif", image) == "is"  # through a linked folder
    assert overlap(tmp_path, image) == "holds"
    assert overlap(tmp_path / "soft", image) == "holds"
    assert overlap(data / "new" / "x.zip", data) == "inside"
    assert overlap(tmp_path / "soft" / "x.zip", data) == "inside"
    assert overlap(data / "b.tif", image) is None
    assert overlap(tmp_path / "data2", data) is None  # a name that starts alike


def test_check_outputs_names_the_output_and_the_input(tmp_path):
    image = tmp_path / "a.tif"
    image.write_text("x")
    with pytest.raises(BiounetError) as info:
        check_outputs([tmp_path / "out.tif", tmp_path], [None, image])
    assert str(info.value) == (
        f"{tmp_path}: holds an input of this command ({image}); choose another output"
    )
    check_outputs([tmp_path / "out.tif"], [image, None, ""])


def test_resolve_inputs_real_paths_once_each(tmp_path):
    (tmp_path / "a.tif").write_text("x")
    (tmp_path / "l.tif").symlink_to(tmp_path / "a.tif")
    got = resolve_inputs([tmp_path / "a.tif", None, tmp_path / "l.tif", tmp_path / "x" / ".."])
    assert got == [real(tmp_path / "a.tif"), real(tmp_path)]
