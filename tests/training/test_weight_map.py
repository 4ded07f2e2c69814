import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from biounet.training.borders import (
    NEGLIGIBLE,
    _border_weight_naive,
    border_weight,
    cutoff_radius,
    separate_instances,
    separation_borders,
    two_nearest_distances,
)
from biounet.training.weight_map import (
    Target,
    WeightMapConfig,
    balanced_class_weights,
    class_counts,
    weight_map,
    weight_maps,
)


def random_instances(rng, shape=None):
    """Small random instance images: rectangles with repeated and gapped ids, or noise."""
    h, w = shape if shape is not None else rng.integers(1, 28, 2)
    if rng.random() < 0.3:
        return (rng.integers(0, 5, (h, w)) * (rng.random((h, w)) < 0.3)).astype(np.int32)
    labels = np.zeros((h, w), np.int32)
    for _ in range(rng.integers(1, 7)):
        y, x = rng.integers(0, h), rng.integers(0, w)
        value = rng.choice([1, 2, 3, 9, 40])
        labels[y : y + rng.integers(1, 7), x : x + rng.integers(1, 7)] = value
    return labels


def sorted_edt(labels):
    """Reference d1, d2: the per-object distance transforms, sorted per pixel."""
    ids = np.unique(labels[labels > 0])
    maps = [ndi.distance_transform_edt(labels != k) for k in ids]
    maps += [np.full(labels.shape, np.inf)] * 2
    both = np.sort(np.stack(maps), axis=0)
    return both[0], both[1]


def two_squares(gap, size=5, shape=(15, 40)):
    labels = np.zeros(shape, np.int32)
    labels[5 : 5 + size, 5 : 5 + size] = 1
    labels[5 : 5 + size, 5 + size + gap : 5 + 2 * size + gap] = 2
    return labels


# --- the hand-computed case of the issue ------------------------------------------


def test_two_squares_three_px_apart():
    labels = two_squares(gap=3, shape=(60, 80))
    wc = (0.7, 1.9)
    target = weight_map(labels, class_weights=wc)
    gap_centre = (7, 11)  # columns 10, 11, 12 are the gap; d1 = d2 = 2 at column 11
    expected = np.float32(wc[0] + 10 * math.exp(-16 / 50))
    assert target.weights[gap_centre] == pytest.approx(expected, abs=1e-6)
    assert target.weights[gap_centre] == pytest.approx(wc[0] + 7.2615, abs=1e-4)
    # far background: the border term is exactly 0; interiors: w_c(object)
    assert target.weights[59, 79] == np.float32(wc[0])
    assert target.weights[0, 79] == np.float32(wc[0])
    assert np.all(target.weights[labels > 0] == np.float32(wc[1]))
    assert np.all(target.classes == (labels > 0))
    assert target.classes.dtype == np.uint8 and target.weights.dtype == np.float32


def test_gap_pixels_next_to_objects():
    labels = two_squares(gap=3)
    d1, d2 = two_nearest_distances(labels)
    assert (d1[7, 10], d2[7, 10]) == (1.0, 3.0)
    term = border_weight(labels)
    assert term[7, 10] == pytest.approx(10 * math.exp(-16 / 50))
    assert term[7, 11] == pytest.approx(10 * math.exp(-16 / 50))
    assert np.all(term[labels > 0] == 0)


def test_single_object_and_empty_images_have_no_border_term():
    one = np.zeros((20, 20), np.int32)
    one[5:9, 5:9] = 3
    assert not border_weight(one).any()
    assert not border_weight(np.zeros((7, 9), np.int32)).any()
    assert not border_weight(two_squares(gap=2), w0=0).any()


# --- separation borders (PAPER.md item 19) ------------------------------------------


@pytest.mark.parametrize("offset", [(0, 5), (5, 0), (5, 5), (5, -5), (3, 5)])
def test_touching_squares_become_two_components(offset):
    labels = np.zeros((24, 24), np.int32)
    labels[6:11, 6:11] = 1
    dy, dx = offset
    labels[6 + dy : 11 + dy, 6 + dx : 11 + dx] = 2  # touches (shares an edge or a corner)
    separated = separate_instances(labels)
    for connectivity in (1, 2):
        _, n = ndi.label(separated > 0, structure=ndi.generate_binary_structure(2, connectivity))
        assert n == 2
    removed = separation_borders(labels)
    assert removed.sum() <= 5  # at most one row or column of the later square: 1-px gaps
    assert np.all(separated[~removed] == labels[~removed])


def test_separation_rule_is_causal():
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    # only the right object's first column sees a different object to its left / above
    assert separation_borders(labels).astype(int).tolist() == [[0, 0, 1, 0], [0, 0, 1, 0]]
    # background never counts as a different object; the same id never separates
    assert not separation_borders(np.array([[1, 0, 1], [0, 1, 0]])).any()


def raster_scan_reference(labels):
    """The rule read literally: visit every pixel in raster order, look at the current labels."""
    work = labels.copy()
    rows, cols = work.shape
    for r in range(rows):
        for c in range(cols):
            own = work[r, c]
            if not own:
                continue
            for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < rows and 0 <= cc < cols and work[rr, cc] and work[rr, cc] != own:
                    work[r, c] = 0
                    break
    return work


def test_separation_equals_raster_scan_and_leaves_no_contacts(rng):
    for _ in range(60):
        labels = random_instances(rng)
        separated = separate_instances(labels)
        np.testing.assert_array_equal(separated, raster_scan_reference(labels))
        padded = np.pad(separated, 1)
        rows, cols = separated.shape
        for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
            other = padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
            assert not np.any((separated > 0) & (other > 0) & (other != separated))


def test_separated_objects_get_gap_weights():
    labels = two_squares(gap=0)
    target = weight_map(labels)
    gap = target.classes[5:10, 10]
    assert np.all(gap == 0)  # the first column of square 2 became background
    # d1 = d2 = 1 on the 1-px gap between the separated squares
    assert target.weights[7, 10] == pytest.approx(1.0 + 10 * math.exp(-4 / 50), abs=1e-5)
    assert np.all(weight_map(labels, separate=False).classes[labels > 0] == 1)


# --- fast == direct ------------------------------------------------------------------


def test_two_nearest_distances_equal_sorted_edt(rng):
    for _ in range(150):
        labels = random_instances(rng)
        d1, d2 = two_nearest_distances(labels)
        ref1, ref2 = sorted_edt(labels)
        np.testing.assert_array_equal(d1, ref1)
        np.testing.assert_array_equal(d2, ref2)


def test_border_weight_equals_naive_on_random_cases(rng):
    for k in range(200):
        labels = random_instances(rng)
        sigma = (1.0, 2.0, 5.0, 7.5)[k % 4]
        fast = border_weight(labels, sigma=sigma)
        slow = _border_weight_naive(labels, sigma=sigma)
        # identical wherever the term matters, negligible elsewhere
        big = slow >= NEGLIGIBLE * 10
        np.testing.assert_array_equal(fast[big], slow[big])
        assert np.abs(fast - slow).max() <= NEGLIGIBLE * 10


def test_border_weight_equals_naive_on_touching_cells(rng):
    from biounet.synthetic import touching_cells

    _, cells = touching_cells((96, 120), n_cells=10, radius=(10, 18), rng=rng)
    objects = separate_instances(cells)
    fast, slow = border_weight(objects), _border_weight_naive(objects)
    assert np.abs(fast - slow).max() <= NEGLIGIBLE * 10
    assert fast.max() > 9  # separated neighbours give ~ w0 exp(-4/50) = 9.2


def test_large_and_gapped_ids_use_the_wide_packing(rng):
    labels = two_squares(gap=3) * (2**30 - 3)  # ids 0, 2**30 - 3, 2**31 - 6
    assert border_weight(labels)[7, 11] == pytest.approx(10 * math.exp(-16 / 50))
    labels = random_instances(rng, (30, 30)) * 1000003
    np.testing.assert_allclose(
        border_weight(labels), _border_weight_naive(labels), atol=NEGLIGIBLE * 10, rtol=0
    )


def test_cutoff_radius():
    r = cutoff_radius(sigma=5.0)
    assert 10 * math.exp(-(r**2) / 50) == pytest.approx(10 * NEGLIGIBLE)


@pytest.mark.slow
def test_isbi_slice_fast_equals_naive(isbi_dir):
    import tifffile
    from skimage.measure import label

    mask = tifffile.imread(isbi_dir / "train-labels.tif", key=0) > 0
    objects = separate_instances(label(mask, connectivity=1))
    fast, slow = border_weight(objects), _border_weight_naive(objects)
    assert np.abs(fast - slow).max() <= NEGLIGIBLE * 10
    big = slow >= NEGLIGIBLE * 10
    np.testing.assert_array_equal(fast[big], slow[big])


# --- class balance ---------------------------------------------------------------------


def test_class_weights_balance_the_training_set(rng):
    from biounet.synthetic import touching_cells

    images = [touching_cells((40 + 8 * k, 48), n_cells=4, rng=rng)[1] for k in range(4)]
    targets = weight_maps(images, WeightMapConfig(w0=0.0))
    classes = np.concatenate([t.classes.ravel() for t in targets])
    weights = np.concatenate([t.weights.ravel() for t in targets])
    per_class = [weights[classes == k].sum() for k in (0, 1)]
    assert per_class[0] == pytest.approx(per_class[1], rel=1e-5)
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)
    # with the border term the class part stays the same
    full = weight_maps(images)
    assert full[0].class_weights == targets[0].class_weights
    assert all(np.all(f.weights >= t.weights) for f, t in zip(full, targets, strict=True))


def test_class_weight_options():
    labels = two_squares(gap=3)
    assert weight_maps([labels], WeightMapConfig(class_weights="none"))[0].class_weights == (1, 1)
    t = weight_maps([labels], WeightMapConfig(class_weights=(0.1, 1.0)))[0]
    assert t.class_weights == (0.1, 1.0)
    assert t.weights[14, 39] == np.float32(0.1)  # far from both squares
    assert balanced_class_weights([0, 10]) == (0.0, 1.0)
    assert class_counts([np.array([[0, 1, 1]])]).tolist() == [1, 2]


def test_config_validation_and_round_trip():
    config = WeightMapConfig(w0=5, sigma=3, class_weights=[0.2, 1.0], separate=False)
    assert config.class_weights == (0.2, 1.0)
    assert WeightMapConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["class_weights"] == [0.2, 1.0]
    for bad in (
        {"w0": -1},
        {"sigma": 0},
        {"class_weights": "inverse"},
        {"class_weights": (1, 2, 3)},
        {"class_weights": (-1, 1)},
    ):
        with pytest.raises(ValueError, match="WeightMapConfig"):
            WeightMapConfig(**bad)
    with pytest.raises(ValueError, match="unknown WeightMapConfig field"):
        WeightMapConfig.from_dict({"w_0": 10})


# --- cache -------------------------------------------------------------------------------


def test_disk_cache_reuses_and_recovers(tmp_path, monkeypatch):
    import biounet.training.weight_map as weights_module

    labels = [two_squares(gap=3), two_squares(gap=1)]
    first = weight_maps(labels, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("weights-*.npz"))
    assert len(files) == 2

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(weights_module, "_classes_and_border", fail)
    again = weight_maps(labels, cache_dir=tmp_path)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.classes, b.classes)
    monkeypatch.undo()
    # other parameters: other files; a damaged file is recomputed and replaced
    weight_maps(labels, WeightMapConfig(sigma=3), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("weights-*.npz"))) == 4
    files[0].write_bytes(b"broken")
    repaired = weight_maps(labels, cache_dir=tmp_path)
    for a, b in zip(first, repaired, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
    assert not list(tmp_path.glob(".*partial*"))


def test_target_is_plain_arrays():
    t = weight_map(two_squares(gap=2))
    assert isinstance(t, Target)
    assert t.weights.shape == t.classes.shape == (15, 40)


def test_annotated_margin_zeroes_far_background_and_balances_the_rest():
    from biounet.training.weight_map import WeightMapConfig, weight_maps

    labels = np.zeros((10, 30), int)
    labels[3:7, 2:6] = 1  # one annotated cell, 16 px
    full = weight_maps([labels], WeightMapConfig(w0=0.0))[0]
    part = weight_maps([labels], WeightMapConfig(w0=0.0, annotated_margin=3))[0]
    # within 3 px of the cell: rows 0-9 x cols 0-8 minus the rounded corners
    from scipy import ndimage as ndi

    near = ndi.distance_transform_edt(labels == 0) <= 3
    assert (part.weights[~near] == 0).all() and (part.weights[near] > 0).all()
    # balance over the 16 cell pixels and the near.sum() - 16 weighted background pixels
    n_bg = int(near.sum()) - 16
    n = n_bg + 16
    assert part.class_weights == pytest.approx((n / (2 * n_bg), n / (2 * 16)))
    assert full.class_weights == pytest.approx((300 / (2 * 284), 300 / (2 * 16)))
    assert float(part.weights[near].mean()) == pytest.approx(1.0)


def test_annotated_margin_must_be_positive():
    from biounet.training.weight_map import WeightMapConfig

    for bad in (0, -2, True, "far"):
        with pytest.raises(ValueError, match="annotated_margin"):
            WeightMapConfig(annotated_margin=bad)
