"""Placing a volume's missing replicas, pure: from the store's objects to new ``Replica`` objects.

The volume reconciler's first step for a volume that has fewer usable replicas than it asks for:
build the scheduler's views of the nodes (:func:`node_views`: a node is ready while its lease is
valid and its Ready condition holds; a disk is schedulable unless its Schedulable condition says
otherwise), then place one replica at a time (:func:`place_replicas`), each placement counting
against its disk before the next (``storage_scheduled``), as Longhorn's scheduler does within one
cycle. The result is the new replicas and, if not all fit, why not (:class:`~lhtrio.manager.
scheduler.Unschedulable`, the reason the volume's ``Scheduled`` condition shows).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import attrs

from lhtrio.manager.scheduler import (
    DiskView,
    NodeView,
    Placement,
    Policy,
    ReplicaRequest,
    Unschedulable,
    schedule,
)
from lhtrio.models.cluster import Node, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.meta import Condition, get_condition
from lhtrio.models.cluster.node import CONDITION_READY, CONDITION_SCHEDULABLE
from lhtrio.models.cluster.replica import ReplicaSpec, replica_name

__all__ = ["REPLICA_DATA_FINALIZER", "Placed", "node_views", "place_replicas", "scheduled_replicas"]

#: Held by every replica until its node has stopped it and removed its data.
REPLICA_DATA_FINALIZER = "lhtrio.io/replica-data"


def _holds(conditions: tuple[Condition, ...], kind: str, default: bool) -> bool:
    condition = get_condition(conditions, kind)
    return default if condition is None else condition.status


#: Node -> disk UUID -> the bytes of the replicas placed there (the sum of their volume sizes).
Placed = Mapping[str, Mapping[str, int]]


def scheduled_replicas(replicas: Sequence[Replica], node: str) -> dict[str, dict[str, int]]:
    """Disk UUID -> {replica name: volume size} of the replicas placed on ``node``'s disks,
    failed ones included (their data holds the space until they are deleted)."""
    placed: dict[str, dict[str, int]] = {}
    for replica in replicas:
        if replica.spec.node_id == node and replica.spec.disk_id:
            placed.setdefault(replica.spec.disk_id, {})[replica.meta.name] = (
                replica.spec.volume_size
            )
    return placed


def node_views(
    nodes: Sequence[Node],
    up: frozenset[str],
    replicas: Sequence[Replica] | None = None,
    *,
    placed: Placed | None = None,
) -> list[NodeView]:
    """The scheduler's view of ``nodes``; those not in ``up`` (lease expired) are not ready.
    The space scheduled on each disk is the sizes of ``replicas`` (every replica) placed there,
    or as ``placed`` (an index of them: :class:`lhtrio.manager.space.ScheduledSpace`) says, or
    else what the nodes last recorded."""
    views = []
    for node in nodes:
        on_node: Mapping[str, int] | None = None
        if replicas is not None:
            held = scheduled_replicas(replicas, node.meta.name)
            on_node = {disk: sum(sizes.values()) for disk, sizes in held.items()}
        elif placed is not None:
            on_node = placed.get(node.meta.name, {})
        disks = []
        for name, spec in sorted(node.spec.disks.items()):
            status = node.status.disk_status.get(name)
            if status is None:
                continue  # never measured: nothing is known of its space
            disks.append(
                DiskView(
                    # a replica's diskID is its disk's UUID: what its node finds the disk by,
                    # whatever name the operator gave the disk in the Node's spec
                    name=status.disk_uuid or name,
                    allow_scheduling=spec.allow_scheduling,
                    schedulable=_holds(status.conditions, CONDITION_SCHEDULABLE, True)
                    and _holds(status.conditions, CONDITION_READY, True),
                    eviction_requested=spec.eviction_requested,
                    tags=frozenset(spec.tags),
                    storage_available=status.storage_available,
                    storage_maximum=status.storage_maximum,
                    storage_reserved=spec.storage_reserved,
                    storage_scheduled=status.storage_scheduled
                    if on_node is None
                    else on_node.get(status.disk_uuid or name, 0),
                )
            )
        views.append(
            NodeView(
                name=node.meta.name,
                zone=node.spec.zone or node.status.zone,
                ready=node.meta.name in up
                and _holds(node.status.conditions, CONDITION_READY, False),
                allow_scheduling=node.spec.allow_scheduling,
                eviction_requested=node.spec.eviction_requested,
                tags=frozenset(node.spec.tags),
                disks=tuple(disks),
            )
        )
    return views


def _usable(replica: Replica) -> bool:
    return not replica.failed and not replica.meta.deletion_requested


def place_replicas(
    volume: Volume,
    replicas: Sequence[Replica],
    nodes: Sequence[NodeView],
    policy: Policy,
    suffixes: Iterator[str],
) -> tuple[list[Replica], Unschedulable | None]:
    """New replicas for what ``volume`` lacks (``suffixes`` gives each its 8 hex digits), and
    why the rest could not be placed (None: all were)."""
    usable = [r for r in replicas if _usable(r)]
    missing = volume.spec.number_of_replicas - len(usable)
    existing = [(r.spec.node_id, r.spec.disk_id) for r in replicas if r.spec.node_id]
    views = {n.name: n for n in nodes}
    created: list[Replica] = []
    for _ in range(max(0, missing)):
        request = ReplicaRequest(
            volume=volume.meta.name,
            size=volume.spec.size,
            actual_size=volume.status.actual_size,
            node_selector=frozenset(volume.spec.node_selector),
            disk_selector=frozenset(volume.spec.disk_selector),
            existing=tuple(existing),
        )
        placed = schedule(request, list(views.values()), policy)
        if isinstance(placed, Unschedulable):
            return created, placed
        created.append(_replica(volume, placed, next(suffixes)))
        existing.append((placed.node, placed.disk))
        views[placed.node] = _scheduled(views[placed.node], placed.disk, volume.spec.size)
    return created, None


def _scheduled(node: NodeView, disk: str, size: int) -> NodeView:
    disks = tuple(
        attrs.evolve(d, storage_scheduled=d.storage_scheduled + size) if d.name == disk else d
        for d in node.disks
    )
    return attrs.evolve(node, disks=disks)


def _replica(volume: Volume, placed: Placement, suffix: str) -> Replica:
    """A new replica on ``placed`` (its disk's path is filled in by the node that runs it)."""
    name = volume.meta.name
    return Replica(
        meta=ObjectMeta(name=replica_name(name, suffix), finalizers=(REPLICA_DATA_FINALIZER,)),
        spec=ReplicaSpec(
            volume_name=name,
            volume_size=volume.spec.size,
            node_id=placed.node,
            disk_id=placed.disk,
            data_directory_name=f"{name}-{suffix}",
        ),
    )
