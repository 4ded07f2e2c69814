import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.segmentation import watershed

from biounet.inference.instances import label_stack
from biounet.options import InstanceOptions


def canonical(labels):
    """Renumber labels by first appearance in raster order (partition identity)."""
    flat = labels.ravel()
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    lut = np.zeros(labels.max() + 1, np.int64)
    lut[order[order > 0]] = np.arange(1, (order > 0).sum() + 1)
    return lut[labels]


def smooth_probability(rng, shape, sigma=2.0):
    p = ndi.gaussian_filter(rng.random(shape), (0, sigma, sigma))
    return (p - p.min()) / (p.max() - p.min())


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("block", [(7, 11), (16, 16), (50, 200)])
def test_blockwise_components_equal_whole_image(rng, connectivity, block):
    prob = smooth_probability(rng, (2, 61, 83))
    scratch = np.zeros(prob.shape, np.uint32)
    opts = InstanceOptions(threshold=0.6, connectivity=connectivity)
    tables = label_stack(prob, scratch, block, opts)
    for p in range(2):
        ours = tables[p][scratch[p]]
        ref = label(prob[p] > 0.6, connectivity=connectivity)
        assert ours.max() == ref.max() > 3
        assert np.array_equal(canonical(ours), canonical(ref))


def test_spiral_crossing_many_blocks():
    """One object that winds through every block must stay one object."""
    img = np.zeros((40, 40), bool)
    img[2, 2:38] = img[2:38, 37] = img[37, 4:38] = img[6:38, 4] = img[6, 4:33] = True
    prob = img[None].astype(np.float32)
    scratch = np.zeros(prob.shape, np.uint32)
    tables = label_stack(prob, scratch, (5, 5), InstanceOptions())
    assert tables[0].max() == 1
    merged = tables[0][scratch[0]]
    assert np.array_equal(canonical(merged), canonical(label(img, connectivity=1)))


def test_diagonal_touch_across_block_corner():
    img = np.zeros((8, 8), bool)
    img[3, 3] = img[4, 4] = True  # touch only diagonally, across the corner of 4x4 blocks
    scratch = np.zeros((1, 8, 8), np.uint32)
    assert (
        label_stack(img[None] * 1.0, scratch, (4, 4), InstanceOptions(connectivity=2))[0].max() == 1
    )
    assert (
        label_stack(img[None] * 1.0, scratch, (4, 4), InstanceOptions(connectivity=1))[0].max() == 2
    )


def test_min_size_counts_merged_objects():
    img = np.zeros((1, 10, 10))
    img[0, 4:6, 2:8] = 1.0  # 12 px spanning two blocks (6 px each)
    img[0, 0, 0] = 1.0  # 1 px
    scratch = np.zeros(img.shape, np.uint32)
    table = label_stack(img, scratch, (5, 5), InstanceOptions(min_size=10))[0]
    out = table[scratch[0]]
    assert out.max() == 1 and (out > 0).sum() == 12


def watershed_pair(prob, block):
    """(ours, skimage's, markers): the block-wise watershed and a whole-image one."""
    opts = InstanceOptions(method="watershed", threshold=0.4, seed_threshold=0.7)
    scratch = np.zeros(prob.shape, np.uint32)
    seeds = np.zeros(prob.shape, np.uint32)
    table = label_stack(prob, scratch, block, opts, seed_scratch=seeds)[0]
    markers = label(prob[0] > 0.7, connectivity=1)
    ref = watershed(1 - prob[0], markers, mask=(prob[0] > 0.4) | (markers > 0))
    return table[scratch[0]], ref, markers


def test_watershed_single_block_equals_skimage(rng):
    ours, ref, markers = watershed_pair(smooth_probability(rng, (1, 50, 60), sigma=3), (64, 64))
    assert np.array_equal(canonical(ours), canonical(ref))
    assert ours.max() == markers.max() > 2


def test_watershed_blocks_agree_with_whole(rng):
    prob = smooth_probability(rng, (1, 160, 160), sigma=3)
    ours, ref, markers = watershed_pair(prob, (32, 32))
    ours, ref = canonical(ours), canonical(ref)
    assert np.mean(ours == ref) > 0.999


def touching_disks(shape=(70, 110), centres=((35, 35), (35, 68)), radii=(22, 13)):
    """Instance labels of disks that touch along a short contact (a neck), and their union."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.int64)
    for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True), 1):
        truth[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (truth == 0)] = k
    return truth


def distance_labels(prob, block, depth):
    opts = InstanceOptions(method="distance", threshold=0.5, split_depth=depth)
    scratch = np.zeros(prob.shape, np.uint32)
    seeds = np.zeros(prob.shape, np.uint32)
    table = label_stack(prob, scratch, block, opts, seed_scratch=seeds)[0]
    return table[scratch[0]]


def test_distance_split_separates_cells_joined_by_a_confident_contact():
    """A small disk touching a large one, probability 1 across the contact: components and
    the probability watershed see one object; the distance split finds the neck. Its seeds:
    the large disk's peak (22) and the small one's (13) are joined by a saddle of 7 (the
    contact's half-width), so depths up to 6 split and 7 or more do not."""
    truth = touching_disks()
    prob = (truth > 0)[None].astype(np.float64)
    assert label(prob[0] > 0.5, connectivity=1).max() == 1
    split = distance_labels(prob, (128, 128), depth=3.0)
    assert split.max() == 2
    for k in (1, 2):  # each cell recovered to within its boundary ring
        ours = np.bincount(split[truth == k]).argmax()
        assert ours > 0 and np.mean(split[truth == k] == ours) > 0.9
    assert distance_labels(prob, (128, 128), depth=6.0).max() == 2
    assert distance_labels(prob, (128, 128), depth=7.0).max() == 1  # as deep as the neck


def test_distance_split_keeps_every_object_and_blocks_agree_with_whole():
    """Blocks smaller than the cells give the whole-image result (the margin covers them),
    and a small isolated object whose peak is lower than the depth still gets its seed."""
    from biounet.training.calibrate import distance_split

    truth = touching_disks((90, 150), ((35, 35), (35, 68), (70, 120), (10, 130)), (22, 13, 15, 3))
    prob = (truth > 0)[None] * 0.8 + 0.1
    whole = distance_split(prob, 0.5, 0, 4.0)[0]
    assert whole.max() == 4  # the 3-px disk (peak 3 < 4) keeps its seed
    for block in ((16, 16), (30, 47), (90, 150)):
        assert np.array_equal(canonical(distance_labels(prob, block, 4.0)), canonical(whole))


def test_split_radius_keeps_a_protrusion_on_its_cell_and_blocks_agree():
    """A cell with a narrow arm ending in a knob (peak 4): depth 1 splits the knob off as a
    cell; a smallest radius of 6 keeps it on the cell. Blockwise equals the whole plane, and
    a small object whose only maximum is under the radius stays one object."""
    truth = touching_disks((90, 150), ((40, 40), (40, 90), (80, 130)), (20, 4, 3))
    truth[38:43, 40:90] = 1  # the arm joining the knob to the cell (one cell in truth)
    truth[truth == 2] = 1
    prob = (truth > 0)[None] * 0.9
    assert distance_labels(prob, (128, 160), depth=1.0).max() == 3  # cell, knob, small disk

    def with_radius(block):
        opts = InstanceOptions(method="distance", threshold=0.5, split_depth=1.0, split_radius=6)
        scratch, seeds = np.zeros(prob.shape, np.uint32), np.zeros(prob.shape, np.uint32)
        return label_stack(prob, scratch, block, opts, seed_scratch=seeds)[0][scratch[0]]

    whole = with_radius((90, 150))
    assert whole.max() == 2 and np.array_equal(whole > 0, truth > 0)  # nothing lost
    assert np.unique(whole[truth == 1]).size == 1  # the knob stays on its cell
    for block in ((16, 16), (30, 47)):
        assert np.array_equal(canonical(with_radius(block)), canonical(whole))


@pytest.mark.parametrize(("depth", "radius"), [(1.0, 0.0), (3.0, 0.0), (2.0, 4.0), (6.0, 8.0)])
def test_distance_seeds_object_by_object_equal_the_whole_image_h_maxima(rng, depth, radius):
    """Each object's h-maxima are found in its own box; the reference rebuilds the whole
    image at once (as skimage's h-maxima by reconstruction do), on blobs of a smoothed noise
    image that touch diagonally, fill a box's corner and meet the image border."""
    from skimage.morphology import local_maxima, reconstruction

    from biounet.inference.instances import distance_seeds

    prob = smooth_probability(rng, (1, 120, 150), sigma=4.0)[0]
    prob[60, 60], prob[61, 61], prob[60, 61], prob[61, 60] = 1.0, 1.0, 0.0, 0.0  # a diagonal
    for threshold in (0.45, 0.55, 0.7):
        mask = prob > threshold
        distance = ndi.distance_transform_edt(mask) + (depth + 1.0) * mask
        raised = reconstruction(distance - depth, distance, method="dilation")
        expected = local_maxima(raised, connectivity=1, allow_borders=True) & mask
        if radius > 0:
            plateaus, n = ndi.label(expected)
            peaks = ndi.maximum(distance, plateaus, np.arange(1, n + 1)) - (depth + 1.0)
            expected &= np.concatenate([[False], np.asarray(peaks) >= radius])[plateaus]
        seeds = distance_seeds(prob, threshold, depth, radius)
        assert label(mask).max() > 3 and expected.any()
        assert np.array_equal(seeds, expected)
