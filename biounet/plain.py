"""Helpers for the frozen config dataclasses."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_plain(cls: type[T], values: dict[str, Any], *, what: str | None = None) -> T:
    """Build `cls` from a dict of plain values, rejecting keys it does not have.

    Examples
    --------
    >>> from biounet.network.normalize import Normalization
    >>> from_plain(Normalization, {"mode": "fixed", "high": 255})
    Normalization(mode='fixed', low=0.0, high=255)
    >>> from_plain(Normalization, {"hihg": 1})
    Traceback (most recent call last):
    ...
    ValueError: unknown Normalization field(s): hihg
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__ + ' field'}(s): {', '.join(unknown)}")
    return cls(**values)
