"""Helpers for the frozen config dataclasses: plain values (YAML, checkpoints) in, checked."""

from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a plain value has the type an annotation asks for (bools are not numbers)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        if len(value) != len(args):
            return False
        return all(_fits(v, a) for v, a in zip(value, args, strict=True))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    """Words for a type annotation, for messages."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return "a list of numbers"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    return names.get(
        hint, "nothing (null)" if hint is type(None) else getattr(hint, "__name__", "?")
    )


def from_plain(cls: type[T], values: Any, *, what: str | None = None) -> T:
    """Build `cls` from a dict of plain values, checking keys and value types.

    Every value must have its field's type (an integer for ``int``, ``true``
    or ``false`` for ``bool``, one of the choices for a ``Literal``...); the
    message names the key.

    Raises
    ------
    ValueError
        `values` is not a mapping, or has an unknown key or a value of the
        wrong type.

    Examples
    --------
    >>> from biounet.network.normalize import Normalization
    >>> from_plain(Normalization, {"mode": "fixed", "high": 255})
    Normalization(mode='fixed', low=0.0, high=255)
    >>> from_plain(Normalization, {"hihg": 1})
    Traceback (most recent call last):
    ...
    ValueError: unknown Normalization field(s): hihg
    >>> from_plain(Normalization, {"high": True})
    Traceback (most recent call last):
    ...
    ValueError: high: expected a number, got True
    """
    if not isinstance(values, dict):
        raise ValueError(f"expected a mapping of options, got {values!r}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__ + ' field'}(s): {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints.get(key, Any)
        if not is_dataclass(hint) and not _fits(value, hint):
            raise ValueError(f"{key}: expected {_describe(hint)}, got {value!r}")
    return cls(**values)
