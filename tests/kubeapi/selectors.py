"""Label and field selectors of list and watch requests (``labelSelector``, ``fieldSelector``),
parsed once per request into a predicate on objects. A selector that does not parse, or a field
the resource does not support, is 400 BadRequest, as from the real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from tests.kubeapi.status import Obj, bad_request

__all__ = ["Selector", "field_selector", "label_selector"]

Selector = Callable[[Obj], bool]

_KEY: Final = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_VALUE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_SET: Final = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*")


def _split(text: str) -> list[str]:
    """Top-level comma-separated parts (commas inside ``(...)`` belong to a set)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (part.strip() for part in parts) if p]


def _check(text: str, key: str, values: list[str]) -> None:
    if not _KEY.fullmatch(key) or any(not _VALUE.fullmatch(v) for v in values):
        raise bad_request(f"unable to parse requirement: invalid label selector {text!r}")


def _requirement(text: str, part: str) -> Selector:
    if match := _SET.fullmatch(part):
        key, op, raw = match.group(1), match.group(2), match.group(3)
        values = {v.strip() for v in raw.split(",") if v.strip()}
        _check(text, key, sorted(values))
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        key, found, value = part.partition(op)
        if found:
            key, value = key.strip(), value.strip()
            _check(text, key, [value])
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if part.startswith("!"):
        key = part[1:].strip()
        _check(text, key, [])
        return lambda labels: key not in labels
    _check(text, part, [])
    return lambda labels: part in labels


def label_selector(text: str | None) -> Selector:
    """``a=b,c!=d,e in (f,g),h notin (i),j,!k``; everything for None or ""."""
    if not text:
        return lambda _obj: True
    requirements = [_requirement(text, part) for part in _split(text)]

    def matches(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def field_selector(text: str | None, supported: tuple[str, ...]) -> Selector:
    """``metadata.name=x,metadata.namespace!=y`` over the fields ``supported``."""
    if not text:
        return lambda _obj: True
    tests: list[Selector] = []
    for part in _split(text):
        for op in ("!=", "==", "="):
            field, found, value = part.partition(op)
            if found:
                break
        else:
            raise bad_request(f"invalid field selector {text!r}: {part!r} has no operator")
        field, value = field.strip(), value.strip()
        if field not in supported:
            raise bad_request(f'field label not supported: "{field}"')
        tests.append(_field_test(field, value, negated=op == "!="))
    return lambda obj: all(test(obj) for test in tests)


def _field_test(field: str, value: str, *, negated: bool) -> Selector:
    def test(obj: Obj) -> bool:
        return (_field(obj, field) == value) != negated

    return test
