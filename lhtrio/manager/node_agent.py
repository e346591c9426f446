"""A node in the control plane: its ``Node`` object and its heartbeat.

Run by every ``lhtrio node`` given a store (``--store``): :func:`run_node_agent` registers the
node (creates its ``Node``, or on a restart keeps the operator's settings of it: scheduling,
tags, reserved space), records what its disks hold every :data:`REFRESH` seconds (their space,
and the replicas placed on them, for operators; the scheduler counts the replicas afresh), and
keeps its lease (:mod:`lhtrio.manager.lease`). The disks are given by the node process as plain
facts (:class:`DiskFacts`): the manager does not reach into the instance supervisor.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs
import trio

from lhtrio.errors import LhtrioError
from lhtrio.manager.lease import keep_lease
from lhtrio.manager.objects import Objects
from lhtrio.manager.placement import scheduled_replicas
from lhtrio.manager.store.api import Store
from lhtrio.models.cluster import Node, ObjectMeta, Replica
from lhtrio.models.cluster.meta import set_condition
from lhtrio.models.cluster.node import CONDITION_READY, DiskSpec, DiskStatus, NodeSpec

__all__ = ["REFRESH", "DiskFacts", "register", "run_node_agent"]

logger = logging.getLogger(__name__)

#: How often a node records its disks' space (seconds).
REFRESH: Final = 30.0


@attrs.frozen(kw_only=True)
class DiskFacts:
    """A disk as the node process sees it now (sizes in bytes)."""

    name: str
    uuid: str
    path: str
    maximum: int
    available: int


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _with_disks(
    node: Node,
    disks: Sequence[DiskFacts],
    now: dt.datetime,
    placed: Mapping[str, dict[str, int]],
) -> Node:
    """``node`` with every disk of ``disks`` in its spec (new ones with the defaults; the
    operator's settings of known ones kept) and its status (space, Ready, the replicas placed on
    it: ``placed``, by disk UUID)."""
    specs = dict(node.spec.disks)
    statuses = dict(node.status.disk_status)
    for disk in disks:
        specs.setdefault(disk.name, DiskSpec(path=disk.path))
        old = statuses.get(disk.name, DiskStatus())
        statuses[disk.name] = attrs.evolve(
            old,
            storage_maximum=disk.maximum,
            storage_available=disk.available,
            disk_uuid=disk.uuid,
            scheduled_replica=dict(placed.get(disk.uuid, {})),
            storage_scheduled=sum(placed.get(disk.uuid, {}).values()),
            conditions=set_condition(old.conditions, CONDITION_READY, True, now=now),
        )
    conditions = set_condition(node.status.conditions, CONDITION_READY, True, now=now)
    return attrs.evolve(
        node,
        spec=attrs.evolve(node.spec, disks=specs),
        status=attrs.evolve(node.status, disk_status=statuses, conditions=conditions),
    )


async def register(
    objects: Objects,
    name: str,
    disks: Sequence[DiskFacts],
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
) -> Node:
    """Create or refresh node ``name``'s ``Node``; the object as stored."""
    fresh = Node(meta=ObjectMeta(name=name), spec=NodeSpec())
    replicas, _ = await objects.list(Replica)
    placed = scheduled_replicas(replicas, name)
    return await objects.upsert(Node, name, lambda n: _with_disks(n, disks, clock(), placed), fresh)


async def run_node_agent(
    store: Store,
    name: str,
    read_disks: Callable[[], Sequence[DiskFacts]],
    *,
    refresh: float = REFRESH,
    clock: Callable[[], dt.datetime] = _utcnow,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Register node ``name`` and keep it registered and alive until cancelled; started once the
    node is in the store with a valid lease."""
    objects = Objects(store)
    await register(objects, name, await trio.to_thread.run_sync(read_disks), clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(keep_lease, store, name, clock=clock))
        task_status.started()
        while True:
            await trio.sleep(refresh)
            try:
                disks = await trio.to_thread.run_sync(read_disks)
                await register(objects, name, disks, clock=clock)
            except (LhtrioError, OSError) as exc:
                logger.warning("node %s could not record its disks: %s", name, exc)
