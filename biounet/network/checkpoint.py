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
from biounet.signals import deferred_interrupts

FORMAT = "biounet-checkpoint"
FORMAT_VERSION = 1


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s state dict, detached and on the CPU (what checkpoints store)."""
    return {k: v.detach().to("cpu") for k, v in module.state_dict().items()}


def checkpoint_dict(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The checkpoint contents for `model` (a :class:`~biounet.network.unet.UNet`), plus `extra`.

    `extra` holds further entries, e.g. the training state.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "biounet_version": __version__,
        "model_config": asdict(model.config),
        "normalization": asdict(model.normalization),
        "decision": asdict(model.decision),
        "model_state": cpu_state(model),
        **extra,
    }


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write `model` (and `extra` entries) to `path` atomically; return the path.

    An existing file is replaced (a run's ``latest.pt``); a full disk or a
    read-only folder raises :class:`BiounetError` naming `path`, and the
    previous file stays as it was. Ctrl-C or SIGTERM during the write takes
    effect once the file is complete (torch's writer would otherwise raise
    its own error over the interruption).
    """
    contents = checkpoint_dict(model, **extra)
    with deferred_interrupts():
        with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
            torch.save(contents, fh)  # OS errors stay OSError
    return Path(path)


#: File names of a bioimage.io model description inside a package.
BIOIMAGEIO_NAMES = ("bioimageio.yaml", "rdf.yaml")


def _package_member(path: Path) -> tuple[str, Any] | None:
    """(description name, opener of members) if `path` is a bioimage.io package, else None.

    A package is a folder or a ``.zip`` holding ``bioimageio.yaml`` (or
    ``rdf.yaml``), or that YAML file itself.
    """
    import zipfile

    if path.is_file() and path.name.endswith((".yaml", ".yml")):
        return path.name, lambda name: (path.parent / name).read_bytes()
    if path.is_dir():
        for name in BIOIMAGEIO_NAMES:
            if (path / name).is_file():
                return name, lambda member: (path / member).read_bytes()
        return None
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        for name in BIOIMAGEIO_NAMES:
            if name in names:

                def read(member: str) -> bytes:
                    with zipfile.ZipFile(path) as zf:
                        return zf.read(member)

                return name, read
    return None


def load_bioimageio_package(path: Path, *, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint contents of a bioimage.io package exported by biounet.

    Reads the description's ``config.biounet`` (architecture and
    normalisation) and the ``pytorch_state_dict`` weights with
    ``torch.load(weights_only=True)``; bioimageio.spec is not needed.

    Raises
    ------
    BiounetError
        A package that biounet did not export, or missing or unreadable weights.
    """
    import io

    import yaml

    found = _package_member(path)
    if found is None:
        raise BiounetError(f"{path}: not a bioimage.io package")
    name, read = found
    try:
        rdf = yaml.safe_load(read(name))
        own = rdf["config"]["biounet"]
        source = rdf["weights"]["pytorch_state_dict"]["source"]
    except (KeyError, TypeError, yaml.YAMLError, OSError):
        raise BiounetError(
            f"{path}: a bioimage.io package, but not one exported by biounet "
            "(no config.biounet with pytorch_state_dict weights)"
        ) from None
    try:
        state = torch.load(
            io.BytesIO(read(str(source))), map_location=map_location, weights_only=True
        )
    except Exception as exc:  # a missing member or a damaged file
        raise BiounetError(f"{path}: cannot read the weights {source} ({exc})") from None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "biounet_version": own.get("biounet_version", "unknown"),
        "model_config": own["model_config"],
        "normalization": own["normalization"],
        "decision": own.get("decision", {}),
        "model_state": state,
    }


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint file, or a bioimage.io package exported by biounet.

    Raises
    ------
    BiounetError
        If the file is missing or unreadable, holds anything but plain data
        and tensors, or is not a biounet checkpoint of a known format.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".zip", ".yaml", ".yml"):
        if not path.exists():
            raise BiounetError(f"{path}: no such file or folder")
        return load_bioimageio_package(path, map_location=map_location)
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
