"""pipelines/isbi2012/held_out.py: each slice scored at a threshold chosen on the others."""

from pathlib import Path

import numpy as np
import pytest

from biounet.evaluation.isbi import evaluate_isbi

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def held_out(script):
    return script("pipelines/isbi2012/held_out.py")


def slices(seed):
    """Three 48 px slices of two cells and a membrane, with noisy probabilities."""
    rng = np.random.default_rng(seed)
    truth = np.full((3, 48, 48), 255, np.uint8)
    truth[:, :, 23:25] = 0  # a vertical membrane
    truth[:, 30:32, :] = 0  # and a horizontal one
    prob = np.clip(truth / 255 * 0.6 + 0.2 + rng.normal(0, 0.12, truth.shape), 0, 1)
    return prob, truth


def test_a_slices_threshold_does_not_depend_on_its_own_errors(held_out):
    prob, truth = slices(0)
    result = held_out.held_out_table(prob, truth, [20, 21, 22])
    changed = prob.copy()
    changed[0] = np.clip(changed[0] * 0.5 + 0.4, 0, 1)  # a different slice 0
    again = held_out.held_out_table(changed, truth, [20, 21, 22])
    for key in ("rand_error", "warping_error", "pixel_error"):
        assert again[key]["thresholds"][0] == result[key]["thresholds"][0]
        # ... and each error is that slice's own error at the chosen threshold
        for z, t in enumerate(result[key]["thresholds"]):
            alone = evaluate_isbi(prob[z : z + 1], truth[z : z + 1], kind="probabilities")
            assert result[key]["per_slice"][z] == alone["per_threshold"][key][t]
        errors = result[key]["per_slice"]
        assert result[key]["mean"] == pytest.approx(np.mean(errors), rel=1e-12, abs=0)
        assert result[key]["std"] == pytest.approx(np.std(errors, ddof=1), rel=1e-12, abs=0)
    pooled = evaluate_isbi(prob, truth, kind="probabilities")
    assert result["rand_error"]["pooled_best"] == pooled["rand_error"]
