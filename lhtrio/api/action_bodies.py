"""The bodies of the volume actions (``POST /v1/volumes/NAME?action=...``), checked (sans-I/O).

Longhorn's action names and field names: ``attach {"hostId", "attachmentID"?}``, ``detach
{"hostId"?, "attachmentID"?, "forceDetach"?}``, ``snapshotCreate {"name"?, "labels"?}``,
``snapshotDelete|snapshotRevert {"name"}``, ``snapshotList|snapshotPurge {}``, ``expand
{"size"}``, ``updateReplicaCount {"replicaCount"}``, ``salvage {"names"}``. The rules of
:mod:`lhtrio.api.bodies` hold: unknown fields and wrong JSON types are refused, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from lhtrio.api.bodies import (
    checked_field,
    json_type,
    only_fields,
    replica_count_field,
    size_field,
    string_field,
)
from lhtrio.api.problems import FieldError
from lhtrio.manager.tickets import API_TICKET
from lhtrio.models.names import (
    validate_instance_name,
    validate_labels,
    validate_snapshot_name,
)

__all__ = [
    "Attach",
    "Detach",
    "SnapshotCreate",
    "parse_attach",
    "parse_detach",
    "parse_expand",
    "parse_no_fields",
    "parse_replica_count",
    "parse_salvage",
    "parse_snapshot_create",
    "parse_snapshot_name",
]


def _attachment_id(body: Mapping[str, object]) -> str:
    ticket = string_field(body, "attachmentID", required=False)
    if ticket is None:
        return API_TICKET
    checked_field("attachmentID", validate_instance_name, ticket, what="attachment")
    return ticket


def _node(body: Mapping[str, object], *, required: bool) -> str | None:
    node = string_field(body, "hostId", required=required)
    if node is not None:
        checked_field("hostId", validate_instance_name, node, what="node")
    return node


def _bool(body: Mapping[str, object], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise FieldError(field, f"{field} must be true or false, not {json_type(value)}")
    return value


@attrs.frozen(kw_only=True)
class Attach:
    node: str
    ticket: str


def parse_attach(body: Mapping[str, object]) -> Attach:
    """``{"hostId": NODE, "attachmentID"?: ID}``: ticket ID wants the volume on NODE."""
    only_fields(body, ("hostId", "attachmentID"), "an attach action")
    node = _node(body, required=True)
    assert node is not None
    return Attach(node=node, ticket=_attachment_id(body))


@attrs.frozen(kw_only=True)
class Detach:
    """``node``: a conflict if the ticket wants another node (None: wherever); ``every``: remove
    every ticket (``forceDetach``)."""

    node: str | None
    ticket: str
    every: bool


def parse_detach(body: Mapping[str, object]) -> Detach:
    """``{}``, ``{"hostId"?, "attachmentID"?, "forceDetach"?}``."""
    only_fields(body, ("hostId", "attachmentID", "forceDetach"), "a detach action")
    return Detach(
        node=_node(body, required=False),
        ticket=_attachment_id(body),
        every=_bool(body, "forceDetach"),
    )


@attrs.frozen(kw_only=True)
class SnapshotCreate:
    """``name`` empty: the engine names the snapshot."""

    name: str
    labels: dict[str, str]


def parse_snapshot_create(body: Mapping[str, object]) -> SnapshotCreate:
    """``{"name"?: NAME, "labels"?: {KEY: VALUE}}``."""
    only_fields(body, ("name", "labels"), "a snapshotCreate action")
    name = string_field(body, "name", required=False) or ""
    if name:
        checked_field("name", validate_snapshot_name, name)
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise FieldError("labels", "labels must be an object of strings to strings")
    checked_field("labels", validate_labels, labels)
    return SnapshotCreate(name=name, labels=dict(labels))


def parse_snapshot_name(body: Mapping[str, object], action: str) -> str:
    """``{"name": SNAPSHOT}``."""
    only_fields(body, ("name",), f"a {action} action")
    name = string_field(body, "name", required=True)
    checked_field("name", validate_snapshot_name, name)
    assert name is not None
    return name


def parse_no_fields(body: Mapping[str, object], action: str) -> None:
    """``{}`` (or no body)."""
    only_fields(body, (), f"a {action} action")


def parse_expand(body: Mapping[str, object]) -> int:
    """``{"size": BYTES}``: the new size, as a volume's size is given."""
    only_fields(body, ("size",), "an expand action")
    if "size" not in body:
        raise FieldError("size", "the field 'size' is required (bytes, e.g. \"20Gi\")")
    return size_field(body["size"])


def parse_replica_count(body: Mapping[str, object]) -> int:
    """``{"replicaCount": N}``."""
    only_fields(body, ("replicaCount",), "an updateReplicaCount action")
    if "replicaCount" not in body:
        raise FieldError("replicaCount", "the field 'replicaCount' is required")
    return replica_count_field("replicaCount", body["replicaCount"])


def parse_salvage(body: Mapping[str, object]) -> list[str]:
    """``{"names": [REPLICA, ...]}``: the failed replicas to salvage from."""
    only_fields(body, ("names",), "a salvage action")
    names = body.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FieldError("names", "names must be a non-empty array of replica names")
    for name in names:
        checked_field("names", validate_instance_name, name, what="replica")
    return list(dict.fromkeys(names))
