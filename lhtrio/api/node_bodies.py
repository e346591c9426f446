"""The bodies of the node actions (``POST /v1/nodes/NAME?action=...``), checked (sans-I/O).

Longhorn's ``nodeUpdate {"allowScheduling"?, "evictionRequested"?, "tags"?, "zone"?,
"region"?}`` (the fields given change, the others stay) and ``diskUpdate {"disks": {NAME: {"path",
"allowScheduling"?, "evictionRequested"?, "storageReserved"?, "tags"?}}}`` (the node's whole set
of disks: :mod:`lhtrio.manager.node_update` says what adding, keeping and leaving out a disk do).
Declared once in :data:`BODIES`, for the parser and the OpenAPI document alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from lhtrio.api import fields
from lhtrio.api.fields import Body, Values
from lhtrio.manager.node_update import DiskChange, NodeUpdate

__all__ = ["BODIES", "DISK", "parse_disk_update", "parse_node_update"]

#: One disk of a ``diskUpdate``.
DISK: Final = Body(
    what="a disk",
    fields=(
        fields.absolute_path("path"),
        fields.flag("allowScheduling", description="new replicas may be placed on the disk"),
        fields.flag("evictionRequested", description="needs allowScheduling false"),
        fields.reserved_bytes("storageReserved"),
        fields.tags("tags"),
    ),
    description="a new disk needs its path; a known disk keeps the fields left out",
)

#: ``?action=`` -> its body.
BODIES: Final[dict[str, Body]] = {
    "nodeUpdate": Body(
        what="a nodeUpdate action",
        fields=(
            fields.flag("allowScheduling", description="new replicas may be placed on the node"),
            fields.flag("evictionRequested", description="needs allowScheduling false"),
            fields.tags("tags"),
            fields.label_value("zone"),
            fields.label_value("region"),
        ),
        description="the fields given change, the others stay",
    ),
    "diskUpdate": Body(
        what="a diskUpdate action",
        fields=(fields.disk_map("disks", DISK, required=True),),
        description="the node's whole set of disks: new names are added, names left out are "
        "removed (only without replicas and with scheduling off)",
    ),
}


def parse_node_update(body: Mapping[str, object]) -> NodeUpdate:
    values = BODIES["nodeUpdate"].parse(body)
    return NodeUpdate(
        allow_scheduling=values.get("allowScheduling"),
        eviction_requested=values.get("evictionRequested"),
        tags=values.get("tags"),
        zone=values.get("zone"),
        region=values.get("region"),
    )


def _disk(values: Values) -> DiskChange:
    return DiskChange(
        path=values.get("path"),
        allow_scheduling=values.get("allowScheduling"),
        eviction_requested=values.get("evictionRequested"),
        storage_reserved=values.get("storageReserved"),
        tags=values.get("tags"),
    )


def parse_disk_update(body: Mapping[str, object]) -> dict[str, DiskChange]:
    disks: dict[str, Values] = BODIES["diskUpdate"].parse(body).get("disks")
    return {name: _disk(values) for name, values in disks.items()}
