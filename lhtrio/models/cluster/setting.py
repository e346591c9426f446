"""The Setting kind and the table of settings lhtrio knows, with Longhorn's names and defaults.

A Setting object holds its value as text (``spec.value``, as Longhorn's CRD does, there at the top
level); :data:`SETTINGS` says, for each name, its type, default and allowed values
(``longhorn-facts.md`` §6.2), and :func:`parse` turns text into a value or raises
:class:`~lhtrio.errors.InvalidArgumentError` saying what is allowed. A setting that has no object
in the store has its default. Only the names in the table exist: an unknown name is refused.

Text is parsed strictly: integers in plain decimal, booleans as ``true``/``false``, choices as
listed; no spaces, no other spellings, so the value shown is the value used.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import ClassVar

import attrs

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster.meta import ObjectMeta

__all__ = [
    "SETTINGS",
    "Setting",
    "SettingDefinition",
    "SettingSpec",
    "SettingStatus",
    "SettingType",
    "SettingValue",
    "parse",
    "parse_bool",
    "parse_int",
    "parse_str",
    "value_of",
]

SettingValue = bool | int | str


class SettingType(enum.Enum):
    BOOL = "bool"
    INT = "int"
    CHOICE = "choice"


@attrs.frozen(kw_only=True)
class SettingDefinition:
    """One setting: ``default`` as text; ``minimum``/``maximum`` bound an int (None: unbounded);
    ``choices`` are a choice's allowed values."""

    name: str
    type: SettingType
    default: str
    description: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """What a value may be, in words: ``an integer from 1 to 20``."""
        if self.type is SettingType.BOOL:
            return "true or false"
        if self.type is SettingType.CHOICE:
            return "one of " + ", ".join(self.choices)
        if self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"an integer of at least {self.minimum}"
        return "an integer"


def _int(
    name: str, default: int, description: str, lo: int = 0, hi: int | None = None
) -> SettingDefinition:
    return SettingDefinition(
        name=name,
        type=SettingType.INT,
        default=str(default),
        description=description,
        minimum=lo,
        maximum=hi,
    )


def _bool(name: str, default: bool, description: str) -> SettingDefinition:
    return SettingDefinition(
        name=name,
        type=SettingType.BOOL,
        default="true" if default else "false",
        description=description,
    )


_DEFINITIONS = (
    _int("default-replica-count", 3, "Replicas of a volume created without a count.", 1, 20),
    _bool(
        "replica-soft-anti-affinity",
        False,
        "Allow two replicas of a volume on one node when no other node fits.",
    ),
    _bool(
        "replica-zone-soft-anti-affinity",
        True,
        "Allow two replicas of a volume in one zone when no other zone fits.",
    ),
    _bool(
        "replica-disk-soft-anti-affinity",
        True,
        "Allow two replicas of a volume on one disk when no other disk fits.",
    ),
    _int(
        "storage-over-provisioning-percentage",
        100,
        "Volume sizes scheduled on a disk may reach this percentage of its usable space.",
    ),
    _int(
        "storage-minimal-available-percentage",
        25,
        "A disk with less free space than this percentage takes no new replica.",
        0,
        100,
    ),
    _int(
        "replica-replenishment-wait-interval",
        600,
        "Seconds to wait for a failed replica to come back before a new one is made elsewhere.",
    ),
    _bool("auto-salvage", True, "Salvage a volume whose replicas all failed."),
    _int(
        "engine-replica-timeout",
        8,
        "Seconds an engine waits for a replica's answer before marking it ERR.",
        8,
        30,
    ),
    _int(
        "concurrent-replica-rebuild-per-node-limit",
        5,
        "Rebuilds that may run at once on one node (0: none start).",
    ),
    SettingDefinition(
        name="default-data-locality",
        type=SettingType.CHOICE,
        default="disabled",
        description="Data locality of a volume created without one.",
        choices=("disabled", "best-effort", "strict-local"),
    ),
)

#: Every setting lhtrio knows, by name.
SETTINGS: Mapping[str, SettingDefinition] = {d.name: d for d in _DEFINITIONS}

_DECIMAL = re.compile(r"-?[0-9]{1,18}")


def _definition(name: str) -> SettingDefinition:
    try:
        return SETTINGS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"unknown setting {name!r}; the settings are {', '.join(sorted(SETTINGS))}"
        ) from None


def parse(name: str, text: object) -> SettingValue:
    """The value of setting ``name`` that ``text`` spells; InvalidArgumentError if ``name`` is
    no setting or ``text`` is not one of its values."""
    definition = _definition(name)

    def refuse() -> InvalidArgumentError:
        return InvalidArgumentError(
            f"invalid value {text!r} for setting {name}: it must be {definition.allowed()}"
        )

    if not isinstance(text, str):
        raise refuse()
    if definition.type is SettingType.BOOL:
        if text not in ("true", "false"):
            raise refuse()
        return text == "true"
    if definition.type is SettingType.CHOICE:
        if text not in definition.choices:
            raise refuse()
        return text
    if not _DECIMAL.fullmatch(text):
        raise refuse()
    value = int(text)
    if definition.minimum is not None and value < definition.minimum:
        raise refuse()
    if definition.maximum is not None and value > definition.maximum:
        raise refuse()
    return value


def parse_int(name: str, text: object) -> int:
    value = parse(name, text)
    if SETTINGS[name].type is not SettingType.INT or isinstance(value, bool):
        raise TypeError(f"setting {name} is not an integer")
    assert isinstance(value, int)
    return value


def parse_bool(name: str, text: object) -> bool:
    value = parse(name, text)
    if not isinstance(value, bool):
        raise TypeError(f"setting {name} is not a boolean")
    return value


def parse_str(name: str, text: object) -> str:
    value = parse(name, text)
    if not isinstance(value, str):
        raise TypeError(f"setting {name} is not a choice")
    return value


def value_of(name: str, stored: Mapping[str, str]) -> SettingValue:
    """Setting ``name``'s value: ``stored[name]`` (name -> text, as held in the store) if present,
    else its default."""
    text = stored.get(name)
    return parse(name, _definition(name).default if text is None else text)


@attrs.frozen(kw_only=True)
class SettingSpec:
    value: str


@attrs.frozen(kw_only=True)
class SettingStatus:
    """``applied``: the components that read the setting use its current value."""

    applied: bool = False


@attrs.frozen(kw_only=True)
class Setting:
    """Named as its definition (``default-replica-count``); its value checked by :func:`parse`."""

    KIND: ClassVar[str] = "Setting"

    meta: ObjectMeta
    spec: SettingSpec
    status: SettingStatus = attrs.field(factory=SettingStatus)
