"""Grey-value normalisation: the scaling a model was trained with.

The paper does not state an input normalisation; the authors' release feeds
images scaled to [0, 1] (PAPER.md ambiguity 11). The chosen scaling is part
of the model: it is stored in every checkpoint and applied, unchanged, when
the model predicts. It is a fixed affine map per image (never per tile), so
that tiled prediction equals whole-image prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["dtype", "fixed"]


@dataclass(frozen=True)
class Normalization:
    """An affine grey-value map ``(x - low) / (high - low)``.

    Parameters
    ----------
    mode : {'dtype', 'fixed'}
        ``dtype``: ``low = 0`` and ``high`` = the maximum of the input's
        integer dtype (255 for uint8, 65535 for uint16); float input is
        taken as already scaled. ``fixed``: use `low` and `high` as given.
    low, high : float
        Grey values mapped to 0 and 1 in ``fixed`` mode.
    """

    mode: Mode = "dtype"
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("dtype", "fixed"):
            raise ValueError(f"Normalization.mode must be 'dtype' or 'fixed', got {self.mode!r}")
        if not self.high > self.low:
            raise ValueError(
                f"Normalization needs high > low, got low={self.low}, high={self.high}"
            )

    def bounds(self, dtype: np.dtype | type) -> tuple[float, float]:
        """The (low, high) grey values for input of `dtype`."""
        dtype = np.dtype(dtype)
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
