import numpy as np
import pytest
import tifffile
from PIL import Image

from biounet.errors import BiounetError
from biounet.training.data import load_labels, load_pairs, to_instances


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        Image.fromarray(array).save(path)
    else:
        tifffile.imwrite(path, array, photometric="minisblack")
    return path


@pytest.fixture
def stacks(tmp_path, rng):
    """An ISBI-like pair: 3 planes, 255 = cell, 0 = membrane."""
    image = rng.integers(0, 256, (3, 12, 16), dtype=np.uint8)
    labels = np.full((3, 12, 16), 255, np.uint8)
    labels[:, 6, :] = 0  # a membrane splits every plane into two cells
    labels[1, :, 8] = 0  # plane 1: four cells
    return (
        write(tmp_path / "volume.tif", image),
        write(tmp_path / "labels.tif", labels),
        image,
        labels,
    )


def test_isbi_stacks(stacks):
    images, labels, image, _ = stacks
    samples = load_pairs(images, labels)
    assert [s.name for s in samples] == ["volume.tif[0]", "volume.tif[1]", "volume.tif[2]"]
    assert [int(s.instances.max()) for s in samples] == [2, 4, 2]
    for k, sample in enumerate(samples):
        assert sample.image.shape == (1, 12, 16) and sample.image.dtype == np.uint8
        np.testing.assert_array_equal(sample.image[0], image[k])
        assert sample.instances.dtype == np.int32
        assert np.all((sample.instances == 0) == (stacks[3][k] == 0))


def test_polarity_and_four_connectivity():
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], np.uint8)  # diagonal neighbours only
    assert to_instances(mask).max() == 2  # not 4-connected: two objects
    low = to_instances(mask, foreground="low")
    assert low.max() == 1 and np.all((low > 0) == (mask == 0))
    assert to_instances(np.full((3, 3), 7)).max() == 1  # one value: all foreground
    with pytest.raises(BiounetError, match="x.tif: label image has no foreground"):
        to_instances(np.zeros((3, 3)), name="x.tif")
    with pytest.raises(BiounetError, match="no foreground"):
        to_instances(np.full((3, 3), 5), foreground="low")


def test_instance_labels_keep_ids_and_gaps():
    labels = np.array([[0, 5, 5], [9, 0, 0]], np.uint16)
    out = to_instances(labels, label_kind="instance")
    assert out.dtype == np.int32 and out.tolist() == [[0, 5, 5], [9, 0, 0]]
    assert to_instances(labels.astype(np.float32), label_kind="instance").max() == 9
    for bad, message in (
        (np.array([[0, -1]]), ">= 0"),
        (np.array([[0.5, 1.0]]), "integers"),
        (np.zeros((2, 2), np.uint16), "no objects"),
    ):
        with pytest.raises(BiounetError, match=message):
            to_instances(bad, label_kind="instance", name="lab.tif")


def test_binary_mask_with_three_values(tmp_path, stacks):
    images, _, _, labels = stacks
    labels = labels.copy()
    labels[2, 0, 0] = 128
    bad = write(tmp_path / "three.tif", labels)
    with pytest.raises(BiounetError) as err:  # stated binary: refused
        load_pairs(images, bad, label_kind="binary")
    message = str(err.value)
    assert message.startswith(
        f"{bad}[2]: a binary mask has at most 2 values, found 3 (0, 128, 255)"
    )
    assert "\n" not in message
    # detected (the default): more than two values in the file are instance ids
    samples = load_pairs(images, bad)
    assert [int(s.instances.max()) for s in samples] == [255] * len(samples)
    assert samples[2].instances[0, 0] == 128


def test_stack_count_and_shape_mismatch(tmp_path, stacks):
    images, labels, image, label = stacks
    two = write(tmp_path / "two.tif", label[:2])
    with pytest.raises(BiounetError, match=r"volume.tif: 3 images but .*two.tif has 2 labels"):
        load_pairs(images, two)
    narrow = write(tmp_path / "narrow.tif", label[:, :, :15])
    with pytest.raises(BiounetError, match="does not match"):
        load_pairs(images, narrow)
    single = write(tmp_path / "one.tif", label[0])
    with pytest.raises(BiounetError, match="does not match"):
        load_pairs(write(tmp_path / "img.tif", image[0, :, :15]), single)


def test_single_images_and_channels(tmp_path, rng):
    label = np.zeros((10, 14), np.uint8)
    label[2:5, 2:6] = 1
    rgb = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    samples = load_pairs(write(tmp_path / "a.png", rgb), write(tmp_path / "a_mask.png", label))
    assert samples[0].image.shape == (3, 10, 14)
    np.testing.assert_array_equal(samples[0].image[1], rgb[:, :, 1])
    cyx = rng.random((2, 10, 14)).astype(np.float32)
    samples = load_pairs(write(tmp_path / "b.tif", cyx), tmp_path / "a_mask.png")
    assert samples[0].image.shape == (2, 10, 14) and samples[0].image.dtype == np.float32


def test_folders_matched_by_name(tmp_path, rng):
    for name in ("b", "a", "c"):
        write(tmp_path / "img" / f"{name}.tif", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    write(tmp_path / "lab" / "a_mask.png", np.eye(8, dtype=np.uint8) * 255)
    write(tmp_path / "lab" / "b.tif", np.ones((8, 8), np.uint8))
    write(tmp_path / "lab" / "c_labels.tif", np.ones((8, 8), np.uint8))
    (tmp_path / "lab" / "README.txt").write_text("ignored")
    (tmp_path / "lab" / ".hidden.tif").write_text("ignored")
    samples = load_pairs(tmp_path / "img", tmp_path / "lab")
    assert [s.name for s in samples] == ["a.tif", "b.tif", "c.tif"]
    assert samples[0].instances.max() == 8  # the diagonal: eight 4-disconnected pixels
    # an image without a label, a label without an image
    write(tmp_path / "img" / "d.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(BiounetError, match=r"d.tif: no label image with a matching name"):
        load_pairs(tmp_path / "img", tmp_path / "lab")
    (tmp_path / "img" / "d.tif").unlink()
    write(tmp_path / "lab" / "e.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(BiounetError, match=r"e.tif: no image with a matching name"):
        load_pairs(tmp_path / "img", tmp_path / "lab")
    (tmp_path / "lab" / "e.tif").unlink()
    write(tmp_path / "lab" / "a.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(BiounetError, match="same name as"):
        load_pairs(tmp_path / "img", tmp_path / "lab")


def test_cell_tracking_challenge_layout(tmp_path, rng):
    seq = tmp_path / "PhC-U373" / "01"
    for t in range(5):
        write(seq / f"t{t:03d}.tif", rng.integers(0, 60000, (9, 11), dtype=np.uint16))
    for t in (1, 3):
        cells = np.zeros((9, 11), np.uint16)
        cells[1:4, 1:4] = 7
        cells[5:8, 2:9] = 12
        write(seq.parent / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", cells)
    samples = load_pairs(seq, label_kind="instance")  # 01_GT/SEG found beside 01
    assert [s.name for s in samples] == ["t001.tif", "t003.tif"]
    assert samples[0].image.dtype == np.uint16
    assert sorted(np.unique(samples[1].instances).tolist()) == [0, 7, 12]
    same = load_pairs(seq, seq.parent / "01_GT" / "SEG", label_kind="instance")
    assert [s.name for s in same] == ["t001.tif", "t003.tif"]
    with pytest.raises(BiounetError, match="no labels given"):
        load_pairs(tmp_path / "PhC-U373")


def test_unreadable_and_missing_files(tmp_path, stacks):
    images, labels, _, _ = stacks
    fake = tmp_path / "fake.tif"
    fake.write_text("this is not an image")
    with pytest.raises(BiounetError, match=r"fake.tif: not a readable image") as err:
        load_pairs(images, fake)
    assert "\n" not in str(err.value)
    fake_png = tmp_path / "fake.png"
    fake_png.write_bytes(b"\x89PNG broken")
    with pytest.raises(BiounetError, match="fake.png: not a readable image"):
        load_pairs(fake_png, labels)
    with pytest.raises(BiounetError, match="nope.tif: no such file or folder"):
        load_pairs(images, tmp_path / "nope.tif")
    with pytest.raises(BiounetError, match="give two files"):
        load_pairs(images, tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty2").mkdir()
    with pytest.raises(BiounetError, match="no TIFF or PNG images"):
        load_pairs(tmp_path / "empty", tmp_path / "empty2")


def test_empty_label_plane_names_the_plane(tmp_path, stacks):
    images, _, _, label = stacks
    label = label.copy()
    label[1] = 0
    with pytest.raises(BiounetError, match=r"labels0.tif\[1\]: label image has no foreground"):
        load_pairs(images, write(tmp_path / "labels0.tif", label))


def test_load_labels(stacks, tmp_path):
    _, labels, _, _ = stacks
    named = load_labels(labels)
    assert [name.endswith(f"[{k}]") for k, (name, _) in enumerate(named)] == [True] * 3
    single = load_labels(write(tmp_path / "one.png", np.eye(4, dtype=np.uint8)))
    assert len(single) == 1 and single[0][1].max() == 4


@pytest.mark.isbi
def test_isbi_training_data(isbi_dir):
    samples = load_pairs(isbi_dir / "train-volume.tif", isbi_dir / "train-labels.tif")
    assert len(samples) == 24
    assert samples[0].image.shape == (1, 512, 512)
    assert all(s.instances.max() > 50 for s in samples)
