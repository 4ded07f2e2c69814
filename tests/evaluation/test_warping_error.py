"""Simple points, simple-point warping and the warping error, on hand-built cases."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from biounet.evaluation import warping_error as warping
from biounet.evaluation.simple_points import (
    OFFSETS,
    neighbourhood,
    neighbourhood_codes,
    simple_point_table,
)
from biounet.evaluation.warping_error import (
    WARPING_ERROR_KINDS,
    classify_warping_errors,
    simple_point_warp,
    warping_error,
    warping_errors,
)

FOUR = ndi.generate_binary_structure(2, 1)
EIGHT = np.ones((3, 3), bool)


def n_components(image):
    """(foreground 4-components, background 8-components) of a bool image."""
    return ndi.label(image, FOUR)[1], ndi.label(~image, EIGHT)[1]


def brute_force_simple(code):
    """Topological check: flipping the centre keeps the component counts in every context.

    The 3x3 neighbourhood is embedded in a 5x5 image whose outer ring is all
    background, then all foreground. The first context joins every background
    piece of the neighbourhood (so a change exposes foreground splits, isolated
    pixels and holes), the second joins every foreground piece (exposing
    background splits).
    """
    for ring in (False, True):
        image = np.full((5, 5), ring)
        image[1:4, 1:4] = neighbourhood(code)
        before = n_components(image)
        image[2, 2] = True
        after = n_components(image)
        if before != after:
            return False
    return True


def kinds_of(warped, target):
    kinds = classify_warping_errors(warped, target)
    names = [WARPING_ERROR_KINDS[k] for k in kinds.ravel() if k]
    return {name: names.count(name) for name in set(names)}


def two_cells(height=9, width=11, membrane=5):
    """Two cells separated by a vertical 1-px membrane (cell = True)."""
    gt = np.ones((height, width), bool)
    gt[:, membrane] = False
    return gt


def test_simple_point_table_matches_brute_force_on_all_256():
    table = simple_point_table()
    expected = np.array([brute_force_simple(code) for code in range(256)])
    assert table.shape == (256,) and table.dtype == bool
    np.testing.assert_array_equal(table, expected)
    assert 0 < table.sum() < 256  # both outcomes occur


@pytest.mark.parametrize(
    ("picture", "simple"),
    [
        ("000 010 000", False),  # isolated: T4 = 0
        ("111 111 111", False),  # interior: no background, T8bar = 0
        ("010 010 000", True),  # end of a line
        ("010 010 010", False),  # bridge: T4 = 2
        ("100 010 000", False),  # diagonal only: not 4-adjacent, T4 = 0
        ("110 110 000", True),  # corner of a block
        ("101 010 000", False),  # foreground only diagonal: T4 = 0
        ("111 010 111", False),  # two foreground pieces
        ("111 110 100", True),
    ],
)
def test_simple_point_table_known_configurations(picture, simple):
    nb = np.array([[c == "1" for c in row] for row in picture.split()])
    code = sum(1 << b for b, (dy, dx) in enumerate(OFFSETS) if nb[1 + dy, 1 + dx])
    assert bool(simple_point_table()[code]) is simple


def test_neighbourhood_codes_round_trip(rng):
    mask = rng.random((6, 7)) > 0.5
    codes = neighbourhood_codes(mask)
    padded = np.pad(mask, 1)
    for y in range(6):
        for x in range(7):
            nb = neighbourhood(int(codes[y, x]))
            window = padded[y : y + 3, x : x + 3].copy()
            window[1, 1] = False
            np.testing.assert_array_equal(nb, window)


def naive_warp(reference, target, priority):
    """PAPER.md 3.4 step 2 literally: passes over the sorted mismatches, brute-force test."""
    lab = np.pad(reference, 1)
    tar = np.pad(target, 1)
    pri = np.pad(priority, 1)
    previous = None
    while True:
        ys, xs = np.nonzero(lab != tar)
        if ys.size == 0 or ys.size == previous:
            break
        previous = ys.size
        order = np.argsort(-pri[ys, xs], kind="stable")
        for y, x in zip(ys[order], xs[order], strict=True):
            window = lab[y - 1 : y + 2, x - 1 : x + 2]
            code = sum(1 << b for b, (dy, dx) in enumerate(OFFSETS) if window[1 + dy, 1 + dx])
            if brute_force_simple(code):
                lab[y, x] = not lab[y, x]
    return lab[1:-1, 1:-1]


@pytest.mark.parametrize("vector_min", [1, 10**9])  # always / never vectorised after pass 1
@pytest.mark.parametrize("seed", range(6))
def test_warp_equals_the_sequential_definition(seed, vector_min, monkeypatch):
    monkeypatch.setattr(warping, "VECTOR_PASS_MIN", vector_min)
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random((18, 20)), 1.5)
    reference = smooth > np.median(smooth)
    prob = np.clip(
        ndi.gaussian_filter(reference.astype(float), 1) + rng.normal(0, 0.2, smooth.shape), 0, 1
    )
    for level in (0.3, 0.6):
        target = prob > level
        priority = np.abs(prob - level)
        got = simple_point_warp(reference, target, priority=priority)
        np.testing.assert_array_equal(got, naive_warp(reference, target, priority))


@pytest.mark.parametrize("seed", range(4))
def test_warp_preserves_topology_and_only_moves_toward_target(seed):
    rng = np.random.default_rng(100 + seed)
    reference = ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.5
    target = ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.5
    warped = simple_point_warp(reference, target)
    assert n_components(np.pad(warped, 1)) == n_components(np.pad(reference, 1))
    changed = warped != reference
    assert changed.any()
    np.testing.assert_array_equal(warped[changed], target[changed])


def test_warp_visits_in_descending_priority():
    # a 2-px membrane between two cells; the proposal opens both pixels of row 4.
    gt = np.ones((9, 10), bool)
    gt[:, 4:6] = False
    target = gt.copy()
    target[4, 4:6] = True
    priority = np.zeros(gt.shape)
    priority[4, 4], priority[4, 5] = 0.9, 0.1  # the left pixel first: joins the left cell
    warped = simple_point_warp(gt, target, priority=priority)
    assert np.argwhere(warped != target).tolist() == [[4, 5]]
    priority[4, 4], priority[4, 5] = 0.1, 0.9
    warped = simple_point_warp(gt, target, priority=priority)
    assert np.argwhere(warped != target).tolist() == [[4, 4]]


def test_shifted_membrane_gives_zero_warping_error():
    gt = two_cells(membrane=5)
    shifted = two_cells(membrane=6)  # the whole membrane moved by one pixel
    assert warping_error(shifted.astype(np.uint8), gt).best == 0.0
    assert warping_error(shifted.astype(np.uint8), gt, variant="classic").best == 0.0
    # a closed cell shifted by one pixel, as a probability map
    gt = np.zeros((12, 12), np.uint8)
    gt[3:8, 3:8] = 255
    prob = np.zeros((12, 12))
    prob[4:9, 4:9] = 0.8
    result = warping_error(prob, gt, variant="classic")
    assert result.per_threshold[0.5] == 0.0 and result.best == 0.0
    # the Java loop's 8th level is 0.7999999999999999, so 0.8 is still cell there
    assert result.per_threshold[0.8] == 0.0
    # nothing above 0.9: the cell shrinks to one pixel, which cannot vanish (deletion)
    assert result.per_threshold[0.9] == 1 / 144
    assert warping_error(prob, gt).per_threshold[0.9] == 0.0  # not a split or merger


def test_one_pixel_gap_in_a_membrane_is_one_merge_pixel():
    gt = two_cells(9, 11, membrane=5)
    proposal = gt.copy()
    proposal[4, 5] = True  # gap: the two cells touch through one pixel
    assert kinds_of(simple_point_warp(gt, proposal), proposal) == {"merge": 1}
    result = warping_error(proposal.astype(np.uint8), gt.astype(np.uint8) * 255)
    assert result.best == 1 / (9 * 11) and result.threshold is None
    errors = warping_errors(proposal.astype(np.uint8), gt)
    assert errors["mergers"] == {None: 1} and errors["splits"] == {None: 0}


def test_membrane_cutting_a_cell_gives_split_pixels():
    gt = np.zeros((11, 9), bool)
    gt[1:10, 1:8] = True
    proposal = gt.copy()
    proposal[5, 1:8] = False  # a 1-px membrane cuts the cell in two
    warped = simple_point_warp(gt, proposal)
    assert kinds_of(warped, proposal) == {"split": 1}  # all but one pixel warp away
    thick = gt.copy()
    thick[5:7, 1:8] = False  # a 2-px cut leaves a 2-px bridge
    assert kinds_of(simple_point_warp(gt, thick), thick) == {"split": 2}
    partial = gt.copy()
    partial[5, 1:6] = False  # a cut that does not go through is only a dent
    assert (simple_point_warp(gt, partial) == partial).all()


def test_cut_ring_is_not_a_split():
    # the last pixel of a cut through a ring is locally a bridge but the ring stays
    # connected: a hole deletion, found only by the global recomputation
    gt = np.zeros((11, 11), bool)
    gt[1:10, 1:10] = True
    gt[4:7, 4:7] = False
    proposal = gt.copy()
    proposal[1:4, 5] = False
    warped = simple_point_warp(gt, proposal)
    assert kinds_of(warped, proposal) == {"hole_deletion": 1}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("object_addition", {"object_addition": 9}),
        ("object_deletion", {"object_deletion": 1}),
        ("hole_addition", {"hole_addition": 1}),
        ("hole_deletion", {"hole_deletion": 1}),
    ],
)
def test_non_split_merge_errors_are_classified_and_not_counted(make, expected):
    gt = np.zeros((9, 9), bool)
    target = gt.copy()
    if make == "object_addition":
        target[3:6, 3:6] = True  # a 3x3 blob in the membrane: no pixel can grow into it
    elif make == "object_deletion":
        gt[4, 4] = True  # a one-pixel cell the proposal misses
    elif make == "hole_addition":
        gt[2:7, 2:7] = True
        target = gt.copy()
        target[4, 4] = False
    else:
        gt[2:7, 2:7] = True
        gt[4, 4] = False
        target[2:7, 2:7] = True
    warped = simple_point_warp(gt, target)
    assert kinds_of(warped, target) == expected
    errors = warping_errors(target.astype(np.uint8) * 7, gt)
    assert errors["splits_mergers"][None] == 0.0
    assert errors["classic"][None] == sum(expected.values()) / 81


def test_merge_through_a_wide_gap_counts_every_pixel():
    gt = np.zeros((7, 7), np.uint8)
    gt[1:6, 1:3] = gt[1:6, 4:6] = 255
    merged = np.zeros((7, 7), np.uint8)
    merged[1:6, 1:6] = 255
    assert kinds_of(simple_point_warp(gt > 0, merged > 0), merged > 0) == {"merge": 5}


def test_three_ids_on_a_cell_pixel_is_a_split():
    # a cell pixel whose 8 neighbours see background and two cells (one only diagonally)
    warped = np.zeros((5, 5), bool)
    warped[1:3, 1:3] = True  # cell A, (2, 2) is its corner
    warped[3, 3] = True  # cell B touches (2, 2) diagonally
    target = warped.copy()
    target[2, 2] = False
    assert kinds_of(warped, target) == {"split": 1}


def test_warping_error_averages_slices_and_sweeps_ten_levels():
    gt = np.stack([two_cells(), two_cells()]).astype(np.uint8) * 255
    prob = gt / 255.0
    prob[1, 4, 5] = 0.55  # a gap that opens above 0.55 ... and closes below
    result = warping_error(prob, gt)
    assert len(result.per_threshold) == 10 and max(result.per_threshold) == 0.9
    assert result.per_threshold[0.5] == 1 / (2 * 9 * 11)
    assert result.per_threshold[0.6] == 0.0
    assert result.best == 0.0 and result.threshold == 0.6


def test_warping_error_label_prediction_and_shape_check():
    gt = two_cells().astype(np.uint8)
    labels = ndi.label(two_cells(), FOUR)[0]
    result = warping_error(labels, gt)
    assert result.best == 0.0 and result.threshold is None and result.per_threshold == {}
    with pytest.raises(ValueError, match="differ"):
        warping_error(labels[:, :-1], gt)
    with pytest.raises(ValueError, match="variant"):
        warping_error(labels, gt, variant="mergers")


def naive_classify(warped, target):
    """PAPER.md 3.4 step 4 literally, recomputing all cells for every two-ID pixel."""
    names = {name: k for k, name in enumerate(WARPING_ERROR_KINDS)}
    padded = np.pad(warped, 1)
    cells = ndi.label(padded, FOUR)[0]
    kinds = np.zeros(warped.shape, np.uint8)
    for y, x in zip(*np.nonzero(warped != target), strict=True):
        py, px = y + 1, x + 1
        ids = {cells[py + dy, px + dx] for dy, dx in OFFSETS}
        on = padded[py, px]
        if ids == {0}:
            kind = "object_deletion" if on else "object_addition"
        elif len(ids) == 1:
            kind = "hole_addition" if on else "hole_deletion"
        elif len(ids) == 2 and not on:
            kind = "hole_addition"
        elif len(ids) == 2:
            flipped = padded.copy()
            flipped[py, px] = False
            again = ndi.label(flipped, FOUR)[0]
            after = {again[py + dy, px + dx] for dy, dx in OFFSETS}
            kind = "split" if len(after) > 2 else "hole_deletion"
        else:
            kind = "split" if on else "merge"
        kinds[y, x] = names[kind]
    return kinds


@pytest.mark.parametrize("seed", range(8))
def test_classification_equals_the_literal_definition(seed):
    rng = np.random.default_rng(200 + seed)
    shape = (40, 40) if seed < 4 else (24, 60)
    reference = ndi.gaussian_filter(rng.random(shape), 1.0 + seed % 2) > 0.5
    noise = rng.random(shape)  # pure noise: many splits, long bridges and holes
    target = noise > 0.5 if seed % 2 else ndi.gaussian_filter(noise, 1) > 0.5
    warped = simple_point_warp(reference, target, priority=np.abs(noise - 0.5))
    expected = naive_classify(warped, target)
    assert (expected == WARPING_ERROR_KINDS.index("split")).sum() > 3
    np.testing.assert_array_equal(classify_warping_errors(warped, target), expected)
