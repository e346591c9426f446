"""Arguments and results of control calls (``Call``/``Result``), as one wire format.

Every component that serves control calls (replica, engine, later the node) declares the
arguments of each call as a frozen attrs class and structures ``Call.args`` with
:func:`structure_args`: unknown keys, missing required keys and wrongly typed values (no
coercion: ``"5"`` is not an int) become one :class:`~lhtrio.errors.InvalidArgumentError` that names
the call and every problem. Results are unstructured with :data:`converter` (datetimes as RFC 3339
UTC by :func:`lhtrio.models.times.format_time`, four-digit years, so a peer can always parse them
back; enums by value), so they travel as plain msgpack values.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.times import format_time
from lhtrio.wire.messages import Call

__all__ = ["NoArgs", "NameArgs", "SizeArgs", "converter", "strict_hook", "structure_args"]

T = TypeVar("T")


# Argument shapes that several components' calls share.


@attrs.frozen(kw_only=True)
class NoArgs:
    pass


@attrs.frozen(kw_only=True)
class NameArgs:
    name: str


@attrs.frozen(kw_only=True)
class SizeArgs:
    size: int


def strict_hook(kind: type[T]) -> Callable[[Any, Any], T]:
    """A cattrs structure hook that accepts exactly ``kind`` (no coercion, bool is not int)."""

    def hook(value: Any, _: Any) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


#: The converter of control-call arguments and results.
converter = cattrs.Converter(forbid_extra_keys=True)
for _kind in (int, str, bool, bytes):
    converter.register_structure_hook(_kind, strict_hook(_kind))


def _number(value: Any, _: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


converter.register_structure_hook(float, _number)


def _is_list(kind: Any) -> bool:
    return getattr(kind, "__origin__", None) is list


def _list_hook(kind: Any) -> Callable[[Any, Any], Any]:
    (item,) = getattr(kind, "__args__", (Any,))

    def hook(value: Any, _: Any) -> list[Any]:
        if type(value) not in (list, tuple):  # a string is not a list of characters
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return [converter.structure(v, item) for v in value]

    return hook


converter.register_structure_hook_factory(_is_list, _list_hook)
converter.register_unstructure_hook(dt.datetime, format_time)
converter.register_unstructure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda e: e.value
)


def structure_args(cls: type[T], call: Call) -> T:
    """``call.args`` as a ``cls``; InvalidArgumentError naming every problem otherwise."""
    try:
        return converter.structure(call.args, cls)
    except Exception as exc:
        detail = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise InvalidArgumentError(f"bad arguments for call {call.name!r}: {detail}") from None
