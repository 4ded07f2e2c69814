"""One-file model checkpoints: architecture, weights, normalisation, version.

A checkpoint is a ``torch.save`` dict of plain values and tensors::

    {"format": "biounet-checkpoint", "format_version": 1,
     "biounet_version": "0.1.0",
     "model_config": {...},        # UNetConfig as a dict
     "normalization": {...},       # Normalization as a dict
     "decision": {...},            # DecisionRule as a dict (absent in older files)
     "model_state": {...},         # state_dict
     ...}                          # training state, if any (see biounet.training.loop)

It is read with ``torch.load(..., weights_only=True)``, so a file from a
stranger cannot run code when it is loaded. Files are written atomically.
This module knows the file format only; :func:`biounet.network.unet.load_model`
builds the model from it (so the two modules do not import each other).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from biounet import __version__
from biounet.errors import BiounetError
from biounet.io.atomic import atomic_output

FORMAT = "biounet-checkpoint"
FORMAT_VERSION = 1


def checkpoint_dict(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The checkpoint contents for `model` (a :class:`~biounet.network.unet.UNet`), plus `extra`.

    `extra` holds further entries, e.g. the training state.
    """
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "biounet_version": __version__,
        "model_config": asdict(model.config),
        "normalization": asdict(model.normalization),
        "decision": asdict(model.decision),
        "model_state": state,
        **extra,
    }


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write `model` (and `extra` entries) to `path` atomically; return the path.

    An existing file is replaced (a run's ``latest.pt``); a full disk or a
    read-only folder raises :class:`BiounetError` naming `path`, and the
    previous file stays as it was.
    """
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
        torch.save(checkpoint_dict(model, **extra), fh)  # OS errors stay OSError
    return Path(path)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint file.

    Raises
    ------
    BiounetError
        If the file is missing or unreadable, holds anything but plain data
        and tensors, or is not a biounet checkpoint of a known format.
    """
    path = Path(path)
    if not path.is_file():
        raise BiounetError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BiounetError(f"{path}: not a readable biounet checkpoint ({reason[:200]})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise BiounetError(f"{path}: not a biounet checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise BiounetError(
            f"{path}: checkpoint format {ckpt.get('format_version')} is not supported by "
            f"biounet {__version__} (format {FORMAT_VERSION})"
        )
    return ckpt
