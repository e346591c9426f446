"""Request bodies: JSON parsed strictly, then each request's fields checked (sans-I/O).

A body is one JSON object; anything else is refused before any field is looked at: bytes that
are not UTF-8 JSON, ``NaN``/``Infinity``, a key given twice, nesting deep enough to exhaust the
parser, an array or a number at the top. Each request then takes only the fields it knows: an
unknown field is an error (a misspelt ``numberOfReplica`` must not silently become the
default), and so is a field of the wrong JSON type (``"3"`` is not a replica count, ``true`` is
not a size). Every refusal is a :class:`~lhtrio.api.problems.FieldError` naming the field; the
API answers it with 400 and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

import attrs

from lhtrio.api.problems import FieldError
from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster.validate import MAX_REPLICAS
from lhtrio.models.names import validate_volume_name
from lhtrio.units import parse_volume_size

__all__ = [
    "CreateVolume",
    "PutSetting",
    "checked_field",
    "json_type",
    "only_fields",
    "parse_create_volume",
    "parse_json",
    "parse_put_setting",
    "replica_count_field",
    "size_field",
    "string_field",
]

#: The longest size text looked at (``"9223372036854771712"`` is 19 characters; a unit or spaces
#: add a few). Longer text is refused before it is turned into a number.
MAX_SIZE_TEXT: Final = 64


def _refuse_constant(text: str) -> object:
    raise ValueError(f"{text} is not a JSON number")


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} is given twice")
        result[key] = value
    return result


def parse_json(data: bytes, *, empty_ok: bool = False) -> dict[str, object]:
    """The JSON object in ``data`` (``{}`` for no bytes at all when ``empty_ok``)."""
    if not data.strip() and empty_ok:
        return {}
    try:
        value = json.loads(data, parse_constant=_refuse_constant, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FieldError("", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FieldError("", f"the body must be a JSON object, not {json_type(value)}")
    return value


def json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
    return "an object"


def only_fields(body: Mapping[str, object], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise FieldError(
            unknown[0],
            f"unknown field {unknown[0]!r} in {what}; the fields are {', '.join(allowed)}",
        )


def string_field(body: Mapping[str, object], field: str, *, required: bool) -> str | None:
    if field not in body:
        if required:
            raise FieldError(field, f"the field {field!r} is required")
        return None
    value = body[field]
    if not isinstance(value, str):
        raise FieldError(field, f"{field} must be a string, not {json_type(value)}")
    return value


def checked_field(field: str, check: Callable[..., object], value: object, **kw: str) -> None:
    try:
        check(value, **kw)
    except InvalidArgumentError as exc:
        raise FieldError(field, exc.message) from None


@attrs.frozen(kw_only=True)
class CreateVolume:
    """``replicas`` is None when the body left it to the ``default-replica-count`` setting."""

    name: str
    size: int
    replicas: int | None


def size_field(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FieldError(
            "size",
            f'size must be a number of bytes (a string such as "1073741824" or "10Gi", or '
            f"a whole number), not {json_type(value)}",
        )
    if isinstance(value, str) and len(value) > MAX_SIZE_TEXT:
        raise FieldError("size", f"size is {len(value)} characters long: not a size")
    try:
        return parse_volume_size(value)
    except InvalidArgumentError as exc:
        raise FieldError("size", exc.message) from None


def replica_count_field(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, f"{field} must be a whole number, not {json_type(value)}")
    if not 1 <= value <= MAX_REPLICAS:
        raise FieldError(field, f"{field} {value} is not from 1 to {MAX_REPLICAS}")
    return value


def parse_create_volume(body: Mapping[str, object]) -> CreateVolume:
    """``{"name", "size", "numberOfReplicas"?}`` (Longhorn's shape, cut to what lhtrio serves)."""
    only_fields(body, ("name", "size", "numberOfReplicas"), "a volume")
    name = string_field(body, "name", required=True)
    checked_field("name", validate_volume_name, name)
    assert name is not None
    if "size" not in body:
        raise FieldError("size", "the field 'size' is required (bytes, e.g. \"10Gi\")")
    size = size_field(body["size"])
    replicas = None
    if "numberOfReplicas" in body:
        replicas = replica_count_field("numberOfReplicas", body["numberOfReplicas"])
    return CreateVolume(name=name, size=size, replicas=replicas)


@attrs.frozen(kw_only=True)
class PutSetting:
    value: str


def parse_put_setting(body: Mapping[str, object]) -> PutSetting:
    """``{"value": TEXT}`` (a setting's value is text, as Longhorn's; checked when set)."""
    only_fields(body, ("value",), "a setting")
    value = string_field(body, "value", required=True)
    assert value is not None
    return PutSetting(value=value)
