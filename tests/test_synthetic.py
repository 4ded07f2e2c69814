"""Synthetic data: seeded, labelled as drawn, written in the Cell Tracking Challenge layout."""

import numpy as np
import pytest
import tifffile

from biounet.synthetic import cell_sequence, write_ctc_dataset


def test_sequences_are_seeded_and_follow_their_cells():
    a = cell_sequence("phc", frames=3, shape=(96, 128), rng=np.random.default_rng(4))
    b = cell_sequence("phc", frames=3, shape=(96, 128), rng=np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    images, labels = a
    assert images.shape == labels.shape == (3, 96, 128)
    # the same ids in every frame, each cell moving a little
    ids = [set(np.unique(f[f > 0])) for f in labels]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) >= 2
    overlap = [(labels[0] == k) & (labels[1] == k) for k in ids[0]]
    assert all(o.sum() > 0.5 * (labels[0] == k).sum() for o, k in zip(overlap, ids[0], strict=True))


def test_phase_contrast_is_sparse_with_bright_halos_and_dic_cells_touch():
    images, labels = cell_sequence("phc", frames=1, shape=(256, 320), rng=np.random.default_rng(0))
    fg = labels[0] > 0
    assert 0.02 < fg.mean() < 0.09  # U373: about 5% foreground
    from scipy import ndimage as ndi

    ring = ndi.binary_dilation(fg, iterations=3) & ~fg
    assert images[0][ring].mean() > images[0][~fg & ~ring].mean() + 20  # the halo
    assert images[0][fg].mean() < images[0][~fg & ~ring].mean()  # darker bodies
    _, dic = cell_sequence("dic", frames=1, shape=(128, 128), rng=np.random.default_rng(0))
    d = dic[0]
    touching = (d[:, 1:] != d[:, :-1]) & (d[:, 1:] > 0) & (d[:, :-1] > 0)
    assert touching.sum() > 50  # cells share borders


def test_ctc_layout_with_partial_gold_truth(tmp_path):
    write_ctc_dataset(
        tmp_path,
        "dic",
        sequences=2,
        frames=5,
        annotate_every=2,
        annotated_fraction=0.5,
        shape=(64, 80),
        seed=3,
    )
    assert sorted(p.name for p in (tmp_path / "01").iterdir()) == [f"t00{i}.tif" for i in range(5)]
    gt = sorted(p.name for p in (tmp_path / "02_GT" / "SEG").iterdir())
    assert gt == ["man_seg000.tif", "man_seg002.tif", "man_seg004.tif"]
    truth = tifffile.imread(tmp_path / "01_GT" / "SEG" / "man_seg000.tif")
    assert truth.dtype == np.uint16 and truth.shape == (64, 80)
    # about half the cells are annotated, the same ones in every gold-truth frame
    later = tifffile.imread(tmp_path / "01_GT" / "SEG" / "man_seg004.tif")
    assert set(np.unique(truth)) == set(np.unique(later))
    image = tifffile.imread(tmp_path / "01" / "t000.tif")
    assert image.dtype == np.uint8 and image.shape == (64, 80)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        cell_sequence("confocal", rng=np.random.default_rng(0))
