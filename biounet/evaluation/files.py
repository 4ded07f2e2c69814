"""Score a prediction TIFF against a ground-truth TIFF (``biounet evaluate``).

Reads both files, checks them with one-line :class:`BiounetError` messages
that name the file, runs :func:`biounet.evaluation.isbi.evaluate_isbi` and formats the
result as a table. Whole stacks are held in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from biounet.errors import BiounetError
from biounet.evaluation.isbi import evaluate_isbi
from biounet.evaluation.table import (
    INSTANCE_METRICS,
    ISBI_METRICS,
    METRIC_KEYS,
    METRICS,
    better,
    threshold_key,
)
from biounet.io.atomic import atomic_output, check_writable
from biounet.io.read import detect_label_kind, read_array


def parse_metrics(text: str | None) -> list[str] | None:
    """``"pixel,rand"`` -> ``["pixel", "rand"]``; None stays None (automatic)."""
    if text is None:
        return None
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in METRIC_KEYS]
    if unknown or not names:
        bad = ", ".join(unknown) or "(empty)"
        raise BiounetError(f"--metrics: unknown {bad} (choose from {', '.join(METRIC_KEYS)})")
    return names


def _values(image: np.ndarray) -> np.ndarray:
    return np.unique(image) if image.dtype != bool else np.unique(image.astype(np.uint8))


def _check_ground_truth(gt: np.ndarray, path: Path, metrics: list[str] | None) -> list[str]:
    if gt.dtype.kind == "f" and not np.isfinite(gt).all():
        raise BiounetError(f"{path}: ground truth has NaN or infinite values")
    values = _values(gt)
    if gt.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        odd = values[values != np.round(values)][0]
        raise BiounetError(
            f"{path}: not a binary mask or label image (non-integer value {odd:g}); "
            f"is it a probability map given as ground truth?"
        )
    if values.size and values[0] < 0:
        raise BiounetError(f"{path}: ground truth has negative values ({values[0]:g})")
    instance = detect_label_kind(gt, path) == "instance"
    binary = not instance and (values.size <= 1 or (values.size == 2 and values[0] == 0))
    if metrics is None:
        metrics = list(INSTANCE_METRICS if instance else ISBI_METRICS)
    if not binary and any(m in ISBI_METRICS for m in metrics):
        shown = ", ".join(f"{v:g}" for v in values[:4]) + (", ..." if values.size > 4 else "")
        raise BiounetError(
            f"{path}: not a binary cell mask (values {shown}); the ISBI metrics need "
            f"cells > 0 and membranes = 0 (leave out --metrics for instance labels: seg, ap)"
        )
    return metrics


def _prediction(pred: np.ndarray, path: Path, kind: str, invert: bool) -> tuple[np.ndarray, str]:
    if kind == "auto":
        kind = "probabilities" if pred.dtype.kind == "f" else "labels"
    if kind == "labels":
        if invert:
            raise BiounetError(f"{path}: --invert applies to probability maps, not label images")
        if pred.dtype.kind == "f" and not (np.isfinite(pred).all() and (pred % 1 == 0).all()):
            raise BiounetError(f"{path}: label image has non-integer values")
        if pred.dtype.kind == "i" and pred.size and pred.min() < 0:
            raise BiounetError(f"{path}: label image has negative values")
        return pred, kind
    if pred.dtype.kind in "iu":
        pred = pred / float(np.iinfo(pred.dtype).max)
    prob = pred.astype(np.float64)
    if not np.isfinite(prob).all():
        raise BiounetError(f"{path}: probability map has NaN or infinite values")
    if prob.size and (prob.min() < 0 or prob.max() > 1):
        raise BiounetError(
            f"{path}: probability values outside [0, 1] (min {prob.min():.4g}, "
            f"max {prob.max():.4g}); use --kind labels for a label image"
        )
    return (1.0 - prob if invert else prob), kind


def evaluate_files(
    prediction: str | Path,
    ground_truth: str | Path,
    *,
    metrics: list[str] | None = None,
    kind: str = "auto",
    invert: bool = False,
    json_path: str | Path | None = None,
    overwrite: bool = False,
) -> dict:
    """Evaluate two TIFF files; optionally write the result as JSON (atomically).

    Parameters
    ----------
    prediction : path
        Probability map (float in [0, 1], **high = cell**) or label image
        (integer, 0 = boundary); 2-D or a (Z, Y, X) stack.
    ground_truth : path
        Binary cell mask (cells > 0, e.g. 255; membranes 0) for the ISBI
        metrics, instance labels for ``seg`` and ``ap``; same shape.
    metrics : list of str, optional
        Names from :data:`biounet.evaluation.table.METRICS`. Default: the five ISBI
        metrics for a binary ground truth; ``seg`` and ``ap`` for instance
        labels (more than two values, or a file that states it holds
        instance labels; see :func:`biounet.io.read.detect_label_kind`).
    kind : {"auto", "probabilities", "labels"}
        ``auto``: float = probability, integer = labels. ``probabilities`` with
        an integer file divides by the dtype's maximum (uint8 255 -> 1.0).
    invert : bool
        Use ``1 - p`` (for a membrane-probability map).
    json_path : path, optional
        Where to write the result (a new ``.json`` file, not an input).
    overwrite : bool
        Replace an existing `json_path`.

    Returns
    -------
    result : dict
        As :func:`biounet.evaluation.isbi.evaluate_isbi`, with the file names in
        ``details``.
    """
    pred_path, gt_path = Path(prediction), Path(ground_truth)
    inputs = (pred_path, gt_path)
    if json_path is not None:
        if Path(json_path).suffix.lower() != ".json":
            raise BiounetError(f"{json_path}: --json writes JSON; give the file a .json suffix")
        check_writable(json_path, overwrite=overwrite, inputs=inputs)
    pred = read_array(pred_path, ndim=(2, 3))
    gt = read_array(gt_path, ndim=(2, 3))
    if pred.shape != gt.shape:
        raise BiounetError(
            f"{pred_path}: shape {pred.shape} differs from {gt_path}: shape {gt.shape}"
        )
    metrics = _check_ground_truth(gt, gt_path, metrics)
    data, kind = _prediction(pred, pred_path, kind, invert)
    try:
        result = evaluate_isbi(data, gt, metrics=metrics, kind=kind)
    except ValueError as exc:
        text = str(exc)
        for prefix, path in (("ground truth: ", gt_path), ("prediction: ", pred_path)):
            if text.startswith(prefix):
                raise BiounetError(f"{path}: {text[len(prefix) :]}") from None
        raise BiounetError(f"{pred_path}: {text}") from None
    result["details"].update(
        prediction=str(pred_path),
        ground_truth=str(gt_path),
        prediction_dtype=str(pred.dtype),
        inverted=bool(invert),
    )
    if json_path is not None:
        with atomic_output(json_path, overwrite=overwrite, inputs=inputs) as tmp:
            tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def format_table(result: dict) -> str:
    """A readable table: each metric's best value, threshold and direction.

    Examples
    --------
    >>> r = {"pixel_error": 0.0611, "threshold": {"pixel_error": 0.5}, "details": {}}
    >>> print(format_table(r))
    metric                        value  threshold  better
    pixel_error               0.0611000        0.5  lower
    """
    details = result.get("details", {})
    rows = [("metric", "value", "threshold", "better")]
    for name in (m.key for m in METRICS):
        if name not in result:
            continue
        names = [name, "warping_error_classic"] if name == "warping_error" else [name]
        for key in names:
            value = result[key] if key in result else details[key]
            level = result["threshold"].get(key)
            rows.append(
                (
                    key,
                    f"{value:.7f}",
                    "-" if level is None else threshold_key(level),
                    better(key),
                )
            )
    lines = [f"{a:<25}{b:>10}{c:>11}  {d}" for a, b, c, d in rows]
    if "ap_per_iou" in details:
        per = ", ".join(f"{iou} {v:.4f}" for iou, v in details["ap_per_iou"].items())
        lines.append(f"average precision at IoU {per}")
    if "warping_error" in result and "warping_splits" in details:
        level = result["threshold"]["warping_error"]
        key = "labels" if level is None else threshold_key(level)
        lines.append(
            f"warping error {'of the labels' if level is None else f'at threshold {key}'}: "
            f"{details['warping_splits'][key]} split and "
            f"{details['warping_mergers'][key]} merge pixels"
        )
    return "\n".join(lines)
