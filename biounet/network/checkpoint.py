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

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from biounet import __version__
from biounet.errors import BiounetError
from biounet.io.atomic import atomic_output, write_failure
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
        try:
            with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
                torch.save(contents, fh)  # OS errors stay OSError
        except RuntimeError as exc:  # torch's writer reports a full disk so
            raise write_failure(exc, path) from None
    return Path(path)


#: File names of a bioimage.io model description inside a package.
BIOIMAGEIO_NAMES = ("bioimageio.yaml", "rdf.yaml")
#: The most bytes read for a package's description and for its weights.
MAX_DESCRIPTION_BYTES = 2**20
MAX_WEIGHTS_BYTES = 2**32


class Package:
    """A bioimage.io package opened for reading its own members, and nothing else.

    A package is a folder or a ``.zip`` holding ``bioimageio.yaml`` (or
    ``rdf.yaml``), or that YAML file itself (its folder is the package).
    :meth:`read` takes a member name from the description and refuses, with
    one line naming the package, a name that leaves the package (``../``,
    an absolute path, a link that points outside), anything but a regular
    file (``/dev/zero``, a FIFO), a member larger than its limit, and a
    damaged zip archive.
    """

    def __init__(self, path: Path, description: str, archive: bool) -> None:
        self.path, self.description, self.archive = path, description, archive
        self.root = path if path.is_dir() or archive else path.parent

    @classmethod
    def open(cls, path: Path) -> Package | None:
        """The package at `path`, or None if `path` is not one."""
        import zipfile

        if path.is_file() and path.name.endswith((".yaml", ".yml")):
            return cls(path, path.name, archive=False)
        if path.is_dir():
            for name in BIOIMAGEIO_NAMES:
                if (path / name).is_file():
                    return cls(path, name, archive=False)
            return None
        if path.is_file() and path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    names = set(zf.namelist())
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise BiounetError(f"{path}: a damaged zip archive ({_reason(exc)})") from None
            for name in BIOIMAGEIO_NAMES:
                if name in names:
                    return cls(path, name, archive=True)
        return None

    def member(self, reference: Any, what: str) -> str:
        """`reference` as a member name of this package, or a one-line error.

        Examples
        --------
        >>> Package(Path("pkg"), "rdf.yaml", archive=True).member("./w/weights.pt", "weights")
        'w/weights.pt'
        """
        import posixpath

        text = str(reference) if isinstance(reference, str | Path) else ""
        refused = f"{self.path}: the {what} {reference!r} "
        if not text or "\0" in text or "\\" in text:
            raise BiounetError(refused + "is not a file name inside the package")
        if "://" in text:
            raise BiounetError(refused + "is not inside the package (a remote file)")
        if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
            raise BiounetError(refused + "is an absolute path; it must lie inside the package")
        name = posixpath.normpath(text)
        if name == ".." or name.startswith("../") or name in (".", ""):
            raise BiounetError(refused + "points outside the package")
        return name

    def read(self, reference: Any, what: str, limit: int) -> bytes:
        """The bytes of member `reference`, at most `limit` of them."""
        name = self.member(reference, what)
        if self.archive:
            return self._read_zip(name, what, limit)
        import stat

        root = Path(os.path.realpath(self.root))
        target = Path(os.path.realpath(root / name))
        if root not in target.parents:
            raise BiounetError(f"{self.path}: the {what} {name!r} points outside the package")
        try:
            info = os.stat(target)
        except OSError:
            raise BiounetError(f"{self.path}: the {what} {name!r} is missing") from None
        if not stat.S_ISREG(info.st_mode):
            raise BiounetError(f"{self.path}: the {what} {name!r} is not a regular file")
        if info.st_size > limit:
            raise BiounetError(
                f"{self.path}: the {what} {name!r} holds {info.st_size:,} bytes, "
                f"more than the {limit:,} biounet reads"
            )
        with open(target, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise BiounetError(f"{self.path}: the {what} {name!r} is larger than {limit:,} bytes")
        return data

    def _read_zip(self, name: str, what: str, limit: int) -> bytes:
        import zipfile
        import zlib

        try:
            with zipfile.ZipFile(self.path) as zf:
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    raise BiounetError(f"{self.path}: the {what} {name!r} is missing") from None
                if info.is_dir():
                    raise BiounetError(f"{self.path}: the {what} {name!r} is a folder")
                if info.file_size > limit:
                    raise BiounetError(
                        f"{self.path}: the {what} {name!r} holds {info.file_size:,} bytes, "
                        f"more than the {limit:,} biounet reads"
                    )
                with zf.open(info) as fh:
                    data = fh.read(limit + 1)
        except BiounetError:
            raise
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
                NotImplementedError, RuntimeError) as exc:  # fmt: skip
            raise BiounetError(
                f"{self.path}: a damaged zip archive ({what} {name!r}: {_reason(exc)})"
            ) from None
        if len(data) > limit:
            raise BiounetError(f"{self.path}: the {what} {name!r} is larger than {limit:,} bytes")
        return data


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type if empty), at most 160 characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _file_references(rdf: dict) -> list[tuple[str, Any]]:
    """(what, reference) for the files a description names: weights, tensors, documents."""
    refs: list[tuple[str, Any]] = []
    weights = rdf.get("weights")
    if isinstance(weights, dict):
        for fmt, entry in weights.items():
            if isinstance(entry, dict) and "source" in entry:
                refs.append((f"{fmt} weights", entry["source"]))
    for key in ("inputs", "outputs"):
        for tensor in rdf.get(key) or []:
            if isinstance(tensor, dict) and isinstance(tensor.get("test_tensor"), dict):
                refs.append(("test tensor", tensor["test_tensor"].get("source")))
    documentation = rdf.get("documentation")
    if documentation is not None:
        refs.append(("documentation", documentation))
    for cover in rdf.get("covers") or []:
        refs.append(("cover", cover))
    # a file reference is a name, or (spec 0.5) a mapping with its source and sha256
    return [(what, ref.get("source") if isinstance(ref, dict) else ref) for what, ref in refs]


def load_bioimageio_package(path: Path, *, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint contents of a bioimage.io package exported by biounet.

    Reads the description's ``config.biounet`` (architecture and
    normalisation) and the ``pytorch_state_dict`` weights with
    ``torch.load(weights_only=True)``; bioimageio.spec is not needed. Every
    file the description names must be a member of the package
    (:class:`Package`); the weights are read only from there, at most
    :data:`MAX_WEIGHTS_BYTES`, and checked against their ``sha256`` when the
    description gives one.

    Raises
    ------
    BiounetError
        A package that biounet did not export, a damaged archive or
        description, a file reference outside the package, weights that are
        missing, too large, altered (sha256) or unreadable.
    """
    import hashlib
    import io
    import re

    import yaml

    package = Package.open(path)
    if package is None:
        raise BiounetError(f"{path}: not a bioimage.io package")
    text = package.read(package.description, "description", MAX_DESCRIPTION_BYTES)
    try:
        rdf = yaml.safe_load(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise BiounetError(f"{path}: the description {package.description} is not UTF-8") from None
    except yaml.YAMLError as exc:
        raise BiounetError(
            f"{path}: the description {package.description} is not valid YAML ({_reason(exc)})"
        ) from None
    try:
        own = rdf["config"]["biounet"]
        entry = rdf["weights"]["pytorch_state_dict"]
        source = entry["source"]
        model_config, normalization = own["model_config"], own["normalization"]
        decision = own.get("decision", {})  # absent in packages written before it travelled
        if not all(isinstance(d, dict) for d in (model_config, normalization, decision)):
            raise TypeError
    except (KeyError, TypeError):
        raise BiounetError(
            f"{path}: a bioimage.io package, but not one exported by biounet "
            "(no config.biounet with model_config, normalization and pytorch_state_dict weights)"
        ) from None
    for what, reference in _file_references(rdf):
        if not (what in ("documentation", "cover") and "://" in str(reference)):
            package.member(reference, what)  # every file it names lies inside
    data = package.read(source, "weights", MAX_WEIGHTS_BYTES)
    expected = entry.get("sha256")
    if expected is not None:
        if not (isinstance(expected, str) and re.fullmatch(r"[0-9a-fA-F]{64}", expected)):
            raise BiounetError(f"{path}: the weights' sha256 {expected!r} is not a sha256")
        if hashlib.sha256(data).hexdigest() != expected.lower():
            raise BiounetError(
                f"{path}: the weights {source} do not match the sha256 in the description "
                "(the package is damaged or was altered)"
            )
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file
        raise BiounetError(f"{path}: cannot read the weights {source} ({_reason(exc)})") from None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "biounet_version": str(own.get("biounet_version", "unknown")),
        "model_config": model_config,
        "normalization": normalization,
        "decision": decision,
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
    if not path.exists():
        raise BiounetError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise BiounetError(f"{path}: not a regular file (a checkpoint is a .pt file)")
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
