"""JSON Schemas (2020-12) of the store's documents, generated from the models by the codec's rules.

One source of truth: the schemas are read off the attrs records of :mod:`lhtrio.models.cluster`
with the store format's rules (:mod:`.codec`) — keys by :func:`~.codec.key_of` (``nodeID``,
``diskUUID``), the integers the codec writes as strings (:data:`~.codec.STRING_FIELDS`) as
decimal strings, times as RFC 3339 strings (``null`` while unset, but for the metadata's times,
which are left out), enums by value, tuples as arrays, dicts as objects, conditions with
``"True"``/``"False"``. The rules the codec's reader enforces after structuring
(:func:`lhtrio.models.cluster.validate`) are added where they are cheap to say: the patterns and
lengths of names (a volume's 63 characters, an instance's 128), node references that may be
empty, absolute paths, label values, finalizers, and the ranges of counts.

Two flavours (``written``):

* ``True`` — the documents lhtrio writes and the API answers: every key is present (required),
  no other key, times in lhtrio's one spelling (``2026-01-02T03:04:05Z``). The OpenAPI document
  uses these.
* ``False`` — what the codec reads: a key whose attribute has a default may be missing, unknown
  keys are ignored (a newer node may add a field), any RFC 3339 time with a zone. Fit for a CRD's
  ``openAPIV3Schema`` (issue 20) once inlined (``ref=None``): Kubernetes' structural schemas take
  no ``$ref``.

Pure: no I/O. :func:`document_schema` gives one kind's document; :func:`component_schemas` every
record and kind by name, for an OpenAPI ``components.schemas``.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from lhtrio.manager.store.codec import (
    API_VERSION,
    KINDS,
    OMITTED_WHEN_UNSET,
    RECORDS,
    STRING_FIELDS,
    key_of,
)
from lhtrio.models.cluster import (
    attachment,
    engine,
    lease,
    meta,
    node,
    replica,
    setting,
    volume,
)
from lhtrio.models.cluster.validate import MAX_REPLICAS, ClusterObject
from lhtrio.models.names import MAX_INSTANCE_NAME, MAX_LABELS, MAX_VOLUME_NAME

__all__ = ["NAME_PATTERN", "Ref", "component_schemas", "document_schema", "record_schema"]

Schema = dict[str, Any]
#: How a record is referred to: its name -> a schema (``{"$ref": ...}``); None inlines it.
Ref = Callable[[str], Schema] | None

#: Volume and instance names (:mod:`lhtrio.models.names`).
NAME_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
_OPTIONAL_NAME: Final = "^([A-Za-z0-9][A-Za-z0-9._-]*)?$"
_LABEL_VALUE: Final = "^(([A-Za-z0-9][A-Za-z0-9._-]*)?[A-Za-z0-9])?$"
_FINALIZER: Final = "^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(/[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$"
_DECIMAL: Final = "^(0|[1-9][0-9]{0,18})$"
_WRITTEN_TIME: Final = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"

_VOLUME_NAME: Final[Schema] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_VOLUME_NAME,
    "pattern": NAME_PATTERN,
}
_INSTANCE_NAME: Final[Schema] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_INSTANCE_NAME,
    "pattern": NAME_PATTERN,
}
_NODE_REF: Final[Schema] = {
    "type": "string",
    "maxLength": MAX_INSTANCE_NAME,
    "pattern": _OPTIONAL_NAME,
}

#: What :func:`lhtrio.models.cluster.validate` checks, said as schema keywords.
_RULES: Final[dict[tuple[type[Any], str], Schema]] = {
    (meta.ObjectMeta, "finalizers"): {
        "items": {"type": "string", "maxLength": 316, "pattern": _FINALIZER}
    },
    (meta.ObjectMeta, "labels"): {
        "maxProperties": MAX_LABELS,
        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": _LABEL_VALUE},
    },
    (volume.VolumeSpec, "number_of_replicas"): {"minimum": 1, "maximum": MAX_REPLICAS},
    (volume.VolumeSpec, "stale_replica_timeout"): {"minimum": 0},
    (volume.VolumeSpec, "node_id"): _NODE_REF,
    (volume.VolumeSpec, "disk_selector"): {"items": _INSTANCE_NAME},
    (volume.VolumeSpec, "node_selector"): {"items": _INSTANCE_NAME},
    (volume.VolumeStatus, "owner_id"): _NODE_REF,
    (volume.VolumeStatus, "current_node_id"): _NODE_REF,
    (engine.EngineSpec, "volume_name"): _VOLUME_NAME,
    (engine.EngineSpec, "node_id"): _NODE_REF,
    (engine.EngineStatus, "owner_id"): _NODE_REF,
    (replica.ReplicaSpec, "volume_name"): _VOLUME_NAME,
    (replica.ReplicaSpec, "node_id"): _NODE_REF,
    (replica.ReplicaSpec, "hard_node_affinity"): _NODE_REF,
    (replica.ReplicaSpec, "engine_name"): _NODE_REF,
    (replica.ReplicaSpec, "data_directory_name"): _NODE_REF,
    (replica.ReplicaSpec, "disk_path"): {"maxLength": 4096, "pattern": "^(/.*)?$"},
    (replica.ReplicaSpec, "rebuild_retry_count"): {"minimum": 0},
    (replica.ReplicaStatus, "owner_id"): _NODE_REF,
    (node.NodeSpec, "tags"): {"items": _INSTANCE_NAME},
    (node.DiskSpec, "path"): {"minLength": 1, "maxLength": 4096, "pattern": "^/"},
    (node.DiskSpec, "tags"): {"items": _INSTANCE_NAME},
    (node.DiskSpec, "storage_reserved"): {"minimum": 0},
    (lease.NodeLeaseSpec, "lease_duration_seconds"): {"minimum": 1},
    (attachment.VolumeAttachmentSpec, "volume"): _VOLUME_NAME,
    (attachment.AttachmentTicket, "id"): _INSTANCE_NAME,
    (attachment.AttachmentTicket, "node_id"): _NODE_REF,
    (attachment.AttachmentTicketStatus, "id"): _INSTANCE_NAME,
}

#: The name of each kind's objects.
_OBJECT_NAMES: Final[dict[str, Schema]] = {
    volume.Volume.KIND: _VOLUME_NAME,
    attachment.VolumeAttachment.KIND: _VOLUME_NAME,
    setting.Setting.KIND: {"type": "string", "enum": sorted(setting.SETTINGS)},
}


def _time(written: bool) -> Schema:
    if written:
        return {"type": "string", "format": "date-time", "pattern": _WRITTEN_TIME}
    return {"type": "string", "format": "date-time"}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def _value(kind: Any, written: bool, ref: Ref) -> Schema:
    """The schema of a value of type ``kind`` as the codec writes it."""
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        (inner,) = (a for a in args if a is not type(None))
        return _nullable(_value(inner, written, ref))
    if origin is tuple:
        return {"type": "array", "items": _value(args[0], written, ref)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _value(args[1], written, ref)}
    if kind is meta.Condition:
        return _record(kind, written, ref)
    if attrs.has(kind):
        return ref(kind.__name__) if ref is not None else _record(kind, written, ref)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return {"type": "string", "enum": [member.value for member in kind]}
    if kind is dt.datetime:
        return _time(written)
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is str:
        return {"type": "string"}
    raise TypeError(f"no JSON Schema for {kind!r}")  # pragma: no cover - a new model type


def _field(
    cls: type[Any], field: attrs.Attribute[Any], kind: Any, written: bool, ref: Ref
) -> Schema:
    if (cls, field.name) in STRING_FIELDS:
        pattern = _DECIMAL if field.name != "resource_version" else "^(|0|[1-9][0-9]{0,18})$"
        return {"type": "string", "pattern": pattern}
    if cls is meta.Condition and field.name == "status":
        return {"type": "string", "enum": ["True", "False"]}
    if (cls, field.name) in OMITTED_WHEN_UNSET:  # absent, not null, while unset
        return _time(written)
    schema = _value(kind, written, ref)
    rules = _RULES.get((cls, field.name), {})
    if "items" in rules:
        schema = {**schema, "items": {**schema["items"], **rules["items"]}}
        rules = {k: v for k, v in rules.items() if k != "items"}
    return {**schema, **rules}


def _record(cls: type[Any], written: bool, ref: Ref) -> Schema:
    hints = typing.get_type_hints(cls)
    properties: Schema = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        key = key_of(field.name)
        properties[key] = _field(cls, field, hints[field.name], written, ref)
        absent = (cls, field.name) in OMITTED_WHEN_UNSET
        if not absent and (written or field.default is attrs.NOTHING):
            required.append(key)
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if written:
        schema["additionalProperties"] = False
    return schema


def record_schema(cls: type[Any], *, written: bool = True, ref: Ref = None) -> Schema:
    """The schema of one record of the documents (``ref``: how nested records are referred to;
    None inlines them)."""
    if cls not in RECORDS:
        raise TypeError(f"{cls!r} is not a record of the store's documents")
    return _record(cls, written, ref)


def document_schema(kind: type[ClusterObject], *, written: bool = True, ref: Ref = None) -> Schema:
    """The schema of a ``kind`` document: ``apiVersion`` and ``kind`` fixed, the metadata with
    the kind's name rule, the spec and the status."""
    schema = _record(kind, written, ref)
    metadata = _record(meta.ObjectMeta, written, ref)
    name = _OBJECT_NAMES.get(kind.KIND, _INSTANCE_NAME)
    metadata["properties"] = {**metadata["properties"], "name": name}
    properties = {
        "apiVersion": {"type": "string", "const": API_VERSION},
        "kind": {"type": "string", "const": kind.KIND},
        **schema["properties"],
        "metadata": metadata,
    }
    return {
        **schema,
        "title": kind.KIND,
        "properties": properties,
        "required": ["apiVersion", "kind", *schema.get("required", [])],
    }


def component_schemas(
    ref: Callable[[str], Schema], *, written: bool = True
) -> Mapping[str, Schema]:
    """Every kind's document schema and every record's, by class name (``Volume``,
    ``VolumeSpec``...), nested records referred to with ``ref``."""
    out: dict[str, Schema] = {}
    for cls in RECORDS:
        if cls in KINDS.values():
            out[cls.__name__] = document_schema(cls, written=written, ref=ref)
        elif cls is not meta.ObjectMeta and cls is not meta.Condition:
            out[cls.__name__] = _record(cls, written, ref)
    return out
