"""ISBI metrics on hand-computed cases, trap cases and cross-checks with scikit-image."""

import json
import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from biounet.evaluation.contingency import contingency, information, rand_counts
from biounet.evaluation.isbi import (
    MetricResult,
    evaluate_isbi,
    pixel_error,
    rand_error,
    seg_measure,
    vinfo,
    vrand,
)
from biounet.evaluation.matching import average_precision, seg_per_object, seg_score
from biounet.evaluation.proposal import THRESHOLDS, WARPING_THRESHOLDS, Proposal, label_cells
from biounet.evaluation.thinning import thin_boundaries

ISBI_KEYS = ("pixel_error", "rand_error", "warping_error", "vrand", "vinfo")

# Ground truth: cell A (4 px, columns 0-1) and cell B (2 px, column 3), membrane column 2.
GT = np.array([[255, 255, 0, 255], [255, 255, 0, 255]], np.uint8)
# Proposal: A is segment 1 but for one boundary pixel (a singleton); B is segment 2.
LABELS = np.array([[1, 1, 2, 2], [1, 0, 2, 2]])


def h(*counts):
    """Entropy (nats) of a distribution given as counts."""
    n = sum(counts)
    return -sum(c / n * math.log(c / n) for c in counts)


def two_cells(height=9, width=11, membrane=slice(5, 6)):
    gt = np.full((height, width), 255, np.uint8)
    gt[:, membrane] = 0
    return gt


def blobs(rng, shape=(24, 24), sigma=2.0, level=0.5):
    return ndi.gaussian_filter(rng.random(shape), sigma) > level


# --- thresholds and results ------------------------------------------------------------


def test_threshold_sweeps_follow_the_java_loop():
    assert len(THRESHOLDS) == 11 and len(WARPING_THRESHOLDS) == 10
    assert THRESHOLDS[-1] == 0.9999999999999999 and THRESHOLDS[3] == 0.30000000000000004
    assert WARPING_THRESHOLDS == THRESHOLDS[:10]


def test_metric_result_picks_the_lowest_best_threshold():
    r = MetricResult.from_sweep({0.0: 0.5, 0.1: 0.7, 0.2: 0.7}, lower_is_better=False)
    assert (r.best, r.threshold) == (0.7, 0.1)
    assert str(r) == "0.7 at threshold 0.1"
    labels = MetricResult.from_sweep({None: 0.25}, lower_is_better=True)
    assert (labels.best, labels.threshold, labels.per_threshold) == (0.25, None, {})


# --- pixel error ---------------------------------------------------------------------------


def test_pixel_error_hand_computed_and_micro_averaged():
    gt = np.array([[[255, 255, 0, 0]], [[255, 0, 0, 0]]], np.uint8)
    prob = np.array([[[0.9, 0.4, 0.3, 0.0]], [[0.6, 0.7, 0.0, 0.0]]])
    r = pixel_error(prob, gt)
    # (TP, FP, FN) summed over both slices at each threshold:
    assert r.per_threshold[0.0] == pytest.approx(1 - 6 / 8)  # (3, 2, 0)
    assert r.per_threshold[0.3] == pytest.approx(
        1 - 6 / 7
    )  # (3, 1, 0); 0.3 > 0.30000000000000004 fails
    assert r.per_threshold[0.5] == pytest.approx(1 - 4 / 6)  # (2, 1, 1)
    assert r.per_threshold[0.6] == pytest.approx(1 - 2 / 5)  # (1, 1, 2)
    assert r.per_threshold[1.0] == 1.0  # (0, 0, 3)
    assert r.best == pytest.approx(1 / 7) and r.threshold == 0.3
    # a per-slice mean would give 1 - (1 + 2/3) / 2 = 1/6 instead
    assert r.best != pytest.approx(1 / 6)


def test_pixel_error_empty_both_is_perfect():
    assert pixel_error(np.zeros((3, 3)), np.zeros((3, 3), np.uint8)).best == 0.0


# --- Rand: pair counts, singletons, micro averaging --------------------------------------


def test_rand_counts_hand_computed_with_singletons():
    ref = label_cells(GT > 0)
    counts = rand_counts(contingency(LABELS, ref))
    # TP = 3^2 + 2^2 + 1 singleton; P_pred = 3^2 + 2^2 + 1; P_true = 4^2 + 2^2
    assert (counts.tp, counts.p_pred, counts.p_true) == (14, 14, 20)
    assert counts.fscore == 28 / 34 and counts.precision == 1.0 and counts.recall == 14 / 20
    assert rand_error(LABELS, GT).best == pytest.approx(1 - 28 / 34)
    # two boundary pixels in one cell are two singletons, not one segment of 2
    pair = rand_counts(contingency(np.array([0, 0]), np.array([1, 1])))
    assert (pair.tp, pair.p_pred, pair.p_true) == (2, 2, 4)


def test_rand_error_micro_average_and_vrand_macro_average():
    gt = np.full((2, 1, 4), 255, np.uint8)
    labels = np.array([[[1, 1, 1, 1]], [[1, 1, 2, 2]]])
    # slice 0: TP = P_pred = P_true = 16; slice 1: TP = P_pred = 8, P_true = 16
    assert rand_error(labels, gt).best == pytest.approx(1 - 48 / 56)
    assert vrand(labels, gt).best == pytest.approx((1 + 16 / 24) / 2)


def test_rand_error_sweeps_connected_components():
    gt = np.array([[255, 255, 0, 255, 255]], np.uint8)
    prob = np.array([[1.0, 1.0, 0.6, 1.0, 1.0]])
    r = rand_error(prob, gt)
    merged = 1 - 2 * 8 / (16 + 8)  # one segment over both cells: TP = 8, P_pred = 16
    assert r.per_threshold[0.5] == pytest.approx(merged)
    assert r.per_threshold[0.6] == 0.0 and r.best == 0.0 and r.threshold == 0.6


def test_information_hand_computed_natural_log():
    info = information(contingency(LABELS, label_cells(GT > 0)))
    h_true = h(4, 2)
    h_pred = -(3 / 6) * math.log(3 / 6) - (2 / 6) * math.log(2 / 6) + (1 / 6) * math.log(6)
    assert info.h_true == pytest.approx(h_true) and info.h_pred == pytest.approx(h_pred)
    assert info.mutual == pytest.approx(h_true)  # the proposal refines the ground truth
    assert info.vinfo == pytest.approx(2 * h_true / (h_pred + h_true))
    # a boundary pixel is a singleton: the same as a segment of its own
    own = LABELS.copy()
    own[1, 1] = 3
    assert vinfo(own, GT).best == pytest.approx(2 * h_true / (h_pred + h_true))
    assert vrand(own, GT).best == pytest.approx(28 / 34)
    # independent segmentations share no information
    assert information(contingency(np.array([1, 2, 1, 2]), np.array([1, 1, 2, 2]))).mutual == (
        pytest.approx(0.0, abs=1e-15)
    )


def test_thinning_before_vscores():
    gt = two_cells()
    thick = two_cells(membrane=slice(4, 7))  # the membrane is 3 px wide in the proposal
    # without thinning, columns 4 and 6 (18 px) are singletons inside the cells
    tp, p_true = 2 * 36**2 + 18, 2 * 45**2
    assert rand_error(thick, gt).best == pytest.approx(1 - 2 * tp / (tp + p_true))
    # thinning moves the boundary back to the middle column: perfect
    thinned = thin_boundaries(label_cells(thick > 0))
    assert (thinned == 0).sum() == 9 and (thinned[:, 5] == 0).all()
    assert vrand(thick, gt).best == 1.0 and vinfo(thick, gt).best == 1.0
    assert thin_boundaries(np.zeros((3, 3), int)).tolist() == [[0] * 3] * 3


def test_adapted_rand_error_cross_check_with_skimage(rng):
    from skimage.metrics import adapted_rand_error

    for _ in range(5):
        ref = label_cells(blobs(rng, level=0.48))
        seg = label_cells(blobs(rng, level=0.5)) * (rng.random(ref.shape) > 0.1)  # + holes
        counts = rand_counts(contingency(seg, ref))
        n = int((ref > 0).sum())
        assert (seg[ref > 0] == 0).sum() > 10  # singletons do occur
        unique = seg.copy()
        zero = unique == 0
        unique[zero] = seg.max() + 1 + np.arange(zero.sum())  # proposal 0 -> singletons
        are, prec, rec = adapted_rand_error(ref, unique)
        # scikit-image counts n_ij (n_ij - 1): our counts minus the n self-pairs;
        # its "precision" divides by the ground-truth pairs (issue #6485)
        assert prec == pytest.approx((counts.tp - n) / (counts.p_true - n), rel=1e-12)
        assert rec == pytest.approx((counts.tp - n) / (counts.p_pred - n), rel=1e-12)
        assert 1 - are == pytest.approx(
            2 * (counts.tp - n) / (counts.p_pred + counts.p_true - 2 * n), rel=1e-12
        )
        # without the remapping, scikit-image treats proposal 0 as one segment
        assert adapted_rand_error(ref, seg)[1] != pytest.approx(prec)


def test_variation_of_information_cross_check_with_skimage(rng):
    from scipy.stats import entropy
    from skimage.metrics import variation_of_information

    for _ in range(5):
        ref = label_cells(blobs(rng, level=0.48))
        seg = label_cells(blobs(rng, level=0.5)) * (rng.random(ref.shape) > 0.1)
        unique = seg.copy()
        zero = unique == 0
        unique[zero] = seg.max() + 1 + np.arange(zero.sum())
        info = information(contingency(seg, ref))
        h_seg_given_ref, h_ref_given_seg = variation_of_information(
            ref, unique, ignore_labels=[0]
        ) * math.log(2)  # bits -> nats
        inside = unique[ref > 0]
        assert info.h_pred == pytest.approx(entropy(np.unique(inside, return_counts=True)[1]))
        assert info.h_true == pytest.approx(entropy(np.bincount(ref[ref > 0])[1:]))
        assert info.h_pred - info.mutual == pytest.approx(h_seg_given_ref, abs=1e-12)
        assert info.h_true - info.mutual == pytest.approx(h_ref_given_seg, abs=1e-12)


# --- the traps ---------------------------------------------------------------------------


def perturbed_case(rng):
    gt = np.stack([two_cells(16, 16, slice(7, 8)), two_cells(16, 16, slice(5, 7))])
    gt[1, 10, :] = 0  # four cells in the second slice
    prob = np.clip(ndi.gaussian_filter(gt / 255.0, (0, 1, 1)) + rng.normal(0, 0.1, gt.shape), 0, 1)
    prob[:, 0, :] = 1.0  # exact ones: cell even at the last level (0.9999999999999999)
    return gt, prob


def test_01_and_0255_and_bool_ground_truth_score_the_same(rng):
    gt, prob = perturbed_case(rng)
    expected = evaluate_isbi(prob, gt)
    assert expected["pixel_error"] > 0  # a case with errors to compare
    for variant in ((gt > 0).astype(np.uint8), gt > 0, (gt > 0).astype(np.float32)):
        assert evaluate_isbi(prob, variant) == expected


def test_membrane_polarity_is_not_cell_polarity():
    gt = np.stack([two_cells(), two_cells(membrane=slice(3, 5))])
    # clipped: with NumPy 1.26 and SciPy 1.10 the blurred 1s come out as 1 + 4e-16
    cell_prob = np.clip(ndi.gaussian_filter(gt / 255.0, (0, 0.7, 0.7)), 0, 1)
    right = evaluate_isbi(cell_prob, gt, metrics=["pixel", "rand", "vrand"])
    wrong = evaluate_isbi(1 - cell_prob, gt, metrics=["pixel", "rand", "vrand"])
    assert right["pixel_error"] == 0 and right["rand_error"] == 0 and right["vrand"] == 1
    assert wrong["pixel_error"] > 0.25 and wrong["rand_error"] > 0.3 and wrong["vrand"] < 0.7


def test_binary_prediction_scores_the_same_at_every_level():
    gt = two_cells()
    binary = (gt > 0).astype(np.float32)  # float32 0/1: the last level must keep 1.0 as cell
    for metric in (pixel_error, rand_error, vrand):
        values = set(metric(binary, gt).per_threshold.values())
        assert values == {metric(binary, gt).best}
    assert pixel_error(binary, gt).best == 0.0


def test_uint8_probability_and_binary_label_masks():
    gt = two_cells()
    prob = ndi.gaussian_filter(gt / 255.0, 1.0)
    as_uint8 = np.round(prob * 255).astype(np.uint8)
    scaled = Proposal.from_array(as_uint8, kind="probabilities").data
    assert np.array_equal(scaled[0], as_uint8 / 255.0)
    assert pixel_error(as_uint8, gt, kind="probabilities") == pixel_error(as_uint8 / 255.0, gt)
    # a 0/255 mask as labels: its 4-connected cells are the segments, not one label 255
    assert rand_error(gt, gt).best == 0.0
    one_segment = np.where(gt > 0, 1, 0)
    one_segment[0, 0] = 2  # two labels: taken as they are, so the cells merge
    tp, p_pred, p_true = 44**2 + 1 + 45**2, 89**2 + 1, 2 * 45**2
    assert rand_error(one_segment, gt).best == pytest.approx(1 - 2 * tp / (p_pred + p_true))


def test_invalid_inputs():
    gt = two_cells()
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        pixel_error(gt * 2.0, gt)
    with pytest.raises(ValueError, match="negative"):
        pixel_error(-np.ones(gt.shape, int), gt)
    with pytest.raises(ValueError, match="differ"):
        pixel_error(gt[:, :-1] / 255.0, gt)
    with pytest.raises(ValueError, match="no cell pixels"):
        rand_error(gt / 255.0, np.zeros_like(gt))
    with pytest.raises(ValueError, match="unknown"):
        evaluate_isbi(gt, gt, metrics=["pixel", "dice"])


# --- CTC SEG and average precision -------------------------------------------------------


def test_seg_hand_cases_and_the_half_rule():
    ref = np.array([[1, 1, 1, 1, 0, 2, 2, 0]])
    exactly_half = np.array([[5, 5, 0, 0, 0, 0, 0, 0]])
    assert seg_score(exactly_half, ref) == 0.0  # 2 of 4 is not > 0.5
    more = np.array([[5, 5, 5, 0, 0, 7, 7, 7]])
    assert seg_score(more, ref) == pytest.approx((3 / 3 * 0 + 3 / 4 + 2 / 3) / 2)
    # label 0 is background, never an object, even where it covers a reference
    assert seg_score(np.zeros_like(ref), ref) == 0.0


def test_seg_per_object_scores_every_reference_label_and_averages_to_seg():
    ref = np.array([[1, 1, 0, 2, 2, 2, 2, 0, 9]])
    res = np.array([[5, 5, 5, 6, 6, 0, 0, 0, 0]])
    # 1: J = 2/3; 2: the result covers exactly half of it, no match; 9: nothing covers it
    scores = seg_per_object(res, ref)
    assert scores == {1: 2 / 3, 2: 0.0, 9: 0.0}
    assert np.mean(list(scores.values())) == pytest.approx(seg_score(res, ref))
    assert seg_per_object(res, np.zeros_like(ref)) == {}


def test_seg_is_the_mean_over_objects_of_all_frames():
    ref = np.array([[[1, 1, 0, 0, 0, 0]], [[1, 1, 0, 2, 0, 3]]])
    res = np.array([[[4, 4, 0, 0, 0, 0]], [[4, 4, 4, 4, 0, 0]]])
    # frame 0: J = 1; frame 1: objects 1 and 2 both lie in result 4 (J = 2/4 and 1/4),
    # object 3 is missed; the mean over the 4 objects, not over the 2 frames
    assert seg_score(res, ref) == pytest.approx((1 + 2 / 4 + 1 / 4 + 0) / 4)
    with pytest.raises(ValueError, match="no objects"):
        seg_score(res, np.zeros_like(ref))


def test_seg_measure_keeps_touching_instances_and_sweeps():
    ref = np.zeros((6, 8), np.uint16)
    ref[1:5, 1:4], ref[1:5, 4:7] = 1, 2  # touching instances
    prob = np.zeros((6, 8))
    prob[1:5, 1:7] = 0.9  # one blob over both
    prob[1:5, 4] = 0.4  # a weak boundary
    r = seg_measure(prob, ref)
    assert r.per_threshold[0.0] == 0.5  # one object covering both: each matches, J = 12/24
    assert r.per_threshold[0.4] == pytest.approx((12 / 12 + 8 / 12) / 2)  # column 4 is lost
    assert r.best == r.per_threshold[0.4] and r.threshold == 0.4


def test_average_precision_iou_at_threshold_and_one_to_one():
    ref = np.array([[1, 1, 2, 2, 0]])
    res = np.array([[3, 3, 3, 3, 0]])  # IoU 0.5 with both references
    ap = average_precision(res, ref, iou_thresholds=(0.5, 0.51))
    assert ap == {0.5: 0.5, 0.51: 0.0}  # one match (TP 1, FN 1), not two
    assert average_precision(np.zeros((2, 2), int), np.zeros((2, 2), int)) == {
        t: 1.0 for t in np.round(np.arange(0.5, 1.0, 0.05), 2)
    }


def test_average_precision_matches_brute_force(rng):
    from itertools import permutations

    for _ in range(20):
        ref = label_cells(blobs(rng, (10, 10), 1.0, 0.5))
        res = label_cells(blobs(rng, (10, 10), 1.0, 0.5))
        nr, ns = int(ref.max()), int(res.max())
        iou = np.zeros((nr, ns))
        for i in range(nr):
            for j in range(ns):
                a, b = ref == i + 1, res == j + 1
                iou[i, j] = (a & b).sum() / (a | b).sum()
        for t in (0.1, 0.3, 0.5):
            best = 0
            if nr <= ns:
                for p in permutations(range(ns), nr):
                    best = max(best, sum(iou[i, p[i]] >= t for i in range(nr)))
            else:
                for p in permutations(range(nr), ns):
                    best = max(best, sum(iou[p[j], j] >= t for j in range(ns)))
            expected = best / (nr + ns - best) if nr + ns else 1.0
            assert average_precision(res, ref, iou_thresholds=[t])[t] == pytest.approx(expected)


# --- evaluate_isbi ---------------------------------------------------------------------------


def test_evaluate_isbi_ground_truth_against_itself(rng):
    gt, _ = perturbed_case(rng)
    r = evaluate_isbi(gt / 255.0, gt)
    assert [k for k in r if k in ISBI_KEYS + ("seg",)] == list(ISBI_KEYS)
    assert (r["pixel_error"], r["rand_error"], r["warping_error"]) == (0.0, 0.0, 0.0)
    assert (r["vrand"], r["vinfo"]) == (1.0, 1.0)
    assert len(r["per_threshold"]["rand_error"]) == 11
    assert len(r["per_threshold"]["warping_error"]) == 10
    assert r["details"]["warping_error_classic"] == 0.0
    json.dumps(r, allow_nan=False)
    labels = evaluate_isbi(gt, gt)  # uint8 0/255: a binary label mask, no sweep
    assert labels["threshold"]["rand_error"] is None and labels["per_threshold"]["vinfo"] == {}
    assert labels["rand_error"] == 0.0 and labels["details"]["kind"] == "labels"


def test_evaluate_isbi_adds_seg_for_instance_ground_truth():
    ref = np.zeros((6, 8), np.uint16)
    ref[1:5, 1:3], ref[1:5, 4:7] = 3, 9
    r = evaluate_isbi(ref.astype(np.int32), ref)
    assert r["seg"] == 1.0 and "seg" in r["per_threshold"]
    assert "seg" not in evaluate_isbi(ref.astype(np.int32), ref > 0)
    once = evaluate_isbi(ref / 9.0, ref, metrics="seg", thresholds=(t / 4 for t in range(4)))
    assert list(once) == ["seg", "threshold", "per_threshold", "details"]
    assert list(once["per_threshold"]["seg"]) == ["0.0", "0.25", "0.5", "0.75"]


def test_cells_are_four_connected():
    # two cells that touch only at a corner are two cells, in the proposal and the truth
    gt = np.zeros((6, 6), np.uint8)
    gt[0:3, 0:3] = gt[3:6, 3:6] = 255
    prob = gt / 255.0
    assert rand_error(prob, gt).best == 0.0 and vrand(prob, gt).best == 1.0
    merged = gt.copy()
    merged[2, 3] = 255  # a 4-connected bridge merges them
    tp, p_pred, p_true = 9**2 + 9**2, 18**2, 2 * 9**2
    assert rand_error(merged / 255.0, gt).best == pytest.approx(1 - 2 * tp / (p_pred + p_true))


def test_seg_and_ap_accept_any_label_values():
    ref = np.array([[0, 7, 7, 2**40, 2**40]], np.int64)
    res = np.array([[9, 9, 9, 0, 3]], np.uint64)
    # 7 in 9: J = 2/3; 2**40 has half (not more) in 3: 0; but its IoU 1/2 counts for AP
    assert seg_score(res, ref) == pytest.approx((2 / 3 + 0) / 2)
    assert average_precision(res, ref, iou_thresholds=[0.5]) == {0.5: 1.0}
    with pytest.raises(ValueError, match="negative"):
        seg_score(-res.astype(np.int64), ref)
