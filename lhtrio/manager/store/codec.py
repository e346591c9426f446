"""The store format: typed control-plane objects to and from the store's documents.

One cattrs converter for every kind of :mod:`lhtrio.models.cluster` (the objects themselves know
nothing of it). A document is a JSON-compatible map shaped like a Kubernetes object, so that the
Kubernetes and etcd stores of the next issues hold the same thing the embedded one does::

    {"apiVersion": "lhtrio.io/v1", "kind": "Volume",
     "metadata": {"name": "db-1", "resourceVersion": "42", "uid": "...", "labels": {},
                  "finalizers": [], "creationTimestamp": "2026-01-02T03:04:05Z"},
     "spec": {"size": "1073741824", "numberOfReplicas": 3, "nodeID": "", ...},
     "status": {"ownerID": "n1", "state": "attached", "robustness": "healthy", ...}}

* **Keys** are Longhorn's CRD spellings: the attribute in camelCase, with ``id``, ``uuid`` and
  ``ip`` in capitals after the first word (``nodeID``, ``ownerID``, ``currentNodeID``,
  ``diskUUID``, ``storageIP``); ``meta`` is ``metadata``, its ``created`` and
  ``deletion_requested`` are ``creationTimestamp`` and ``deletionTimestamp`` (left out while
  unset, as Kubernetes does; other unset times are ``null``).
* **Values**: enums by value, times RFC 3339 UTC (:mod:`lhtrio.models.times`), tuples as arrays,
  conditions as an array of ``{"type", "status": "True"|"False", "reason", "message",
  "lastTransitionTime"}`` (Kubernetes' spelling). ``metadata.resourceVersion`` is a string
  (``""`` until stored), and so are the byte sizes Longhorn writes as strings (its Go
  ``json:",string"`` fields): the Volume's ``size``, Engine and Replica ``volumeSize``, the
  Engine's ``currentSize``.
* **Reading** is strict about types (no coercion: ``"3"`` is not a count, ``1`` not a boolean)
  and then runs :func:`lhtrio.models.cluster.validate`, so nothing read from the store carries a
  name or a reference another component would refuse. It is lenient about presence: a missing key
  takes its attribute's default and an unknown key is ignored, so a node running newer code can
  add a field without making the document unreadable to the others. Every problem raises
  :class:`~lhtrio.errors.CorruptMetadataError` naming the kind, the object and each field.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError
from lhtrio.models.cluster import (
    attachment,
    engine,
    event,
    lease,
    meta,
    node,
    replica,
    setting,
    volume,
)
from lhtrio.models.cluster.validate import ClusterObject, validate
from lhtrio.models.times import format_time, parse_time

__all__ = [
    "API_VERSION",
    "KINDS",
    "OMITTED_WHEN_UNSET",
    "RECORDS",
    "STRING_FIELDS",
    "Document",
    "from_document",
    "key_of",
    "to_document",
]

API_VERSION: Final = "lhtrio.io/v1"

#: A document as the store keeps it (the store's own alias, spelled here too).
Document = dict[str, object]

#: The kinds, by their ``kind``.
KINDS: Final[dict[str, type[ClusterObject]]] = {
    cls.KIND: cls
    for cls in (
        volume.Volume,
        engine.Engine,
        replica.Replica,
        node.Node,
        lease.NodeLease,
        setting.Setting,
        attachment.VolumeAttachment,
        event.Event,
    )
}

K = TypeVar("K", bound=ClusterObject)
T = TypeVar("T")

#: Every record the documents hold, kinds included.
_RECORDS: Final[tuple[type[Any], ...]] = (
    meta.ObjectMeta,
    meta.Condition,
    volume.VolumeSpec,
    volume.VolumeStatus,
    engine.EngineSpec,
    engine.RebuildStatus,
    engine.EngineStatus,
    replica.ReplicaSpec,
    replica.ReplicaStatus,
    node.DiskSpec,
    node.DiskStatus,
    node.NodeSpec,
    node.NodeStatus,
    lease.NodeLeaseSpec,
    lease.NodeLeaseStatus,
    setting.SettingSpec,
    setting.SettingStatus,
    attachment.TicketParameters,
    attachment.AttachmentTicket,
    attachment.AttachmentTicketStatus,
    attachment.VolumeAttachmentSpec,
    attachment.VolumeAttachmentStatus,
    event.ObjectReference,
    *KINDS.values(),
)

_RENAMED: Final = {
    "meta": "metadata",
    "created": "creationTimestamp",
    "deletion_requested": "deletionTimestamp",
    "last_transition": "lastTransitionTime",
}
_CAPITALS: Final = {"id": "ID", "uuid": "UUID", "ip": "IP"}


def key_of(attribute: str) -> str:
    """The document key of ``attribute``: ``current_node_id`` -> ``currentNodeID``."""
    if attribute in _RENAMED:
        return _RENAMED[attribute]
    first, *rest = attribute.split("_")
    return first + "".join(_CAPITALS.get(part, part.capitalize()) for part in rest)


# -- strict scalars --------------------------------------------------------------------------------

_NAMES: Final = {str: "a string", int: "an integer", bool: "true or false"}
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,18}")


def _strict(kind: type[T]) -> Callable[[object, object], T]:
    def structure(value: object, _: object) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {_NAMES[kind]}, got {value!r}")
        return value

    return structure


def _time(value: object, _: object) -> dt.datetime:
    if type(value) is not str:
        raise TypeError(f"expected an RFC 3339 time, got {value!r}")
    try:
        return parse_time(value)
    except InvalidArgumentError as exc:
        raise ValueError(exc.message) from None


def _decimal_string(value: object, _: object) -> int:
    """A byte count written as a string (``"1073741824"``)."""
    if type(value) is not str or not _DECIMAL.fullmatch(value):
        raise TypeError(f"expected a decimal number as a string, got {value!r}")
    return int(value)


def _resource_version(value: object, _: object) -> int:
    return 0 if value == "" else _decimal_string(value, None)


def _condition_status(value: object, _: object) -> bool:
    if value not in ("True", "False"):
        raise TypeError(f'expected "True" or "False", got {value!r}')
    return value == "True"


def _enum_hook(kind: type[enum.Enum]) -> Callable[[object, object], enum.Enum]:
    values = [member.value for member in kind]

    def structure(value: object, _: object) -> enum.Enum:
        if type(value) is not str or value not in values:
            raise ValueError(f"expected one of {', '.join(map(repr, values))}, got {value!r}")
        return kind(value)

    return structure


def _is_dict(kind: object) -> bool:
    return getattr(kind, "__origin__", None) is dict


def _is_tuple(kind: object) -> bool:
    return getattr(kind, "__origin__", None) is tuple


def _items(
    kind: Any, pairs: Iterable[tuple[int | str, object]], build: Callable[[object], object]
) -> list[object]:
    """``build`` of each value, every failure noted with its index or key (the error's path)."""
    out: list[object] = []
    errors: list[Exception] = []
    for index, value in pairs:
        try:
            out.append(build(value))
        except Exception as exc:
            exc.__notes__ = [*getattr(exc, "__notes__", []), _note(index)]
            errors.append(exc)
    if errors:
        raise cattrs.IterableValidationError(f"while structuring {kind}", errors, kind)
    return out


def _note(index: int | str) -> cattrs.IterableValidationNote:
    return cattrs.IterableValidationNote(f"structuring item {index!r}", index, object)


def _dict_hook(conv: cattrs.Converter) -> Callable[[Any], Callable[[object, object], object]]:
    def factory(kind: Any) -> Callable[[object, object], object]:
        key_type, value_type = kind.__args__

        def structure(value: object, _: object) -> dict[Any, Any]:
            if type(value) is not dict:
                raise TypeError(f"expected an object, got {value!r}")
            keys = _items(kind, [(k, k) for k in value], lambda k: conv.structure(k, key_type))
            values = _items(kind, list(value.items()), lambda v: conv.structure(v, value_type))
            return dict(zip(keys, values, strict=True))

        return structure

    return factory


def _tuple_hook(conv: cattrs.Converter) -> Callable[[Any], Callable[[object, object], object]]:
    def factory(kind: Any) -> Callable[[object, object], object]:
        item = kind.__args__[0]

        def structure(value: object, _: object) -> tuple[Any, ...]:
            if type(value) is not list:
                raise TypeError(f"expected an array, got {value!r}")
            return tuple(_items(kind, enumerate(value), lambda v: conv.structure(v, item)))

        return structure

    return factory


# -- the converter ---------------------------------------------------------------------------------

#: Attributes written as strings, with their structure hook.
_AS_STRING: Final[dict[tuple[type[Any], str], Callable[[object, object], int]]] = {
    (meta.ObjectMeta, "resource_version"): _resource_version,
    (volume.VolumeSpec, "size"): _decimal_string,
    (engine.EngineSpec, "volume_size"): _decimal_string,
    (engine.EngineStatus, "current_size"): _decimal_string,
    (replica.ReplicaSpec, "volume_size"): _decimal_string,
}


#: The records the documents hold, kinds included (what :mod:`.schema` describes).
RECORDS: Final = _RECORDS
#: ``(record, attribute)`` of the integers written as decimal strings.
STRING_FIELDS: Final = frozenset(_AS_STRING)
#: ``(record, attribute)`` of the keys left out while unset (``None``).
OMITTED_WHEN_UNSET: Final = frozenset(
    {(meta.ObjectMeta, "created"), (meta.ObjectMeta, "deletion_requested")}
)


def _version_text(version: int) -> str:
    return str(version) if version else ""


def _overrides(conv: cattrs.Converter, cls: type[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in attrs.fields(cls):
        hooks: dict[str, Any] = {}
        if (cls, field.name) in _AS_STRING:
            hooks = {
                "struct_hook": _AS_STRING[cls, field.name],
                "unstruct_hook": _version_text if field.name == "resource_version" else str,
            }
        elif cls is meta.Condition and field.name == "status":
            hooks = {
                "struct_hook": _condition_status,
                "unstruct_hook": lambda status: "True" if status else "False",
            }
        omit = (cls, field.name) in OMITTED_WHEN_UNSET
        out[field.name] = override(rename=key_of(field.name), omit_if_default=omit, **hooks)
    return out


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _strict(kind))
    conv.register_structure_hook(dt.datetime, _time)
    conv.register_unstructure_hook(dt.datetime, format_time)
    conv.register_structure_hook_factory(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_hook
    )
    conv.register_unstructure_hook_factory(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda _: lambda e: e.value
    )
    conv.register_structure_hook_factory(_is_dict, _dict_hook(conv))
    conv.register_structure_hook_factory(_is_tuple, _tuple_hook(conv))
    conv.register_unstructure_hook_factory(
        _is_tuple, lambda _: lambda value: [conv.unstructure(v) for v in value]
    )
    for cls in _RECORDS:
        renames = _overrides(conv, cls)
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **renames))
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **renames))
    return conv


converter: Final = _make_converter()
"""The store format's converter (:func:`to_document` and :func:`from_document` wrap it)."""


def to_document(obj: ClusterObject) -> Document:
    """``obj`` as the store keeps it (a new map each call)."""
    body = converter.unstructure(obj, type(obj))
    return {"apiVersion": API_VERSION, "kind": obj.KIND, **body}


def _name_in(document: Mapping[str, object]) -> str:
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        return repr(metadata["name"])
    return "(no name)"


def _say(exc: BaseException, _: object) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


#: A path step of cattrs' error paths: ``.attribute``, or an index or a key in brackets.
_PATH: Final = re.compile(r"""\.(\w+)|(\[(?:\d+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\])""")


def _where(line: str) -> str:
    """``"problem @ $.spec.number_of_replicas"`` -> ``"field spec.numberOfReplicas: problem"``."""
    problem, _, path = line.rpartition(" @ $")
    if not problem:
        return line
    keys = _PATH.sub(lambda m: m.group(0) if m.group(2) else "." + key_of(m.group(1)), path)
    keys = keys.lstrip(".")
    return f"field {keys}: {problem}" if keys else problem


def from_document(kind_class: type[K], document: object) -> K:
    """The ``kind_class`` object ``document`` holds; CorruptMetadataError naming the kind, the
    object and each field that is wrong if it is not one."""
    kind = kind_class.KIND
    if not isinstance(document, dict):
        raise CorruptMetadataError(
            f"a stored {kind} is not a JSON object: {type(document).__name__}"
        )
    name = _name_in(document)
    if document.get("apiVersion") != API_VERSION or document.get("kind") != kind:
        raise CorruptMetadataError(
            f"{kind} {name}: the document is a {document.get('kind')!r} of "
            f"{document.get('apiVersion')!r}, not a {kind} of {API_VERSION!r}"
        )
    try:
        obj = converter.structure(document, kind_class)
    except Exception as exc:
        problems = [_where(line) for line in cattrs.transform_error(exc, "$", _say)]
        raise CorruptMetadataError(f"{kind} {name}: {'; '.join(problems)}") from None
    try:
        validate(obj)
    except InvalidArgumentError as exc:
        named = exc.message if kind in exc.message else f"{kind} {name}: {exc.message}"
        raise CorruptMetadataError(f"a stored {named}") from None
    return obj
