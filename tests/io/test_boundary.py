"""The boundary between inputs and outputs: is, holds, lies inside; links and hard links."""

import os

import pytest

from biounet.errors import BiounetError
from biounet.io.boundary import check_outputs, overlap


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
    check_outputs([tmp_path / "out.tif"], [tmp_path])  # inside an input folder: allowed
    with pytest.raises(BiounetError, match="out.tif: is inside .*, an input of this command"):
        check_outputs([tmp_path / "out.tif"], [tmp_path], inside=True)
