"""The loss weight map of Ronneberger et al. (2015), Eq. 2, and the training target.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

The target of one ground-truth image is its class map (0 = background,
including the separation borders between touching objects; 1 = object)
and its weight map. Both are computed once per image, before augmentation,
and then deformed together with the image (PAPER.md item 17).

Choices (see docs/weight_map.md):

* ``w_c`` (PAPER.md ambiguity 2): by default the inverse class frequency
  over the whole training set, ``w_c(k) = N / (K * N_k)``, computed on the
  class maps after separation. Its mean over all training pixels is 1 and
  every class gets the same total weight. ``"none"`` gives 1 for every
  class; explicit per-class weights are used as given.
* The border term is added to background pixels only, with the distances
  measured to the *separated* objects, i.e. to the objects as they appear
  in the target (:mod:`biounet.training.borders`).
* Instances are required (PAPER.md ambiguity 3): binary masks are turned
  into instances by :mod:`biounet.training.data` (4-connected components).
* The weight map is used on ISBI EM as well (ambiguity 4): w0 = 10, sigma = 5.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biounet.io.atomic import atomic_output
from biounet.limits import MAX_SIGMA, MAX_W0, check_number
from biounet.plain import from_plain
from biounet.training.borders import border_weight, separate_instances, separation_borders

__all__ = [
    "WeightMapConfig",
    "Target",
    "class_counts",
    "balanced_class_weights",
    "weight_map",
    "weight_maps",
    "annotated_region",
    "border_weight",
    "separate_instances",
    "separation_borders",
]

log = logging.getLogger(__name__)

#: Bump when the numbers a cached file holds would change.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class WeightMapConfig:
    """Parameters of the weight map; plain values, stored in checkpoints.

    Parameters
    ----------
    w0 : float
        Height of the border term (10 in the paper). 0 switches it off
        (``w = w_c``, the ablation of PAPER.md ambiguity 4).
    sigma : float
        Width of the border term in pixels (5 in the paper).
    class_weights : 'balanced', 'none' or tuple of float
        ``balanced``: inverse class frequency over the training set, mean 1.
        ``none``: 1 for every class. A tuple ``(w_background, w_object)``:
        used as given.
    separate : bool
        Cut 1-px background gaps between touching objects (PAPER.md item 19).
    annotated_margin : float, optional
        For partially annotated gold truth (the Cell Tracking Challenge's):
        background farther than this many pixels from every annotated object
        gets weight 0, so cells that nobody annotated are not taught as
        background. The class balance counts only the weighted pixels.
        None (the default) weights every pixel.
    """

    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | tuple[float, ...] = "balanced"
    separate: bool = True
    annotated_margin: float | None = None

    def __post_init__(self) -> None:
        check_number("WeightMapConfig.w0", self.w0, low=0, high=MAX_W0)
        check_number("WeightMapConfig.sigma", self.sigma, low=0, high=MAX_SIGMA, above=True)
        cw = self.class_weights
        if isinstance(cw, list):
            object.__setattr__(self, "class_weights", cw := tuple(cw))
        if isinstance(cw, str):
            if cw not in ("balanced", "none"):
                raise ValueError(
                    "WeightMapConfig.class_weights must be 'balanced', 'none' or "
                    f"(w_background, w_object), got {cw!r}"
                )
        elif not (
            isinstance(cw, tuple)
            and len(cw) == 2
            and all(isinstance(v, (int, float)) and 0 <= v < math.inf for v in cw)
        ):
            raise ValueError(
                "WeightMapConfig.class_weights must be two non-negative numbers "
                f"(w_background, w_object), got {cw!r}"
            )
        if not isinstance(self.separate, bool):
            raise ValueError(f"WeightMapConfig.separate must be a bool, got {self.separate!r}")
        margin = self.annotated_margin
        if margin is not None and not (
            isinstance(margin, (int, float))
            and not isinstance(margin, bool)
            and 0 < margin < math.inf
        ):
            raise ValueError(
                f"WeightMapConfig.annotated_margin must be a positive number of pixels, "
                f"got {margin!r}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WeightMapConfig:
        """Build a config from a dict (e.g. a checkpoint), rejecting unknown keys."""
        return from_plain(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists) for YAML, JSON and checkpoints."""
        out = asdict(self)
        if isinstance(self.class_weights, tuple):
            out["class_weights"] = list(self.class_weights)
        return out


@dataclass(frozen=True, eq=False)
class Target:
    """The training target of one ground-truth image.

    Attributes
    ----------
    classes : ndarray of shape (M, N), uint8
        0 = background (including separation borders), 1 = object.
    weights : ndarray of shape (M, N), float32
        The weight map ``w`` of Eq. 2.
    class_weights : tuple of float
        The ``w_c`` used, per class (background, object).
    """

    classes: np.ndarray
    weights: np.ndarray
    class_weights: tuple[float, ...]


def class_counts(class_maps: Sequence[np.ndarray], n_classes: int = 2) -> np.ndarray:
    """Pixels per class over a set of class maps.

    Examples
    --------
    >>> class_counts([np.array([[0, 1, 1]]), np.array([[1, 1]])])
    array([1, 4])
    """
    total = np.zeros(n_classes, np.int64)
    for classes in class_maps:
        total += np.bincount(np.asarray(classes).ravel(), minlength=n_classes)[:n_classes]
    return total


def balanced_class_weights(counts: Sequence[int]) -> tuple[float, ...]:
    """Inverse class frequency ``N / (K * N_k)``: mean 1 over the pixels.

    Classes without pixels get weight 0 and ``K`` counts only the present
    classes, so the pixel mean stays 1.

    Examples
    --------
    >>> balanced_class_weights([25, 75])
    (2.0, 0.6666666666666666)
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("no pixels to balance the classes over")
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return tuple(float(w) for w in weights)


def _classes_and_border(
    instances: np.ndarray, config: WeightMapConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Class map (uint8) and border term (float32) of one instance image."""
    labels = np.asarray(instances)
    if labels.ndim != 2:
        raise ValueError(f"instances must be 2-D, got shape {labels.shape}")
    objects = separate_instances(labels) if config.separate else labels.astype(np.int32)
    classes = (objects > 0).astype(np.uint8)
    if config.w0 > 0:
        border = border_weight(objects, w0=config.w0, sigma=config.sigma).astype(np.float32)
    else:
        border = np.zeros(labels.shape, np.float32)
    return classes, border


def _cache_key(instances: np.ndarray, config: WeightMapConfig) -> str:
    labels = np.ascontiguousarray(instances, dtype=np.int32)
    digest = hashlib.sha256()
    digest.update(f"v{_CACHE_VERSION}:{labels.shape}:{config.w0!r}:{config.sigma!r}:".encode())
    digest.update(f"{config.separate}:".encode())
    digest.update(labels.tobytes())
    return digest.hexdigest()[:32]


def _cached_classes_and_border(
    instances: np.ndarray, config: WeightMapConfig, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    if cache_dir is None:
        return _classes_and_border(instances, config)
    path = cache_dir / f"weights-{_cache_key(instances, config)}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                classes, border = data["classes"], data["border"]
            if classes.shape == np.shape(instances) and border.shape == classes.shape:
                return classes, border
        except (OSError, ValueError, KeyError) as exc:  # a damaged file: recompute
            log.debug("%s: ignoring unreadable cache file (%s)", path, exc)
    classes, border = _classes_and_border(instances, config)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, classes=classes, border=border)
    return classes, border


def _combine(
    classes: np.ndarray,
    border: np.ndarray,
    class_weights: tuple[float, ...],
    known: np.ndarray | None = None,
) -> Target:
    lookup = np.asarray(class_weights, np.float32)
    weights = lookup[classes] + border
    if known is not None:
        weights = np.where(known, weights, np.float32(0))
    return Target(classes, weights, tuple(class_weights))


def annotated_region(classes: np.ndarray, margin: float) -> np.ndarray:
    """Pixels within `margin` px of an annotated object (the objects included).

    Examples
    --------
    >>> classes = np.zeros((1, 7), np.uint8); classes[0, 0] = 1
    >>> annotated_region(classes, 2).astype(int).tolist()
    [[1, 1, 1, 0, 0, 0, 0]]
    """
    from scipy import ndimage as ndi

    if not classes.any():
        return np.zeros(classes.shape, bool)
    return ndi.distance_transform_edt(classes == 0) <= margin


def weight_map(
    instances: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: tuple[float, ...] = (1.0, 1.0),
    separate: bool = True,
) -> Target:
    """Training target and weight map (Eq. 2) of one instance image.

    Parameters
    ----------
    instances : ndarray of shape (M, N), int
        0 = background, 1..K objects (gaps in ids allowed).
    w0, sigma : float
        Height and width (px) of the border term.
    class_weights : tuple of float
        ``w_c`` per class (background, object). For the training-set
        balance use :func:`weight_maps`.
    separate : bool
        Cut 1-px gaps between touching objects first.

    Returns
    -------
    Target
        ``classes`` (M, N) uint8 and ``weights`` (M, N) float32.

    Examples
    --------
    Two squares 3 px apart: the gap centre has d1 = d2 = 2, so its weight is
    ``w_c(bg) + 10 * exp(-16 / 50)``.

    >>> import math
    >>> labels = np.zeros((9, 13), int)
    >>> labels[2:7, 1:5] = 1; labels[2:7, 8:12] = 2
    >>> t = weight_map(labels, class_weights=(0.5, 2.0))
    >>> round(float(t.weights[4, 6]), 4), round(0.5 + 10 * math.exp(-16 / 50), 4)
    (7.7615, 7.7615)
    >>> float(t.weights[4, 2]), int(t.classes[4, 2])
    (2.0, 1)
    """
    config = WeightMapConfig(
        w0=w0, sigma=sigma, class_weights=tuple(class_weights), separate=separate
    )
    classes, border = _classes_and_border(instances, config)
    return _combine(classes, border, config.class_weights)


def weight_maps(
    instance_images: Sequence[np.ndarray],
    config: WeightMapConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> list[Target]:
    """Targets and weight maps of a training set, class balance over the whole set.

    Parameters
    ----------
    instance_images : sequence of ndarray of shape (M_i, N_i), int
        One instance image per training image (0 = background).
    config : WeightMapConfig, optional
        Defaults: w0 = 10, sigma = 5, balanced classes, separation on.
    cache_dir : path, optional
        Keep the per-image class map and border term in this folder, keyed
        by a hash of the labels and the parameters, so that the next run
        loads them instead of recomputing. Files are written atomically.

    Returns
    -------
    list of Target
        In the order of `instance_images`. Keep the list: it is the
        in-memory cache that augmentation samples from.

    Examples
    --------
    >>> a = np.zeros((4, 4), int); a[:2] = 1
    >>> b = np.zeros((4, 4), int); b[0, 0] = 3
    >>> ts = weight_maps([a, b])
    >>> ts[0].class_weights  # 23 background and 9 object pixels in all
    (0.6956521739130435, 1.7777777777777777)
    >>> round(sum(float(t.weights[t.classes == 0].sum()) for t in ts), 4)  # N / K
    16.0
    """
    config = WeightMapConfig() if config is None else config
    folder = None if cache_dir is None else Path(cache_dir)
    parts = [_cached_classes_and_border(inst, config, folder) for inst in instance_images]
    known: list[np.ndarray | None] = [None] * len(parts)
    if config.annotated_margin is not None:
        known = [annotated_region(c, config.annotated_margin) for c, _ in parts]
    if config.class_weights == "balanced":
        counted = [c if k is None else c[k] for (c, _), k in zip(parts, known, strict=True)]
        class_weights = balanced_class_weights(class_counts(counted))
    elif config.class_weights == "none":
        class_weights = (1.0, 1.0)
    else:
        class_weights = tuple(float(v) for v in config.class_weights)
    return [
        _combine(classes, border, class_weights, k)
        for (classes, border), k in zip(parts, known, strict=True)
    ]
