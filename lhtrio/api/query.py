"""What a request says besides its body: its ``If-Match`` version and its list filters (sans-I/O).

* ``If-Match: "42"`` (or ``42``; ``""`` for an object not stored yet, such as a setting still at
  its default): the change applies only if the object is at that ``resourceVersion``
  (:mod:`lhtrio.manager.versions`); ``*`` is no condition. A weak tag (``W/"42"``) or a list of
  versions is refused: a change is made on condition of one version.
* Collection filters: ``labelSelector`` (:mod:`lhtrio.models.selector`), a state or robustness
  (an enum's value), a volume's or node's name, an event's object (its kind and name). A filter
  that is given but wrong is a 400 naming the parameter; one that matches nothing gives an empty
  list. :func:`collection_filter` is what a collection keeps, for its list and its watch alike.

Every refusal is a :class:`~lhtrio.api.problems.FieldError` naming the parameter (``If-Match``,
``labelSelector``...).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from lhtrio.api.problems import FieldError
from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster import ClusterObject, Engine, Event, Replica, Volume
from lhtrio.models.cluster.volume import Robustness, VolumeState
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.models.selector import Selector, parse_selector

__all__ = [
    "IF_MATCH",
    "Keep",
    "collection_filter",
    "enum_filter",
    "event_filters",
    "label_filter",
    "name_filter",
    "parse_if_match",
]

IF_MATCH: Final = "If-Match"
_VERSION: Final = re.compile(r"0|[1-9][0-9]{0,18}")
_KIND: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,62}")

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


def event_filters(args: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``?kind=`` and ``?name=`` of the events asked for (the object they are about)."""
    kind, name = args.get("kind"), args.get("name")
    if kind is not None and not _KIND.fullmatch(kind):
        raise FieldError("kind", f"kind {kind!r} is not a kind (Volume, Node, Replica, ...)")
    if name is not None:
        try:
            validate_instance_name(name, what="object")
        except InvalidArgumentError as exc:
            raise FieldError("name", exc.message) from None
    return kind, name


#: What a collection keeps of its objects.
Keep = Callable[[ClusterObject], bool]


def _volume_filters(args: Mapping[str, str]) -> list[Keep]:
    state = enum_filter(args, "state", VolumeState)
    robustness = enum_filter(args, "robustness", Robustness)
    tests: list[Keep] = []
    if state is not None:
        tests.append(lambda o: isinstance(o, Volume) and o.status.state is state)
    if robustness is not None:
        tests.append(lambda o: isinstance(o, Volume) and o.status.robustness is robustness)
    return tests


def _placed_filters(args: Mapping[str, str]) -> list[Keep]:
    volume = name_filter(args, "volume", "volume")
    node = name_filter(args, "node", "node")
    tests: list[Keep] = []
    if volume is not None:
        tests.append(lambda o: isinstance(o, Replica | Engine) and o.spec.volume_name == volume)
    if node is not None:
        tests.append(lambda o: isinstance(o, Replica | Engine) and o.spec.node_id == node)
    return tests


def _event_filters(args: Mapping[str, str]) -> list[Keep]:
    kind, name = event_filters(args)
    tests: list[Keep] = []
    if kind is not None:
        tests.append(lambda o: isinstance(o, Event) and o.involved_object.kind == kind)
    if name is not None:
        tests.append(lambda o: isinstance(o, Event) and o.involved_object.name == name)
    return tests


#: The filters of each collection besides ``labelSelector`` (which every one takes).
_FILTERS: Final[dict[str, Callable[[Mapping[str, str]], list[Keep]]]] = {
    "/v1/volumes": _volume_filters,
    "/v1/replicas": _placed_filters,
    "/v1/engines": _placed_filters,
    "/v1/events": _event_filters,
}


def collection_filter(path: str, args: Mapping[str, str]) -> Keep | None:
    """What collection ``path`` keeps by the filters ``args`` give (every one checked first:
    FieldError for a bad one); None when none is given (everything)."""
    tests: list[Keep] = []
    if "labelSelector" in args:
        selector = label_filter(args)
        tests.append(lambda o: selector.matches(o.meta.labels))
    more = _FILTERS.get(path)
    if more is not None:
        tests += more(args)
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda o: all(test(o) for test in tests)
