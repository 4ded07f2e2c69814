"""Grey-value normalisation: the scaling a model was trained with.

The paper does not state an input normalisation; the authors' release feeds
images scaled to [0, 1] (PAPER.md ambiguity 11). The chosen scaling is part
of the model: it is stored in every checkpoint and applied, unchanged, when
the model predicts. It is a fixed affine map per image (never per tile), so
that tiled prediction equals whole-image prediction.

Scaling by the dtype's range suits images that fill it. A low-contrast image
(the Cell Tracking Challenge's DIC HeLa frames: uint8, mean 118, standard
deviation 11) then enters the network as a constant 0.46 with ripples of
0.04, and almost every ReLU of the first layer is on everywhere or off
everywhere on it: the network starts out nearly linear in the image, and
training stalls on the trivial answer (docs/results.md). ``fit`` instead
scales by the training images' own mean and standard deviation
(:func:`fit_normalization`); the fitted map is stored as ``fixed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["dtype", "fixed", "fit"]


@dataclass(frozen=True)
class Normalization:
    """An affine grey-value map ``(x - low) / (high - low)``.

    Parameters
    ----------
    mode : {'dtype', 'fixed', 'fit'}
        ``dtype``: ``low = 0`` and ``high`` = the maximum of the input's
        integer dtype (255 for uint8, 65535 for uint16); float input is
        taken as already scaled. ``fixed``: use `low` and `high` as given.
        ``fit`` (a training setting): ``low`` = the mean and ``high`` = the
        mean plus one standard deviation of the training images, fitted by
        :func:`fit_normalization` before the first step and stored as
        ``fixed``; it cannot scale anything before it is fitted.
    low, high : float
        Grey values mapped to 0 and 1 in ``fixed`` mode.
    """

    mode: Mode = "dtype"
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("dtype", "fixed", "fit"):
            raise ValueError(
                f"Normalization.mode must be 'dtype', 'fixed' or 'fit', got {self.mode!r}"
            )
        if not self.high > self.low:
            raise ValueError(
                f"Normalization needs high > low, got low={self.low}, high={self.high}"
            )

    def bounds(self, dtype: np.dtype | type) -> tuple[float, float]:
        """The (low, high) grey values for input of `dtype`."""
        dtype = np.dtype(dtype)
        if self.mode == "fit":
            raise ValueError("a 'fit' normalisation must be fitted to the training images first")
        if self.mode == "fixed":
            return self.low, self.high
        if dtype == np.bool_:
            return 0.0, 1.0
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return 0.0, float(info.max)
        return 0.0, 1.0


def normalize(image: np.ndarray, norm: Normalization, *, dtype: type = np.float32) -> np.ndarray:
    """Scale `image` with `norm`.

    Parameters
    ----------
    image : ndarray of any shape, integer, bool or float
    norm : Normalization
    dtype : float dtype of the result

    Returns
    -------
    ndarray of the same shape, `dtype`

    Examples
    --------
    >>> normalize(np.array([0, 51, 255], np.uint8), Normalization()).round(3)
    array([0. , 0.2, 1. ], dtype=float32)
    """
    low, high = norm.bounds(image.dtype)
    out = np.asarray(image, dtype=dtype)
    return (out - dtype(low)) / dtype(high - low)


def fit_normalization(images: list[np.ndarray], norm: Normalization) -> Normalization:
    """The ``fixed`` map that a ``fit`` normalisation becomes on `images`; others unchanged.

    Parameters
    ----------
    images : list of ndarray of any shape
        The training images as stored; their pixels are pooled.
    norm : Normalization

    Returns
    -------
    Normalization
        For ``fit``: ``fixed`` with ``low`` = the mean and ``high`` = the mean
        plus the standard deviation of all pixels (float64), so that the
        images are scaled to mean 0 and standard deviation 1.

    Raises
    ------
    ValueError
        If the images are constant (no standard deviation to scale by).

    Examples
    --------
    >>> fit_normalization([np.array([1, 3], np.uint8), np.array([1, 3], np.uint8)],
    ...                   Normalization("fit"))
    Normalization(mode='fixed', low=2.0, high=3.0)
    """
    if norm.mode != "fit":
        return norm
    count = sum(int(np.asarray(x).size) for x in images)
    mean = sum(float(np.asarray(x, np.float64).sum()) for x in images) / count
    var = sum(float(((np.asarray(x, np.float64) - mean) ** 2).sum()) for x in images) / count
    if not var > 0:
        raise ValueError("the training images are constant: nothing to fit a normalisation to")
    return Normalization("fixed", mean, mean + float(np.sqrt(var)))
