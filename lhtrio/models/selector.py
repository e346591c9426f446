"""Label selectors, Kubernetes' equality-based syntax: ``app=db,tier!=cache,backup,!tmp``.

A selector is requirements joined by commas, all of which must hold: ``key=value`` (or
``key==value``), ``key!=value`` (also true when the key is absent, as in Kubernetes), ``key``
(the label exists) and ``!key`` (it does not). Keys and values follow the label rules of
:mod:`lhtrio.models.names`; spaces around the parts are ignored. Set-based requirements (``in``,
``notin``) are refused, saying so. :func:`parse_selector` raises
:class:`~lhtrio.errors.InvalidArgumentError` naming the part that is wrong. Sans-I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import attrs

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import validate_labels

__all__ = ["MAX_SELECTOR", "Operator", "Requirement", "Selector", "parse_selector"]

#: The longest selector text looked at.
MAX_SELECTOR: Final = 4096


class Operator(enum.Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    NOT_EXISTS = "!exists"


@attrs.frozen
class Requirement:
    key: str
    operator: Operator
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case Operator.EQUALS:
                return labels.get(self.key) == self.value
            case Operator.NOT_EQUALS:
                return labels.get(self.key) != self.value
            case Operator.EXISTS:
                return self.key in labels
        return self.key not in labels


@attrs.frozen
class Selector:
    """Requirements that must all hold (none: everything matches)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _requirement(part: str) -> Requirement:
    if any(c in part for c in "()") or " in " in f" {part} " or " notin " in f" {part} ":
        raise InvalidArgumentError(
            f"label selector part {part!r}: set-based requirements (in, notin) are not "
            "supported; use key=value, key!=value, key or !key"
        )
    if "!=" in part:
        key, _, value = part.partition("!=")
        operator = Operator.NOT_EQUALS
    elif "=" in part:
        key, _, value = part.partition("==" if "==" in part else "=")
        operator = Operator.EQUALS
    elif part.startswith("!"):
        key, value, operator = part[1:], "", Operator.NOT_EXISTS
    else:
        key, value, operator = part, "", Operator.EXISTS
    key, value = key.strip(), value.strip()
    try:
        validate_labels({key: value})
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"label selector part {part!r}: {exc.message}") from None
    return Requirement(key, operator, value)


def parse_selector(text: str) -> Selector:
    """The selector ``text`` spells (empty: everything matches)."""
    if len(text) > MAX_SELECTOR:
        raise InvalidArgumentError(
            f"the label selector is {len(text)} characters long, the limit is {MAX_SELECTOR}"
        )
    parts = [p.strip() for p in text.split(",")]
    if parts == [""]:
        return Selector()
    if "" in parts:
        raise InvalidArgumentError(f"label selector {text!r} has an empty part")
    return Selector(tuple(_requirement(p) for p in parts))
