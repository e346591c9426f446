"""The Node kind: a machine that runs an lhtrio node process, its disks, and their space.

Longhorn's Node CRD (``longhorn-facts.md`` §6.1, §6.4). The spec is the operator's: which disks
replicas may be placed on, scheduling and eviction switches, tags. There are no Kubernetes node
labels here, so the node's ``zone`` and ``region`` are in the spec too (the status repeats them,
as Longhorn's does, so that the scheduler reads one place). The status is the node's own: Ready
and Schedulable conditions, and per disk the space the scheduler's rules read.

Whether the node is alive is not here: it is its :class:`~lhtrio.models.cluster.lease.NodeLease`,
renewed every few seconds, which would otherwise rewrite (and wake every watcher of) the Node
object each time.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from lhtrio.models.cluster.meta import Condition, ObjectMeta

__all__ = [
    "CONDITION_READY",
    "CONDITION_SCHEDULABLE",
    "DiskSpec",
    "DiskStatus",
    "Node",
    "NodeSpec",
    "NodeStatus",
]

#: Node: its manager runs and renews its lease. Disk: the disk is present and readable.
CONDITION_READY: Final = "Ready"
#: Node or disk: new replicas may be placed there (false names why: disabled, disk pressure...).
CONDITION_SCHEDULABLE: Final = "Schedulable"


@attrs.frozen(kw_only=True)
class DiskSpec:
    """A directory replicas may be placed in; ``storage_reserved``: bytes kept free for others."""

    path: str
    allow_scheduling: bool = True
    eviction_requested: bool = False
    storage_reserved: int = 0
    tags: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class DiskStatus:
    """The space of a disk in bytes: ``storage_maximum`` (the file system's size),
    ``storage_available`` (free now), ``storage_scheduled`` (the sum of the sizes of the replicas
    placed on it, ``scheduled_replica``: replica name -> volume size); ``disk_uuid`` identifies
    the disk even if its path changes."""

    storage_available: int = 0
    storage_maximum: int = 0
    storage_scheduled: int = 0
    scheduled_replica: dict[str, int] = attrs.field(factory=dict)
    disk_uuid: str = ""
    conditions: tuple[Condition, ...] = ()


@attrs.frozen(kw_only=True)
class NodeSpec:
    disks: dict[str, DiskSpec] = attrs.field(factory=dict)
    allow_scheduling: bool = True
    eviction_requested: bool = False
    tags: tuple[str, ...] = ()
    zone: str = ""
    region: str = ""


@attrs.frozen(kw_only=True)
class NodeStatus:
    conditions: tuple[Condition, ...] = ()
    disk_status: dict[str, DiskStatus] = attrs.field(factory=dict)
    region: str = ""
    zone: str = ""


@attrs.frozen(kw_only=True)
class Node:
    """Named as the node process is (``lhtrio node --name``); owned by that node."""

    KIND: ClassVar[str] = "Node"

    meta: ObjectMeta
    spec: NodeSpec = attrs.field(factory=NodeSpec)
    status: NodeStatus = attrs.field(factory=NodeStatus)
