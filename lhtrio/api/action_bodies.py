"""The bodies of the volume actions (``POST /v1/volumes/NAME?action=...``), checked (sans-I/O).

Longhorn's action names and field names: ``attach {"hostId", "attachmentID"?}``, ``detach
{"hostId"?, "attachmentID"?, "forceDetach"?}``, ``snapshotCreate {"name"?, "labels"?}``,
``snapshotDelete|snapshotRevert {"name"}``, ``snapshotList|snapshotPurge {}``, ``expand
{"size"}``, ``updateReplicaCount {"replicaCount"}``, ``salvage {"names"}``,
``updateDataLocality {"dataLocality"}``; and lhtrio's ``updateLabels {"labels"}`` (Longhorn keeps
a volume's labels on its Kubernetes object). Each body is declared once in :data:`BODIES` (the
parser and the OpenAPI document read the same table); the rules of :mod:`lhtrio.api.fields`
hold: unknown fields and wrong JSON types are refused, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from lhtrio.api import fields
from lhtrio.api.fields import Body
from lhtrio.manager.tickets import API_TICKET
from lhtrio.models.cluster.volume import DataLocality

__all__ = [
    "BODIES",
    "Attach",
    "Detach",
    "SnapshotCreate",
    "parse_attach",
    "parse_data_locality",
    "parse_detach",
    "parse_expand",
    "parse_labels",
    "parse_no_fields",
    "parse_replica_count",
    "parse_salvage",
    "parse_snapshot_create",
    "parse_snapshot_name",
]

_TICKET = fields.name(
    "attachmentID", "attachment", description=f"the ticket's id (default {API_TICKET!r})"
)

#: ``?action=`` -> its body, in the order the document lists them.
BODIES: Final[dict[str, Body]] = {
    "attach": Body(
        what="an attach action",
        fields=(
            fields.name("hostId", "node", required=True, description="the node to attach to"),
            _TICKET,
        ),
    ),
    "detach": Body(
        what="a detach action",
        fields=(
            fields.name("hostId", "node", description="409 if the ticket wants another node"),
            _TICKET,
            fields.flag("forceDetach", description="remove every ticket of the volume"),
        ),
        optional=True,
    ),
    "snapshotCreate": Body(
        what="a snapshotCreate action",
        fields=(fields.snapshot_name("name"), fields.labels("labels")),
        optional=True,
        description="without a name the engine names the snapshot",
    ),
    "snapshotList": Body(what="a snapshotList action", fields=(), optional=True),
    "snapshotDelete": Body(
        what="a snapshotDelete action", fields=(fields.snapshot_name("name", required=True),)
    ),
    "snapshotRevert": Body(
        what="a snapshotRevert action", fields=(fields.snapshot_name("name", required=True),)
    ),
    "snapshotPurge": Body(what="a snapshotPurge action", fields=(), optional=True),
    "expand": Body(what="an expand action", fields=(fields.size("size", required=True),)),
    "updateReplicaCount": Body(
        what="an updateReplicaCount action",
        fields=(fields.replica_count("replicaCount", required=True),),
    ),
    "salvage": Body(
        what="a salvage action",
        fields=(fields.names("names", "replica", required=True),),
        description="the failed replicas to salvage from",
    ),
    "updateDataLocality": Body(
        what="an updateDataLocality action",
        fields=(fields.choice("dataLocality", DataLocality, required=True),),
    ),
    "updateLabels": Body(
        what="an updateLabels action",
        fields=(fields.labels("labels", required=True),),
        description="the volume's labels: the whole set, replacing the old one",
    ),
}


@attrs.frozen(kw_only=True)
class Attach:
    node: str
    ticket: str


def parse_attach(body: Mapping[str, object]) -> Attach:
    """``{"hostId": NODE, "attachmentID"?: ID}``: ticket ID wants the volume on NODE."""
    values = BODIES["attach"].parse(body)
    return Attach(node=values.get("hostId"), ticket=values.get("attachmentID", API_TICKET))


@attrs.frozen(kw_only=True)
class Detach:
    """``node``: a conflict if the ticket wants another node (None: wherever); ``every``: remove
    every ticket (``forceDetach``)."""

    node: str | None
    ticket: str
    every: bool


def parse_detach(body: Mapping[str, object]) -> Detach:
    """``{}``, ``{"hostId"?, "attachmentID"?, "forceDetach"?}``."""
    values = BODIES["detach"].parse(body)
    return Detach(
        node=values.get("hostId"),
        ticket=values.get("attachmentID", API_TICKET),
        every=values.get("forceDetach", False),
    )


@attrs.frozen(kw_only=True)
class SnapshotCreate:
    """``name`` empty: the engine names the snapshot."""

    name: str
    labels: dict[str, str]


def parse_snapshot_create(body: Mapping[str, object]) -> SnapshotCreate:
    """``{"name"?: NAME, "labels"?: {KEY: VALUE}}``."""
    values = BODIES["snapshotCreate"].parse(body)
    return SnapshotCreate(name=values.get("name", ""), labels=values.get("labels", {}))


def parse_snapshot_name(body: Mapping[str, object], action: str) -> str:
    """``{"name": SNAPSHOT}`` (``snapshotDelete``, ``snapshotRevert``)."""
    name: str = BODIES[action].parse(body).get("name")
    return name


def parse_no_fields(body: Mapping[str, object], action: str) -> None:
    """``{}`` (or no body)."""
    BODIES[action].parse(body)


def parse_expand(body: Mapping[str, object]) -> int:
    """``{"size": BYTES}``: the new size, as a volume's size is given."""
    size: int = BODIES["expand"].parse(body).get("size")
    return size


def parse_replica_count(body: Mapping[str, object]) -> int:
    """``{"replicaCount": N}``."""
    count: int = BODIES["updateReplicaCount"].parse(body).get("replicaCount")
    return count


def parse_salvage(body: Mapping[str, object]) -> list[str]:
    """``{"names": [REPLICA, ...]}``: the failed replicas to salvage from."""
    names: list[str] = BODIES["salvage"].parse(body).get("names")
    return names


def parse_data_locality(body: Mapping[str, object]) -> DataLocality:
    """``{"dataLocality": "disabled"|"best-effort"|"strict-local"}``."""
    locality: DataLocality = BODIES["updateDataLocality"].parse(body).get("dataLocality")
    return locality


def parse_labels(body: Mapping[str, object]) -> dict[str, str]:
    """``{"labels": {KEY: VALUE}}``: the volume's whole set of labels."""
    labels: dict[str, str] = BODIES["updateLabels"].parse(body).get("labels")
    return labels
