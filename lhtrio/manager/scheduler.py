"""Replica scheduling, pure: which node and disk a new replica of a volume goes to, or why none.

Longhorn's rules (``scheduler/replica_scheduler.go``, longhorn-facts §6.4), on views of the nodes
that the manager builds from the store (:class:`NodeView`, :class:`DiskView`):

1. **Nodes** are candidates when Ready, scheduling allowed, not being evicted, and their tags
   include the volume's node selector.
2. **Disks** of those nodes are candidates when scheduling is allowed, they are Schedulable, not
   being evicted, their tags include the disk selector, and the replica *fits*:
   ``available - actual_size > maximum * minimal-available% / 100`` and
   ``size + scheduled <= (maximum - reserved) * over-provisioning% / 100``.
3. **Anti-affinity**: first the disks on nodes holding no replica of the volume, in zones holding
   none; if there are none, a soft zone anti-affinity allows unused nodes in used zones, and a
   soft node anti-affinity allows used nodes (on a disk without a replica of the volume, unless
   disk anti-affinity is soft too). Hard rules never bend.
4. **Choice**: the disk with the most storage left (``available - reserved``), ties broken by
   node and disk name, so the same inputs always give the same placement.

When nothing fits, :class:`Unschedulable` names the first rule that left no candidate and what
it saw — the reason the volume's ``Scheduled`` condition shows.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "DiskView",
    "NodeView",
    "Placement",
    "Policy",
    "Reason",
    "ReplicaRequest",
    "Unschedulable",
    "schedule",
]


@attrs.frozen(kw_only=True)
class DiskView:
    name: str
    allow_scheduling: bool = True
    schedulable: bool = True
    eviction_requested: bool = False
    tags: frozenset[str] = frozenset()
    storage_available: int
    storage_maximum: int
    storage_reserved: int = 0
    storage_scheduled: int = 0


@attrs.frozen(kw_only=True)
class NodeView:
    name: str
    zone: str = ""
    ready: bool = True
    allow_scheduling: bool = True
    eviction_requested: bool = False
    tags: frozenset[str] = frozenset()
    disks: tuple[DiskView, ...] = ()


@attrs.frozen(kw_only=True)
class Policy:
    """The settings that decide (Longhorn's names and defaults)."""

    over_provisioning_percent: int = 100  # storage-over-provisioning-percentage
    minimal_available_percent: int = 25  # storage-minimal-available-percentage
    replica_soft_anti_affinity: bool = False  # replica-soft-anti-affinity
    zone_soft_anti_affinity: bool = True  # replica-zone-soft-anti-affinity
    disk_soft_anti_affinity: bool = True  # replica-disk-soft-anti-affinity


@attrs.frozen(kw_only=True)
class ReplicaRequest:
    """A new replica of ``volume``; ``existing`` are (node, disk) of its replicas that count."""

    volume: str
    size: int
    actual_size: int = 0
    node_selector: frozenset[str] = frozenset()
    disk_selector: frozenset[str] = frozenset()
    existing: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Placement:
    node: str
    disk: str


class Reason(enum.Enum):
    NO_NODES = "no nodes"
    NODES_UNAVAILABLE = "no node is ready and schedulable"
    NODE_TAGS = "no node has the volume's node tags"
    DISKS_UNAVAILABLE = "no disk is schedulable"
    DISK_TAGS = "no disk has the volume's disk tags"
    INSUFFICIENT_STORAGE = "insufficient storage"
    ANTI_AFFINITY = "every fitting disk is on a node (or zone) that holds a replica already"


@attrs.frozen
class Unschedulable:
    reason: Reason
    message: str


def _fits(disk: DiskView, request: ReplicaRequest, policy: Policy) -> bool:
    floor = disk.storage_maximum * policy.minimal_available_percent / 100
    if not disk.storage_available - request.actual_size > floor:
        return False
    ceiling = (disk.storage_maximum - disk.storage_reserved) * policy.over_provisioning_percent
    return (request.size + disk.storage_scheduled) * 100 <= ceiling


def _left(node: NodeView, disk: DiskView) -> tuple[int, str, str]:
    return (-(disk.storage_available - disk.storage_reserved), node.name, disk.name)


def schedule(
    request: ReplicaRequest, nodes: Sequence[NodeView], policy: Policy = Policy()
) -> Placement | Unschedulable:
    """Where a new replica of ``request.volume`` goes (see the module docstring)."""
    if not nodes:
        return Unschedulable(Reason.NO_NODES, "the cluster has no nodes")
    usable = [n for n in nodes if n.ready and n.allow_scheduling and not n.eviction_requested]
    if not usable:
        return Unschedulable(
            Reason.NODES_UNAVAILABLE,
            f"none of {len(nodes)} nodes is ready with scheduling allowed and no eviction",
        )
    tagged = [n for n in usable if request.node_selector <= n.tags]
    if not tagged:
        return Unschedulable(
            Reason.NODE_TAGS, f"no usable node has the tags {sorted(request.node_selector)}"
        )
    disks = [
        (n, d)
        for n in tagged
        for d in n.disks
        if d.allow_scheduling and d.schedulable and not d.eviction_requested
    ]
    if not disks:
        return Unschedulable(Reason.DISKS_UNAVAILABLE, "no disk of the usable nodes is schedulable")
    disks = [(n, d) for n, d in disks if request.disk_selector <= d.tags]
    if not disks:
        return Unschedulable(
            Reason.DISK_TAGS, f"no schedulable disk has the tags {sorted(request.disk_selector)}"
        )
    fitting = [(n, d) for n, d in disks if _fits(d, request, policy)]
    if not fitting:
        best = max(d.storage_available - d.storage_reserved for _, d in disks)
        return Unschedulable(
            Reason.INSUFFICIENT_STORAGE,
            f"no disk fits a replica of {request.size} bytes under the over-provisioning and "
            f"minimal-available limits ({len(disks)} disks; the emptiest has {best} bytes left)",
        )
    chosen = _by_anti_affinity(request, fitting, policy)
    if not chosen:
        return Unschedulable(
            Reason.ANTI_AFFINITY,
            f"volume {request.volume} has replicas on {sorted({n for n, _ in request.existing})}"
            " and the anti-affinity rules are hard",
        )
    node, disk = min(chosen, key=lambda nd: _left(*nd))
    return Placement(node.name, disk.name)


def _by_anti_affinity(
    request: ReplicaRequest, fitting: Iterable[tuple[NodeView, DiskView]], policy: Policy
) -> list[tuple[NodeView, DiskView]]:
    fitting = list(fitting)
    used_nodes = {node for node, _ in request.existing}
    used_disks = set(request.existing)
    zone_of = {n.name: n.zone for n, _ in fitting}
    used_zones = {zone_of.get(node, "") for node in used_nodes} - {""}
    fresh = [(n, d) for n, d in fitting if n.name not in used_nodes]
    spread = [(n, d) for n, d in fresh if not n.zone or n.zone not in used_zones]
    if spread:
        return spread
    if fresh and policy.zone_soft_anti_affinity:
        return fresh
    if not policy.replica_soft_anti_affinity:
        return []
    unused_disks = [(n, d) for n, d in fitting if (n.name, d.name) not in used_disks]
    if unused_disks:
        return unused_disks
    return fitting if policy.disk_soft_anti_affinity else []
