"""Request bodies: JSON parsed strictly, then each request's fields checked (sans-I/O).

A body is one JSON object; anything else is refused before any field is looked at: bytes that
are not UTF-8 JSON, ``NaN``/``Infinity``, a key given twice, nesting deep enough to exhaust the
parser, an array or a number at the top. Each request then takes only the fields its
:class:`~lhtrio.api.fields.Body` declares: an unknown field is an error (a misspelt
``numberOfReplica`` must not silently become the default), and so is a field of the wrong JSON
type (``"3"`` is not a replica count, ``true`` is not a size). Every refusal is a
:class:`~lhtrio.api.problems.FieldError` naming the field; the API answers it with 400 and
changes nothing. The same declarations make the bodies' schemas in the OpenAPI document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

import attrs

from lhtrio.api import fields
from lhtrio.api.fields import Body, json_type
from lhtrio.api.problems import FieldError
from lhtrio.models.cluster.setting import SETTINGS, SettingType

__all__ = [
    "CREATE_VOLUME",
    "PUT_SETTING",
    "CreateVolume",
    "PutSetting",
    "json_type",
    "parse_create_volume",
    "parse_json",
    "parse_put_setting",
]

#: ``POST /v1/volumes`` (Longhorn's shape, cut to what lhtrio serves).
CREATE_VOLUME: Final = Body(
    what="a volume",
    fields=(
        fields.name("name", "volume", required=True),
        fields.size("size", required=True),
        fields.replica_count("numberOfReplicas"),
    ),
    description="without numberOfReplicas: the default-replica-count setting",
)

_PLAIN: Final = re.compile(r"[a-z0-9-]+")  # (a choice spelled so needs no escaping in a pattern)


def _setting_values() -> str:
    """Every setting's values, spelled as one pattern (which ones a setting takes depends on the
    setting: its own rules check the value when it is set)."""
    spellings = {"-?[0-9]{1,18}"}
    for definition in SETTINGS.values():
        if definition.type is SettingType.BOOL:
            spellings |= {"true", "false"}
        elif definition.type is SettingType.CHOICE:
            spellings |= {choice for choice in definition.choices if _PLAIN.fullmatch(choice)}
    return f"^({'|'.join(sorted(spellings))})$"


#: ``PUT /v1/settings/NAME``: a setting's value is text, as Longhorn's (checked when set).
PUT_SETTING: Final = Body(
    what="a setting",
    fields=(
        fields.text(
            "value",
            required=True,
            description='the value as text: "3", "true", "best-effort"; which values a setting '
            "takes is in its definition (docs/api.md)",
            pattern=_setting_values(),
        ),
    ),
)


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


@attrs.frozen(kw_only=True)
class CreateVolume:
    """``replicas`` is None when the body left it to the ``default-replica-count`` setting."""

    name: str
    size: int
    replicas: int | None


def parse_create_volume(body: Mapping[str, object]) -> CreateVolume:
    """``{"name", "size", "numberOfReplicas"?}``."""
    values = CREATE_VOLUME.parse(body)
    return CreateVolume(
        name=values.get("name"), size=values.get("size"), replicas=values.get("numberOfReplicas")
    )


@attrs.frozen(kw_only=True)
class PutSetting:
    value: str


def parse_put_setting(body: Mapping[str, object]) -> PutSetting:
    """``{"value": TEXT}``."""
    return PutSetting(value=PUT_SETTING.parse(body).get("value"))
