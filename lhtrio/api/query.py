"""What a request says besides its body: its ``If-Match`` version and its list filters (sans-I/O).

* ``If-Match: "42"`` (or ``42``; ``""`` for an object not stored yet, such as a setting still at
  its default): the change applies only if the object is at that ``resourceVersion``
  (:mod:`lhtrio.manager.versions`); ``*`` is no condition. A weak tag (``W/"42"``) or a list of
  versions is refused: a change is made on condition of one version.
* Collection filters: ``labelSelector`` (:mod:`lhtrio.models.selector`), a state or robustness
  (an enum's value), a volume's or node's name. A filter that is given but wrong is a 400 naming
  the parameter; one that matches nothing gives an empty list.

Every refusal is a :class:`~lhtrio.api.problems.FieldError` naming the parameter (``If-Match``,
``labelSelector``...).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Final, TypeVar

from lhtrio.api.problems import FieldError
from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.models.selector import Selector, parse_selector

__all__ = ["IF_MATCH", "enum_filter", "label_filter", "name_filter", "parse_if_match"]

IF_MATCH: Final = "If-Match"
_VERSION: Final = re.compile(r"0|[1-9][0-9]{0,18}")

E = TypeVar("E", bound=enum.Enum)


def parse_if_match(header: str | None) -> int | None:
    """The version an ``If-Match`` header asks for (0: not stored), None without a condition."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return None
    quoted = len(text) >= 2 and text[0] == text[-1] == '"'
    inner = text[1:-1] if quoted else text
    if (inner == "" and quoted) or _VERSION.fullmatch(inner):
        return int(inner or 0)
    raise FieldError(
        IF_MATCH,
        f'If-Match {header!r} is not a resourceVersion: give the one read, as "42" or 42 '
        '("" for an object not stored yet)',
    )


def label_filter(args: Mapping[str, str]) -> Selector:
    """``?labelSelector=``: what the listed objects' labels must satisfy."""
    text = args.get("labelSelector")
    if text is None:
        return Selector()
    try:
        return parse_selector(text)
    except InvalidArgumentError as exc:
        raise FieldError("labelSelector", exc.message) from None


def enum_filter(args: Mapping[str, str], parameter: str, kind: type[E]) -> E | None:
    """``?PARAMETER=VALUE`` for an enum: the member, None when the parameter is not given."""
    text = args.get(parameter)
    if text is None:
        return None
    for member in kind:
        if member.value == text:
            return member
    raise FieldError(
        parameter,
        f"{parameter} {text!r} is none of {', '.join(str(m.value) for m in kind)}",
    )


def name_filter(args: Mapping[str, str], parameter: str, what: str) -> str | None:
    """``?volume=NAME`` (``what`` = ``volume``) or ``?node=NAME``: the name, checked."""
    text = args.get(parameter)
    if text is None:
        return None
    try:
        if what == "volume":
            validate_volume_name(text)
        else:
            validate_instance_name(text, what=what)
    except InvalidArgumentError as exc:
        raise FieldError(parameter, exc.message) from None
    return text
