"""Leave-blocks-out folds: contiguous blocks held out, and choices made on the other blocks.

Neighbouring slices of a volume and frames of a time-lapse are alike, so a
fold holds out a block of consecutive ones (:func:`fold_blocks`). What is
chosen for a block (a threshold, say) is chosen on the other blocks only
(:func:`chosen_elsewhere`), so that no slice is both chosen on and scored:
the spread over the blocks is then what a new slice can expect.
"""

from __future__ import annotations

import numpy as np


def fold_blocks(count: int, folds: int) -> list[list[int]]:
    """Indices ``0 .. count-1`` cut into `folds` contiguous blocks of (nearly) equal size.

    Larger blocks come first.

    Raises
    ------
    ValueError
        Fewer than 2 folds, or more folds than items.

    Examples
    --------
    >>> fold_blocks(9, 3), fold_blocks(10, 3)
    ([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]])
    """
    if not 2 <= folds <= count:
        raise ValueError(f"--folds {folds}: need 2 to {count} (the annotated images)")
    edges = np.linspace(0, count, folds + 1).round().astype(int)
    sizes = np.sort(np.diff(edges))[::-1]  # larger blocks first: 4, 3, 3 for 10 frames
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return [list(range(a, b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]


def chosen_elsewhere(per_part: list[dict], key: str) -> tuple[list[float], list[str]]:
    """Each part's error at the threshold that is best on the other parts.

    Parameters
    ----------
    per_part : list of dict
        :func:`biounet.evaluation.isbi.evaluate_isbi` of each part (a slice, or
        a fold's block of slices) alone: its ``per_threshold`` errors.
    key : str
        ``rand_error``, ``warping_error`` or ``pixel_error``.

    Returns
    -------
    errors, thresholds : list of float, list of str
        Per part, its error and the threshold that minimises the mean error of
        the other parts (ties: the lowest threshold).

    Examples
    --------
    >>> a = {"per_threshold": {"e": {"0.3": 0.1, "0.5": 0.3}}}
    >>> b = {"per_threshold": {"e": {"0.3": 0.4, "0.5": 0.2}}}
    >>> c = {"per_threshold": {"e": {"0.3": 0.2, "0.5": 0.1}}}
    >>> chosen_elsewhere([a, b, c], "e")  # a: 0.5 best on b, c; b: 0.3 on a, c; c: a tie, 0.3
    ([0.3, 0.4, 0.2], ['0.5', '0.3', '0.3'])
    """
    errors, chosen = [], []
    for i, scores in enumerate(per_part):
        others = [s["per_threshold"][key] for j, s in enumerate(per_part) if j != i]
        levels = sorted(others[0], key=float)
        mean = {t: float(np.mean([o[t] for o in others])) for t in levels}
        best = min(levels, key=lambda t: (mean[t], float(t)))
        errors.append(float(scores["per_threshold"][key][best]))
        chosen.append(best)
    return errors, chosen
