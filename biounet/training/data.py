"""Labelled training data: image/label pairs, read and checked before training starts.

Three layouts are understood (:func:`load_pairs`):

1. Two multi-page TIFF stacks, plane ``i`` of the labels annotating plane
   ``i`` of the images (the ISBI 2012 layout: ``train-volume.tif`` with
   ``train-labels.tif``). Two single 2-D images form one pair.
2. Two folders of 2-D TIFF or PNG files matched by name: ``a.tif`` with
   ``a.tif`` or ``a.png``; a label may carry a suffix ``_mask``, ``_label``,
   ``_labels``, ``_seg`` or ``_gt`` (``a_mask.png``).
3. The Cell Tracking Challenge layout: ``01/tNNN.tif`` with
   ``01_GT/SEG/man_segNNN.tif``. Only the annotated frames are used. The
   label folder may be left out: ``01_GT/SEG`` beside ``01`` is found.

Two kinds of labels (PAPER.md ambiguity 3: the weight map needs instances):

``binary``
    A mask with at most two grey values. ``foreground="high"`` makes the
    higher value the objects (ISBI: 255 = cell, 0 = membrane); ``"low"``
    the lower one. Objects are the 4-connected components of the
    foreground (``skimage.measure.label(..., connectivity=1)``).
``instance``
    0 = background, 1..N objects; gaps in the ids are allowed.

Every problem is reported before any training can start, as a
:class:`~biounet.errors.BiounetError` with one line naming the file: files
that are missing or not readable images, image/label shape or count
mismatches, names without a partner, label images without objects, and
binary masks with more than two values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from biounet.errors import BiounetError
from biounet.io.read import ARRAY_SUFFIXES, detect_label_kind, read_array, require_finite

__all__ = ["Sample", "load_pairs", "load_labels", "to_instances"]

LabelKind = Literal["auto", "binary", "instance"]
Foreground = Literal["high", "low"]

IMAGE_SUFFIXES = ARRAY_SUFFIXES
_LABEL_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt")
_CTC_IMAGE = re.compile(r"^t(\d+)$")
_CTC_LABEL = re.compile(r"^man_seg_?(\d+)$")


@dataclass(frozen=True, eq=False)
class Sample:
    """One training image and its objects.

    Attributes
    ----------
    image : ndarray of shape (C, M, N)
        The image as stored (dtype kept; scale it with
        :func:`biounet.network.normalize.normalize`), channels first; C = 1 for
        grey-value images.
    instances : ndarray of shape (M, N), int32
        0 = background, 1..K objects.
    name : str
        Where it came from: ``"a.tif"`` or ``"train-volume.tif[3]"``.
    """

    image: np.ndarray
    instances: np.ndarray
    name: str


def to_instances(
    labels: np.ndarray,
    *,
    label_kind: LabelKind = "auto",
    foreground: Foreground = "high",
    name: str = "labels",
) -> np.ndarray:
    """Turn one 2-D label image into instances (0 = background, 1..K objects).

    Parameters
    ----------
    labels : ndarray of shape (M, N)
        A binary mask or an instance label image.
    label_kind : {'auto', 'binary', 'instance'}
        ``auto``: instances if there are more than two values (see
        :func:`biounet.io.read.detect_label_kind`).
    foreground : {'high', 'low'}
        For binary masks: which of the two values are the objects.
    name : str
        Used in error messages.

    Returns
    -------
    ndarray of shape (M, N), int32

    Raises
    ------
    BiounetError
        If there are no objects, a binary mask has more than two values, or
        instance ids are not non-negative integers.

    Examples
    --------
    >>> to_instances(np.array([[255, 0, 255], [255, 0, 0]], np.uint8))
    array([[1, 0, 2],
           [1, 0, 0]], dtype=int32)
    >>> to_instances(np.array([[0, 7], [7, 0]]), label_kind="instance")
    array([[0, 7],
           [7, 0]], dtype=int32)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise BiounetError(f"{name}: labels must be one 2-D plane, got shape {labels.shape}")
    if label_kind == "auto":
        label_kind = detect_label_kind(labels)
    if label_kind == "binary":
        values = np.unique(labels)
        if values.size > 2:
            shown = ", ".join(str(v) for v in values[:4]) + (", ..." if values.size > 4 else "")
            raise BiounetError(
                f"{name}: a binary mask has at most 2 values, found {values.size} ({shown}); "
                "use label kind 'instance' for instance labels"
            )
        if foreground == "high":
            mask = labels == values[-1] if values.size == 2 else labels != 0
        elif foreground == "low":
            mask = labels == values[0] if values.size == 2 else labels == 0
        else:
            raise BiounetError(f"foreground must be 'high' or 'low', got {foreground!r}")
        if not mask.any():
            raise BiounetError(f"{name}: label image has no foreground (no objects)")
        from skimage.measure import label

        return label(mask, connectivity=1).astype(np.int32)
    if label_kind == "instance":
        if labels.dtype == np.bool_:
            labels = labels.astype(np.uint8)
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise BiounetError(f"{name}: instance labels must be integers")
        if labels.min() < 0:
            raise BiounetError(f"{name}: instance labels must be >= 0, found {labels.min()}")
        if labels.max() >= 2**31:
            raise BiounetError(f"{name}: instance ids must be below 2**31")
        if not labels.any():
            raise BiounetError(f"{name}: label image has no objects (all 0)")
        return labels.astype(np.int32)
    raise BiounetError(f"label kind must be one of auto, binary, instance, got {label_kind!r}")


def _channels_first(image: np.ndarray, plane: tuple[int, int], name: str, label: str) -> np.ndarray:
    """Image of one plane as (C, M, N); `plane` is the label's (M, N)."""
    if image.ndim == 2 and image.shape == plane:
        return image[None]
    if image.ndim == 3 and image.shape[1:] == plane:
        return image
    if image.ndim == 3 and image.shape[:2] == plane and image.shape[2] <= 4:  # RGB(A)
        return np.moveaxis(image, 2, 0)
    size = "x".join(str(s) for s in plane)
    raise BiounetError(f"{name}: image of shape {image.shape} does not match {label} ({size})")


def _planes(array: np.ndarray, name: str) -> list[np.ndarray]:
    if array.ndim == 2:
        return [array]
    if array.ndim == 3:
        return list(array)
    raise BiounetError(f"{name}: labels must be 2-D or a stack of 2-D planes, got {array.shape}")


def _image_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise BiounetError(f"{folder}: no TIFF or PNG images in this folder")
    return files


def _key(path: Path, is_label: bool, ctc: bool) -> str:
    stem = path.name[: -len(path.suffix)]
    if ctc:
        match = (_CTC_LABEL if is_label else _CTC_IMAGE).match(stem)
        return str(int(match.group(1))) if match else stem
    if is_label:
        for suffix in _LABEL_SUFFIXES:
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                return stem[: -len(suffix)]
    return stem


def _by_key(files: list[Path], is_label: bool, ctc: bool) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in files:
        key = _key(path, is_label, ctc)
        if key in out:
            raise BiounetError(f"{path}: same name as {out[key].name}; keep one of them")
        out[key] = path
    return out


def _folder_pairs(images: Path, labels: Path) -> list[tuple[Path, Path]]:
    image_files, label_files = _image_files(images), _image_files(labels)
    ctc = all(_CTC_LABEL.match(p.name[: -len(p.suffix)]) for p in label_files)
    by_image = _by_key(image_files, False, ctc)
    by_label = _by_key(label_files, True, ctc)
    for key, path in by_label.items():
        if key not in by_image:
            raise BiounetError(f"{path}: no image with a matching name in {images}")
    if not ctc:  # in the CTC layout only some frames are annotated
        for key, path in by_image.items():
            if key not in by_label:
                raise BiounetError(f"{path}: no label image with a matching name in {labels}")
    keys = sorted(by_label, key=lambda k: (int(k) if k.isdigit() else -1, k))
    return [(by_image[k], by_label[k]) for k in keys]


def _resolve(images: str | Path, labels: str | Path | None) -> tuple[Path, Path]:
    images = Path(images)
    if not images.exists():
        raise BiounetError(f"{images}: no such file or folder")
    if labels is None:
        guess = images.with_name(images.name + "_GT") / "SEG"
        if not (images.is_dir() and guess.is_dir()):
            raise BiounetError(
                f"{images}: no labels given and no Cell Tracking Challenge folder {guess}"
            )
        return images, guess
    labels = Path(labels)
    if not labels.exists():
        raise BiounetError(f"{labels}: no such file or folder")
    if images.is_dir() != labels.is_dir():
        raise BiounetError(
            f"{images} and {labels}: give two files (stacks or single images) or two folders"
        )
    return images, labels


def _pairs(
    images: Path, labels: Path, label_kind: LabelKind
) -> Iterator[tuple[np.ndarray, np.ndarray, str, str, str]]:
    """Yield (image plane, label plane, image name, label name, kind); values unchecked.

    The kind (binary or instance) is decided once per label file.
    """
    if images.is_dir():
        for image_path, label_path in _folder_pairs(images, labels):
            label = read_array(label_path)
            if label.ndim != 2:
                raise BiounetError(
                    f"{label_path}: a label image must be one 2-D plane, got shape {label.shape}"
                )
            kind = detect_label_kind(label, label_path, label_kind)
            image = require_finite(read_array(image_path), str(image_path))
            yield image, label, image_path.name, str(label_path), kind
        return
    image_stack, label_stack = read_array(images), read_array(labels)
    require_finite(image_stack, str(images))
    label_planes = _planes(label_stack, str(labels))
    kind = detect_label_kind(label_stack, labels, label_kind)
    if len(label_planes) == 1:
        plane = label_planes[0].shape
        if image_stack.ndim == 3 and image_stack.shape[1:] == plane and image_stack.shape[0] > 4:
            raise BiounetError(f"{images}: {image_stack.shape[0]} images but {labels} has 1 label")
        yield image_stack, label_planes[0], images.name, str(labels), kind
        return
    plane = label_planes[0].shape
    if image_stack.ndim == 3 and image_stack.shape[1:] == plane:
        image_planes = list(image_stack)
    elif image_stack.ndim == 4 and (
        image_stack.shape[2:] == plane or image_stack.shape[1:3] == plane
    ):
        image_planes = list(image_stack)
    else:
        raise BiounetError(
            f"{images}: image stack of shape {image_stack.shape} does not match "
            f"{labels} of shape {label_stack.shape}"
        )
    if len(image_planes) != len(label_planes):
        raise BiounetError(
            f"{images}: {len(image_planes)} images but {labels} has {len(label_planes)} labels"
        )
    for z, (img, lab) in enumerate(zip(image_planes, label_planes, strict=True)):
        yield img, lab, f"{images.name}[{z}]", f"{labels}[{z}]", kind


def load_pairs(
    images: str | Path,
    labels: str | Path | None = None,
    *,
    label_kind: LabelKind = "auto",
    foreground: Foreground = "high",
) -> list[Sample]:
    """Read and check all image/label pairs of a training set.

    Parameters
    ----------
    images : path
        A TIFF stack, a single image, or a folder of images.
    labels : path, optional
        The matching labels: a stack, a single image or a folder. Leave out
        for the Cell Tracking Challenge layout (``01`` -> ``01_GT/SEG``).
    label_kind : {'auto', 'binary', 'instance'}
        ``binary``: masks, objects = 4-connected foreground components.
        ``instance``: 0 = background, 1..N objects. ``auto``: per label
        file, the kind its metadata states, else instances if it has more
        than two values (:func:`biounet.io.read.detect_label_kind`).
    foreground : {'high', 'low'}
        For binary masks: whether the higher (ISBI: 255 = cell) or the lower
        value marks the objects.

    Returns
    -------
    list of Sample
        In stack order, or sorted by name (CTC: by frame number).

    Raises
    ------
    BiounetError
        One line naming the file and the problem; nothing is returned
        unless every pair is valid.
    """
    if label_kind not in ("auto", "binary", "instance"):
        raise BiounetError(f"label kind must be one of auto, binary, instance, got {label_kind!r}")
    if foreground not in ("high", "low"):
        raise BiounetError(f"foreground must be 'high' or 'low', got {foreground!r}")
    image_path, label_path = _resolve(images, labels)
    samples = []
    for image, label, image_name, label_name, kind in _pairs(image_path, label_path, label_kind):
        image = _channels_first(image, label.shape, image_name, label_name)
        if min(label.shape) < 2:  # tiles are mirrored at the borders: needs 2 px per side
            raise BiounetError(
                f"{image_name}: {label.shape[0]}x{label.shape[1]} px is too small to train "
                "on (at least 2x2)"
            )
        instances = to_instances(label, label_kind=kind, foreground=foreground, name=label_name)
        samples.append(Sample(image, instances, image_name))
    return samples


def load_labels(
    labels: str | Path, *, label_kind: LabelKind = "auto", foreground: Foreground = "high"
) -> list[tuple[str, np.ndarray]]:
    """Read a label image or stack (without images) as ``(name, instances)`` per plane.

    Raises
    ------
    BiounetError
        As :func:`load_pairs`.
    """
    path = Path(labels)
    if path.is_dir():
        files = _image_files(path)
    else:
        files = [path]
    out = []
    for file in files:
        array = read_array(file)
        kind = detect_label_kind(array, file, label_kind)
        planes = _planes(array, str(file))
        for z, plane in enumerate(planes):
            name = f"{file}[{z}]" if len(planes) > 1 else str(file)
            out.append(
                (name, to_instances(plane, label_kind=kind, foreground=foreground, name=name))
            )
    return out
