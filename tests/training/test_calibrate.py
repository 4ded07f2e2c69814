"""Calibration of the decision rule (threshold, minimum object size) on held-out images."""

import numpy as np
import pytest
import torch

from biounet.evaluation.isbi import rand_error
from biounet.network.checkpoint import save_checkpoint
from biounet.network.decision import DecisionRule
from biounet.network.unet import UNet, UNetConfig, load_model
from biounet.training.calibrate import MIN_SIZES, THRESHOLDS, calibrate, components


def two_cells():
    truth = np.zeros((40, 40), np.uint8)
    truth[2:18, 2:38] = 1
    truth[21:38, 2:38] = 1  # rows 18-20: the membrane between them
    return truth


def test_threshold_is_the_lowest_that_splits_touching_cells():
    truth = two_cells()
    prob = np.where(truth > 0, 0.8, 0.05)
    prob[18:21, 2:38] = 0.42  # a faint membrane: p > 0.4 merges the cells
    rule, scores = calibrate([prob], [truth], "binary")
    # below 0.42 the cells merge (Rand error > 0); from 0.45 on they are exact
    assert rule.threshold == 0.45 and rule.min_size == 0
    assert scores["val_rand_error"] == 0.0 and scores["val_pixel_error"] == 0.0
    assert rand_error(prob[None], truth[None], thresholds=(0.4,)).best > 0.3


def test_min_size_removes_specks_when_they_cost_rand():
    truth = two_cells()
    prob = np.where(truth > 0, 0.9, 0.02)
    rng = np.random.default_rng(0)
    for x in rng.choice(np.arange(2, 38, 2), 8, replace=False):  # 1-px false objects
        prob[19, x] = 0.95
    rule, scores = calibrate([prob], [truth], "binary")
    # the Rand error ignores them (they lie on the membrane): the same 0 with or
    # without a minimum size, but only without them is every object a true one
    assert rule.min_size == MIN_SIZES[1]  # the smallest size that removes 1-px specks
    assert scores["val_rand_error"] == 0.0 and scores["val_ap50"] == 1.0
    assert rand_error(components(prob[None], rule.threshold, 0), truth[None]).best == 0.0


def test_instance_labels_are_scored_with_seg():
    truth = two_cells().astype(np.int32)
    truth[21:38] *= 2  # instance ids 1 and 2
    prob = np.where(truth > 0, 0.7, 0.1)
    prob[18:21, 2:38] = 0.3
    rule, scores = calibrate([prob], [truth], "instance")
    assert set(scores) == {"val_seg", "val_pixel_error", "val_ap50"}
    assert scores["val_seg"] == 1.0 and rule.threshold >= 0.3
    assert rule.chosen_by == "val_seg 1.0000 on 1 image(s)"


def test_images_of_two_sizes_are_averaged():
    truth = two_cells()
    small = truth[:20, :20]
    probs = [np.where(truth > 0, 0.8, 0.1), np.where(small > 0, 0.8, 0.1)]
    rule, scores = calibrate(probs, [truth, small], "binary")
    assert scores["val_rand_error"] == 0.0 and rule.threshold == THRESHOLDS[0]


def test_components_drop_small_objects_per_plane():
    prob = np.zeros((2, 6, 6))
    prob[0, 0, 0] = prob[0, 3:6, 3:6] = prob[1, 0:2, 0:2] = 1.0
    labels = components(prob, 0.5, min_size=4)
    assert labels[0, 0, 0] == 0 and (labels[0, 3:, 3:] > 0).all()
    assert np.count_nonzero(labels[0]) == 9 and np.count_nonzero(labels[1]) == 4


def test_decision_rule_travels_in_checkpoints(tmp_path):
    net = UNet(UNetConfig(features=4, depth=2), decision=DecisionRule(0.7, 64, "val_seg 0.9"))
    save_checkpoint(tmp_path / "m.pt", net)
    assert load_model(tmp_path / "m.pt").decision == DecisionRule(0.7, 64, "val_seg 0.9")
    # a checkpoint from before the decision rule existed gets the neutral one
    old = torch.load(tmp_path / "m.pt", weights_only=True)
    del old["decision"]
    torch.save(old, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").decision == DecisionRule()


@pytest.mark.parametrize(
    "bad", [dict(threshold=1.0), dict(threshold=float("nan")), dict(min_size=-1)]
)
def test_bad_decision_rules_are_refused(bad):
    with pytest.raises(ValueError, match="decision"):
        DecisionRule(**bad)


def test_the_split_is_calibrated_with_its_own_threshold():
    """Two touching cells joined by a confident bridge: components separate them only at a
    threshold that shrinks them to their cores; a watershed from the cores, at the
    threshold that traces their outlines, recovers both whole."""
    from biounet.evaluation.matching import seg_score
    from biounet.network.decision import DecisionRule
    from biounet.training.calibrate import calibrate, calibrate_split, components, split_cells

    truth = np.zeros((40, 80), np.int32)
    truth[5:35, 5:40], truth[5:35, 40:75] = 1, 2
    prob = np.where(truth > 0, 0.7, 0.02)
    prob[7:33, 7:38] = prob[7:33, 42:73] = 0.97  # the cores
    prob[12:28, 38:42] = 0.85  # a confident bridge
    rule, _ = calibrate([prob], [truth], "instance")
    assert rule.threshold >= 0.85  # not below the bridge: components see two cells, their cores
    plain = seg_score(components(prob[None], rule.threshold, rule.min_size), truth[None])
    threshold, seed, seg = calibrate_split([prob], [truth], rule)
    assert seed is not None and threshold < 0.7 < seed  # outlines traced, seeds from the cores
    assert seg == seg_score(split_cells(prob[None], threshold, rule.min_size, seed), truth[None])
    assert seg > 0.95 and seg > plain + 0.15
    # with the rule's threshold alone (as before) no seed level could split them
    only = calibrate_split([prob], [truth], rule, thresholds=())
    assert only[1] is None or only[2] < seg
    weak = DecisionRule(0.5, 0)
    assert calibrate_split([prob * 0], [truth], weak)[1] is None  # nothing to split: no seeds


def test_the_distance_split_is_chosen_where_the_probability_does_not_dip():
    """A small cell touching a large one with a confident contact (U373's failure): no seed
    level of the probability watershed separates them, the neck of their shape does."""
    from biounet.evaluation.matching import seg_score
    from biounet.training.calibrate import (
        calibrate,
        calibrate_distance_split,
        calibrate_split,
        components,
        distance_split,
    )

    yy, xx = np.mgrid[:70, :110]
    truth = np.zeros((70, 110), np.int32)
    truth[(yy - 35) ** 2 + (xx - 35) ** 2 <= 22**2] = 1
    truth[((yy - 35) ** 2 + (xx - 68) ** 2 <= 13**2) & (truth == 0)] = 2
    prob = np.where(truth > 0, 0.95, 0.05)
    rule, _ = calibrate([prob], [truth], "instance")
    plain = seg_score(components(prob[None], rule.threshold, rule.min_size), truth[None])
    assert calibrate_split([prob], [truth], rule)[1] is None  # the watershed cannot split
    threshold, split, seg = calibrate_distance_split([prob], [truth], rule)
    assert split is not None and split[0] < 7 and split[1] <= 13  # peaks 22 and 13, saddle 7
    labels = distance_split(prob[None], threshold, rule.min_size, *split)
    assert seg == seg_score(labels, truth[None])
    assert seg > 0.9 and seg > plain + 0.25
    # a single cell is left whole: no depth beats plain components
    single = np.where(truth == 1, 0.95, 0.05)
    one = np.where(truth == 1, 1, 0)
    assert calibrate_distance_split([single], [one], rule)[1] is None
