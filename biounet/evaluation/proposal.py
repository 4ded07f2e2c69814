"""Predictions and ground truth as the ISBI 2012 metrics see them.

A *proposal* is what a segmentation method hands in: either a probability map
in [0, 1] in which **larger means cell** (the ISBI convention; a
membrane-probability map must be inverted first), scored at a sweep of
thresholds, or an integer label image, scored as it is (label 0 = boundary).
The ground truth is binarised with ``> 0`` (so 0/1 and 0/255 masks score the
same) and split into 4-connected cells.

The threshold sweeps reproduce the Java loop ``for (th = 0.0; th <= 1.0;
th += 0.1)`` of Fiji's Trainable Segmentation metrics, including its
accumulated rounding: the last of the 11 levels is ``0.9999999999999999``, so
a probability of exactly 1.0 still counts as cell there.

References
----------
.. [1] I. Arganda-Carreras et al., "Crowdsourcing the creation of image
       segmentation algorithms for connectomics", Front. Neuroanat. 9:142, 2015.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: 4-connectivity structuring element (cells are 4-connected).
FOUR = ndi.generate_binary_structure(2, 1)


def java_steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    """Thresholds of the loop ``for (th = start; th <= stop; th += step)``.

    Examples
    --------
    >>> len(java_steps(0.0, 1.0, 0.1)), java_steps(0.0, 1.0, 0.1)[-1]
    (11, 0.9999999999999999)
    >>> len(java_steps(0.0, 0.9, 0.1))
    10
    """
    out = []
    th = start
    while th <= stop:
        out.append(th)
        th += step
    return tuple(out)


#: Rand, pixel-error and V-score sweep: 0.0, 0.1, ..., 1.0 (11 levels).
THRESHOLDS = java_steps(0.0, 1.0, 0.1)
#: Warping-error sweep: 0.0, 0.1, ..., 0.9 (10 levels).
WARPING_THRESHOLDS = java_steps(0.0, 0.9, 0.1)


def as_stack(image: np.ndarray, name: str = "image") -> np.ndarray:
    """View a (M, N) image as a one-slice (1, M, N) stack; pass (P, M, N) through.

    Raises
    ------
    ValueError
        If `image` is not 2-D or 3-D.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image[np.newaxis]
    if image.ndim != 3:
        raise ValueError(f"{name}: expected shape (M, N) or (P, M, N), got {image.shape}")
    return image


def label_cells(mask: np.ndarray) -> np.ndarray:
    """Number the 4-connected components of a 2-D mask (0 = background).

    Examples
    --------
    >>> label_cells(np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1]])).tolist()
    [[1, 0, 2], [1, 0, 0], [0, 3, 3]]
    """
    return ndi.label(mask, structure=FOUR)[0]


def binary_ground_truth(ground_truth: np.ndarray) -> np.ndarray:
    """The cell mask ``ground_truth > 0`` as a (P, M, N) bool stack.

    Raises
    ------
    ValueError
        If `ground_truth` has negative or non-finite values.
    """
    gt = as_stack(ground_truth, "ground truth")
    if gt.dtype.kind == "f" and not np.isfinite(gt).all():
        raise ValueError("ground truth: has NaN or infinite values")
    if gt.dtype.kind in "if" and gt.size and gt.min() < 0:
        raise ValueError("ground truth: has negative values")
    return gt > 0


def instance_ground_truth(ground_truth: np.ndarray) -> np.ndarray:
    """Reference objects per slice: labels as they are, or cells of a binary mask.

    A ground truth with at most one non-zero value is a binary mask and its
    4-connected components become the objects; otherwise the non-zero labels
    are the objects.
    """
    mask = binary_ground_truth(ground_truth)
    gt = as_stack(ground_truth)
    if gt.dtype.kind == "f" and not np.array_equal(gt, np.round(gt)):
        raise ValueError("ground truth: instance labels must be integers")
    if np.unique(gt[mask]).size <= 1:
        return np.stack([label_cells(m) for m in mask])
    return gt.astype(np.int64)


@dataclass(frozen=True)
class Proposal:
    """A prediction stack and how it is scored.

    Attributes
    ----------
    data : ndarray of shape (P, M, N)
        float64 probabilities in [0, 1] (high = cell) when `kind` is
        ``"probabilities"``; int64 labels (0 = boundary) when ``"labels"``.
    kind : {"probabilities", "labels"}
    """

    data: np.ndarray
    kind: str

    @classmethod
    def from_array(cls, prediction: np.ndarray, *, kind: str = "auto") -> Proposal:
        """Interpret `prediction` as a probability map or a label image.

        Parameters
        ----------
        prediction : ndarray of shape (M, N) or (P, M, N)
        kind : {"auto", "probabilities", "labels"}
            ``auto``: float dtype = probability map, integer or bool =
            labels. ``probabilities`` with an integer dtype divides by the
            dtype's maximum (uint8 255 -> 1.0).

        Notes
        -----
        Labels with a single non-zero value (and bool masks) are binary masks:
        their 4-connected components become the segments, as for a
        thresholded probability map.

        Raises
        ------
        ValueError
            If probabilities are outside [0, 1] or not finite, or labels are
            negative or not integers.

        Examples
        --------
        >>> Proposal.from_array(np.array([[0.2, 0.9]])).kind
        'probabilities'
        >>> Proposal.from_array(np.array([[255, 0, 255]], np.uint8)).data.tolist()
        [[[1, 0, 2]]]
        """
        arr = as_stack(prediction, "prediction")
        if kind == "probability":  # the name before 0.2, same as biounet predict's output kind
            kind = "probabilities"
        if kind == "auto":
            kind = "probabilities" if arr.dtype.kind == "f" else "labels"
        if kind == "probabilities":
            if arr.dtype.kind in "iu":
                arr = arr / float(np.iinfo(arr.dtype).max)
            data = arr.astype(np.float64)
            if not np.isfinite(data).all():
                raise ValueError("prediction: probability map has NaN or infinite values")
            if data.size and (data.min() < 0 or data.max() > 1):
                raise ValueError(
                    f"prediction: probability values outside [0, 1] "
                    f"(min {data.min():.4g}, max {data.max():.4g})"
                )
            return cls(data, "probabilities")
        if kind != "labels":
            raise ValueError(f"kind: expected auto, probabilities or labels, got {kind!r}")
        if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise ValueError("prediction: label image has non-integer values")
        if arr.size and arr.min() < 0:
            raise ValueError("prediction: label image has negative values")
        if arr.dtype == bool or np.unique(arr[arr > 0]).size <= 1:
            return cls(np.stack([label_cells(s > 0) for s in arr]).astype(np.int64), "labels")
        return cls(arr.astype(np.int64), "labels")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(P, M, N)."""
        return self.data.shape

    def levels(self, thresholds: tuple[float, ...]) -> tuple[float | None, ...]:
        """The thresholds to sweep, or ``(None,)`` for a label image."""
        return tuple(thresholds) if self.kind == "probabilities" else (None,)

    def foreground(self, z: int, level: float | None) -> np.ndarray:
        """Cell mask of slice `z`: ``p > level`` or ``labels > 0``; (M, N) bool."""
        if level is None:
            return self.data[z] > 0
        return self.data[z] > level

    def segments(self, z: int, level: float | None) -> np.ndarray:
        """Segments of slice `z` (0 = boundary): 4-connected cells or the labels."""
        if level is None:
            return self.data[z]
        return label_cells(self.data[z] > level)

    def priority(self, z: int, level: float | None) -> np.ndarray | None:
        """``|p - level|`` of slice `z` (the warping visit order), None for labels."""
        if level is None:
            return None
        return np.abs(self.data[z] - level)
