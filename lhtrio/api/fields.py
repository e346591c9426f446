"""The fields a request body may hold, each declared once: how it is checked and its JSON Schema.

A request body is a :class:`Body`, a table of :class:`Field`\\ s. The same table parses a body
(:meth:`Body.parse`: unknown fields refused, required ones demanded, each value checked by its
field) and describes it in the OpenAPI document (:meth:`Body.schema`), so the parser and the
document cannot disagree about which fields exist, which are required and what each may hold.
Every field kind below is a small factory returning a :class:`Field`; a refusal is a
:class:`~lhtrio.api.problems.FieldError` naming the field (the API answers 400).

The schemas are as precise as is cheap (types, enums, bounds, name patterns and lengths); what
only the check knows (a size's multiple of 4096 when it has a unit, a label key's prefix rules)
is in the field's ``description``. Sans-I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from lhtrio.api.problems import FieldError
from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster.validate import MAX_REPLICAS
from lhtrio.models.names import (
    MAX_INSTANCE_NAME,
    MAX_LABELS,
    MAX_SNAPSHOT_NAME,
    MAX_VOLUME_NAME,
    validate_instance_name,
    validate_labels,
    validate_snapshot_name,
    validate_volume_name,
)
from lhtrio.units import BLOCK, MAX_VOLUME_SIZE, parse_size, parse_volume_size

__all__ = [
    "MAX_SIZE_TEXT",
    "NAME_PATTERN",
    "Body",
    "Field",
    "Values",
    "absolute_path",
    "choice",
    "disk_map",
    "flag",
    "json_type",
    "label_value",
    "labels",
    "name",
    "name_schema",
    "names",
    "replica_count",
    "reserved_bytes",
    "size",
    "snapshot_name",
    "tags",
    "text",
]

#: The longest size text looked at (``"9223372036854771712"`` is 19 characters; a unit or spaces
#: add a few). Longer text is refused before it is turned into a number.
MAX_SIZE_TEXT: Final = 64
#: Volume and instance names (:mod:`lhtrio.models.names`), as a JSON Schema pattern.
NAME_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
#: The longest absolute path a disk may have.
MAX_PATH: Final = 4096

Check = Callable[[str, object], object]


def json_type(value: object) -> str:
    """``value``'s JSON type in words, for messages: ``a string``, ``null``..."""
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


def _checked(field: str, check: Callable[..., object], value: object, **kw: str) -> None:
    try:
        check(value, **kw)
    except InvalidArgumentError as exc:
        raise FieldError(field, exc.message) from None


@attrs.frozen(kw_only=True)
class Field:
    """One field of a body: its ``name``, whether it is ``required``, ``check`` (the raw JSON
    value -> the value the request uses, or FieldError) and ``schema`` (its JSON Schema)."""

    name: str
    check: Check
    schema: Mapping[str, object]
    required: bool = False
    description: str = ""


class Values:
    """A parsed body: each present field's checked value (absent optional fields are absent)."""

    def __init__(self, values: dict[str, object]) -> None:
        self._values = values

    def __contains__(self, field: str) -> bool:
        return field in self._values

    def get(self, field: str, default: Any = None) -> Any:
        """The checked value of ``field`` (its type is the field's), or ``default``."""
        return self._values.get(field, default)


@attrs.frozen(kw_only=True)
class Body:
    """A request body: one JSON object of ``fields``. ``what`` names it in messages (``a
    volume``); ``optional``: the request may come without a body (it is then ``{}``)."""

    what: str
    fields: tuple[Field, ...]
    optional: bool = False
    description: str = ""

    def parse(self, body: Mapping[str, object]) -> Values:
        """Each field of ``body`` checked; FieldError for an unknown, missing or bad one."""
        known = {f.name: f for f in self.fields}
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise FieldError(
                unknown[0],
                f"unknown field {unknown[0]!r} in {self.what}; the fields are "
                f"{', '.join(known) or 'none'}",
            )
        values: dict[str, object] = {}
        for field in self.fields:
            if field.name in body:
                values[field.name] = field.check(field.name, body[field.name])
            elif field.required:
                hint = f" ({field.description})" if field.description else ""
                raise FieldError(field.name, f"the field {field.name!r} is required{hint}")
        return Values(values)

    def schema(self) -> dict[str, object]:
        """The body's JSON Schema (an object of exactly these fields)."""
        properties: dict[str, object] = {}
        for field in self.fields:
            schema = dict(field.schema)
            if field.description:
                schema.setdefault("description", field.description)
            properties[field.name] = schema
        out: dict[str, object] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out


# -- field kinds -----------------------------------------------------------------------------


def text(
    field: str, *, required: bool = False, description: str = "", pattern: str | None = None
) -> Field:
    """A string (a setting's value: its own rules check it later); ``pattern``, if given, is
    what the document says of it (the check stays the caller's)."""

    def check(name: str, value: object) -> str:
        if not isinstance(value, str):
            raise FieldError(name, f"{name} must be a string, not {json_type(value)}")
        return value

    return Field(
        name=field,
        check=check,
        schema={"type": "string"} if pattern is None else {"type": "string", "pattern": pattern},
        required=required,
        description=description,
    )


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise FieldError(name, f"{name} must be a string, not {json_type(value)}")
    return value


def name_schema(what: str) -> dict[str, object]:
    """The JSON Schema of a volume name (``what`` = ``volume``) or any other object's name."""
    limit = MAX_VOLUME_NAME if what == "volume" else MAX_INSTANCE_NAME
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NAME_PATTERN}


def name(field: str, what: str, *, required: bool = False, description: str = "") -> Field:
    """A volume's name (``what`` = ``volume``) or a node's, replica's, ticket's..."""

    def check(key: str, value: object) -> str:
        value = _string(key, value)
        if what == "volume":
            _checked(key, validate_volume_name, value)
        else:
            _checked(key, validate_instance_name, value, what=what)
        return value

    return Field(
        name=field,
        check=check,
        schema=name_schema(what),
        required=required,
        description=description or f"a {what} name",
    )


def snapshot_name(field: str, *, required: bool = False) -> Field:
    def check(key: str, value: object) -> str:
        value = _string(key, value)
        _checked(key, validate_snapshot_name, value)
        return value

    return Field(
        name=field,
        check=check,
        schema={"type": "string", "minLength": 1, "maxLength": MAX_SNAPSHOT_NAME},
        required=required,
        description="a snapshot name: no '/', no '..', not starting with '-', no control "
        "characters",
    )


_UNIT: Final = r"\s*([KkMmGgTt][Ii]?)?[Bb]?\s*$"
_SIZE_TEXT: Final = r"^\s*[0-9]+" + _UNIT
_POSITIVE_SIZE_TEXT: Final = r"^\s*0*[1-9][0-9]*" + _UNIT


def size(field: str, *, required: bool = False) -> Field:
    """A volume size: bytes as a string (``"10737418240"``, Longhorn's spelling), a JSON number,
    or with a unit (``"10Gi"``); a positive multiple of 4096 up to 8 EiB - 4 KiB."""

    def check(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise FieldError(
                key,
                f'{key} must be a number of bytes (a string such as "1073741824" or "10Gi", or '
                f"a whole number), not {json_type(value)}",
            )
        if isinstance(value, str) and len(value) > MAX_SIZE_TEXT:
            raise FieldError(key, f"{key} is {len(value)} characters long: not a size")
        try:
            return parse_volume_size(value)
        except InvalidArgumentError as exc:
            raise FieldError(key, exc.message) from None

    return Field(
        name=field,
        check=check,
        schema={
            "oneOf": [
                {"type": "string", "maxLength": MAX_SIZE_TEXT, "pattern": _POSITIVE_SIZE_TEXT},
                {
                    "type": "integer",
                    "minimum": BLOCK,
                    "maximum": MAX_VOLUME_SIZE,
                    "multipleOf": BLOCK,
                },
            ]
        },
        required=required,
        description='bytes: "10737418240", 10737418240 or with a unit ("10Gi", "512Mi"; SI '
        "units are powers of ten); a positive multiple of 4096",
    )


def replica_count(field: str, *, required: bool = False) -> Field:
    def check(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(key, f"{key} must be a whole number, not {json_type(value)}")
        if not 1 <= value <= MAX_REPLICAS:
            raise FieldError(key, f"{key} {value} is not from 1 to {MAX_REPLICAS}")
        return value

    return Field(
        name=field,
        check=check,
        schema={"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
        required=required,
        description=f"1 to {MAX_REPLICAS}",
    )


def flag(field: str, *, description: str = "") -> Field:
    def check(key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise FieldError(key, f"{key} must be true or false, not {json_type(value)}")
        return value

    return Field(name=field, check=check, schema={"type": "boolean"}, description=description)


_LABEL_VALUE: Final = "^(([A-Za-z0-9][A-Za-z0-9._-]*)?[A-Za-z0-9])?$"


def labels(field: str, *, required: bool = False) -> Field:
    def check(key: str, value: object) -> dict[str, str]:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise FieldError(key, f"{key} must be an object of strings to strings")
        _checked(key, validate_labels, value)
        return dict(value)

    return Field(
        name=field,
        check=check,
        schema={
            "type": "object",
            "maxProperties": MAX_LABELS,
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE},
        },
        required=required,
        description="Kubernetes labels: a key is an optional DNS-subdomain prefix and '/', then "
        "1-63 letters, digits, '.', '_' or '-' starting and ending with a letter or digit; a "
        f"value is empty or such a name; at most {MAX_LABELS}",
    )


def label_value(field: str) -> Field:
    """Empty, or 1-63 letters, digits, '.', '_', '-' starting and ending with a letter or digit
    (a Kubernetes label value: a zone, a region)."""

    def check(key: str, value: object) -> str:
        value = _string(key, value)
        if len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            raise FieldError(
                key,
                f"{key} {value!r} must be empty or 1-63 ASCII letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or a digit",
            )
        return value

    return Field(
        name=field,
        check=check,
        schema={"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE},
        description="empty, or a label value",
    )


def names(field: str, what: str, *, required: bool = False) -> Field:
    """A non-empty array of names (duplicates dropped, the order kept)."""

    def check(key: str, value: object) -> list[str]:
        if not isinstance(value, list) or not value or not all(isinstance(n, str) for n in value):
            raise FieldError(key, f"{key} must be a non-empty array of {what} names")
        for item in value:
            _checked(key, validate_instance_name, item, what=what)
        return list(dict.fromkeys(value))

    return Field(
        name=field,
        check=check,
        schema={"type": "array", "minItems": 1, "items": name_schema(what)},
        required=required,
        description=f"{what} names",
    )


def tags(field: str) -> Field:
    """Tags (a node's or a disk's): names, duplicates dropped, sorted."""

    def check(key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise FieldError(key, f"{key} must be an array of tags (strings)")
        for item in value:
            _checked(key, validate_instance_name, item, what="tag")
        return tuple(sorted(set(value)))

    return Field(
        name=field,
        check=check,
        schema={"type": "array", "items": name_schema("tag")},
        description="tags: names (letters, digits, '.', '_', '-'); the list replaces the old one",
    )


def choice(field: str, kind: type[enum.Enum], *, required: bool = False) -> Field:
    """One of an enum's values (``"best-effort"``); the enum member."""
    values = [member.value for member in kind]

    def check(key: str, value: object) -> enum.Enum:
        if not isinstance(value, str) or value not in values:
            raise FieldError(
                key, f"{key} must be one of {', '.join(values)}, not {json_type(value)} {value!r}"
            )
        return kind(value)

    return Field(
        name=field,
        check=check,
        schema={"type": "string", "enum": values},
        required=required,
    )


def reserved_bytes(field: str) -> Field:
    """Bytes kept free on a disk: a whole number, or a string with a unit (``"10Gi"``)."""

    def check(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise FieldError(key, f'{key} must be bytes (a number, or text such as "10Gi")')
        if isinstance(value, str) and len(value) > MAX_SIZE_TEXT:
            raise FieldError(key, f"{key} is {len(value)} characters long: not a size")
        try:
            parsed = parse_size(value)
        except InvalidArgumentError as exc:
            raise FieldError(key, exc.message) from None
        if not 0 <= parsed <= MAX_VOLUME_SIZE:
            raise FieldError(key, f"{key} {value!r} is not from 0 to {MAX_VOLUME_SIZE} bytes")
        return parsed

    return Field(
        name=field,
        check=check,
        schema={
            "oneOf": [
                {"type": "string", "maxLength": MAX_SIZE_TEXT, "pattern": _SIZE_TEXT},
                {"type": "integer", "minimum": 0, "maximum": MAX_VOLUME_SIZE},
            ]
        },
        description='bytes kept free for other uses: 10737418240 or "10Gi"',
    )


def absolute_path(field: str, *, required: bool = False) -> Field:
    def check(key: str, value: object) -> str:
        value = _string(key, value)
        if not value.startswith("/") or "\0" in value or len(value) > MAX_PATH:
            raise FieldError(key, f"{key} {value!r} is not an absolute path")
        return value

    return Field(
        name=field,
        check=check,
        schema={"type": "string", "minLength": 1, "maxLength": MAX_PATH, "pattern": "^/"},
        required=required,
        description="an absolute path on the node",
    )


def disk_map(field: str, disk: Body, *, required: bool = False) -> Field:
    """An object of disk name -> ``disk`` body (each checked by that body)."""

    def check(key: str, value: object) -> dict[str, Values]:
        if not isinstance(value, dict):
            raise FieldError(key, f"{key} must be an object of disk name -> disk")
        out: dict[str, Values] = {}
        for disk_name, spec in value.items():
            where = f"{key}.{disk_name}"
            _checked(where, validate_instance_name, disk_name, what="disk")
            if not isinstance(spec, dict):
                raise FieldError(where, f"{where} must be an object, not {json_type(spec)}")
            try:
                out[disk_name] = disk.parse(spec)
            except FieldError as exc:
                raise FieldError(f"{where}.{exc.field}", exc.message) from None
        return out

    return Field(
        name=field,
        check=check,
        schema={"type": "object", "additionalProperties": disk.schema()},
        required=required,
        description="disk name -> disk",
    )
