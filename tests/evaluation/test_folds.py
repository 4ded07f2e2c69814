"""Folds: contiguous blocks, and thresholds chosen on the other blocks only."""

import pytest

from biounet.evaluation.folds import chosen_elsewhere, fold_blocks


@pytest.mark.parametrize("count", range(2, 25))
def test_fold_blocks_partition_the_items_into_contiguous_blocks(count):
    for folds in range(2, count + 1):
        blocks = fold_blocks(count, folds)
        assert len(blocks) == folds
        assert sorted(i for b in blocks for i in b) == list(range(count))  # each item once
        assert all(b == list(range(b[0], b[-1] + 1)) for b in blocks)  # consecutive items
        sizes = [len(b) for b in blocks]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.mark.parametrize("folds", [1, 5])
def test_impossible_folds_are_refused(folds):
    with pytest.raises(ValueError, match=f"--folds {folds}: need 2 to 4"):
        fold_blocks(4, folds)


def test_a_parts_threshold_ignores_its_own_errors():
    parts = [
        {"per_threshold": {"e": {"0.2": 0.5, "0.4": 0.1, "0.6": 0.3}}},
        {"per_threshold": {"e": {"0.2": 0.2, "0.4": 0.3, "0.6": 0.1}}},
        {"per_threshold": {"e": {"0.2": 0.1, "0.4": 0.2, "0.6": 0.2}}},
    ]
    errors, chosen = chosen_elsewhere(parts, "e")
    # part 0: mean of parts 1, 2 per threshold 0.15, 0.25, 0.15 -> tie, the lower: 0.2
    # part 1: parts 0, 2: 0.3, 0.15, 0.25 -> 0.4; part 2: parts 0, 1: 0.35, 0.2, 0.2 -> 0.4
    assert chosen == ["0.2", "0.4", "0.4"]
    assert errors == [0.5, 0.3, 0.2]
    parts[0]["per_threshold"]["e"]["0.2"] = 9.0  # its own errors do not move its choice
    assert chosen_elsewhere(parts, "e")[1][0] == "0.2"
