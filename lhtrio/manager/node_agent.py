"""A node in the control plane: its ``Node`` object, its disks and its heartbeat.

Run by every ``lhtrio node`` given a store (``--store``): :func:`run_node_agent` registers the
node (creates its ``Node``, or on a restart keeps the operator's settings of it: scheduling,
tags, reserved space, the disks added or removed through the API), records what its disks hold
every :data:`REFRESH` seconds (their space, and the replicas placed on them, for operators; the
scheduler counts the replicas afresh), and keeps its lease (:mod:`lhtrio.manager.lease`).

**Disks** are the Node's spec: the operator's, by name and path (Longhorn's ``diskUpdate``,
:mod:`lhtrio.manager.node_update`). The node process opens the directories the spec names
(:class:`DiskHost`: the manager does not reach into the instance supervisor) and the agent
records each one's identity (its UUID, what a replica's ``diskID`` names) and space in the
status, or, when the directory cannot be used, a false Ready condition saying why (no replica is
placed there; the node tries again at every refresh). The disks the node is started with
(``--data-dir``, ``--disk``) are added to the spec when the node starts, named by their UUIDs,
unless the spec has their path already; one removed through the API comes back only if the node
is started with it again. A change of the spec's disks is picked up at once (the agent watches
its Node), not at the next refresh.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

import attrs
import trio

from lhtrio.errors import LhtrioError, NotFoundError
from lhtrio.manager.lease import keep_lease
from lhtrio.manager.objects import Objects
from lhtrio.manager.placement import scheduled_replicas
from lhtrio.manager.runner import follow
from lhtrio.manager.selection import replicas_on
from lhtrio.manager.store.api import Document, Store
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import Node, ObjectMeta
from lhtrio.models.cluster.meta import set_condition
from lhtrio.models.cluster.node import CONDITION_READY, DiskSpec, DiskStatus, NodeSpec
from lhtrio.models.times import wall_now

__all__ = ["REFRESH", "DiskFacts", "DiskHost", "register", "run_node_agent", "with_disks"]

logger = logging.getLogger(__name__)

#: How often a node records its disks' space (seconds).
REFRESH: Final = 30.0
#: The reason of a disk's false Ready condition.
DISK_UNAVAILABLE: Final = "DiskUnavailable"


@attrs.frozen(kw_only=True)
class DiskFacts:
    """The disk at ``path`` as the node process sees it now (sizes in bytes), or ``problem``:
    why it cannot be used (then nothing else is known)."""

    path: str
    uuid: str = ""
    maximum: int = 0
    available: int = 0
    problem: str = ""


class DiskHost(Protocol):
    """The node process's disks, as the agent asks for them."""

    @property
    def given(self) -> Sequence[str]:
        """The directories the node was started with."""

    async def disks(self, paths: Sequence[str]) -> Sequence[DiskFacts]:
        """The disks at ``paths``, opening those not open yet; the node forgets its other
        disks (unless an instance still uses one)."""


def _utcnow() -> dt.datetime:
    return wall_now()


def _normal(path: str) -> str:
    return posixpath.normpath(path)


def _status(
    old: DiskStatus, facts: DiskFacts | None, placed: Mapping[str, int], now: dt.datetime
) -> DiskStatus:
    if facts is None:  # not looked at yet (added since the node read its spec)
        return old
    if facts.problem:
        return attrs.evolve(
            old,
            storage_maximum=0,
            storage_available=0,
            conditions=set_condition(
                old.conditions,
                CONDITION_READY,
                False,
                reason=DISK_UNAVAILABLE,
                message=facts.problem,
                now=now,
            ),
        )
    return attrs.evolve(
        old,
        storage_maximum=facts.maximum,
        storage_available=facts.available,
        disk_uuid=facts.uuid,
        scheduled_replica=dict(placed),
        storage_scheduled=sum(placed.values()),
        conditions=set_condition(old.conditions, CONDITION_READY, True, now=now),
    )


def with_disks(
    node: Node,
    facts: Sequence[DiskFacts],
    now: dt.datetime,
    placed: Mapping[str, dict[str, int]],
    *,
    add: Sequence[DiskFacts] = (),
) -> Node:
    """``node`` with each disk of its spec recorded from ``facts`` (matched by path), the disks
    of ``add`` added to the spec unless it has their path (named by their UUIDs), and the status
    of disks no longer in the spec dropped. ``placed``: disk UUID -> {replica: size}. Two spec
    disks that are the same disk (one UUID: a bind mount, a symlink) are refused on the second."""
    specs = dict(node.spec.disks)
    known = {_normal(d.path) for d in specs.values()}
    for disk in add:
        if disk.uuid and _normal(disk.path) not in known:
            specs.setdefault(disk.uuid, DiskSpec(path=disk.path))
            known.add(_normal(disk.path))
    by_path = {_normal(f.path): f for f in facts}
    statuses: dict[str, DiskStatus] = {}
    owners: dict[str, str] = {}
    for name, spec in sorted(specs.items()):
        seen = by_path.get(_normal(spec.path))
        if seen is not None and seen.uuid:
            owner = owners.setdefault(seen.uuid, name)
            if owner != name:
                seen = attrs.evolve(
                    seen, problem=f"{spec.path} is the same disk as disk {owner!r} ({seen.uuid})"
                )
        old = node.status.disk_status.get(name)
        if seen is None and old is None:
            continue  # never looked at: nothing to say yet
        statuses[name] = _status(
            old or DiskStatus(), seen, placed.get(seen.uuid if seen else "", {}), now
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
    host: DiskHost,
    *,
    starting: bool = False,
    clock: Callable[[], dt.datetime] = _utcnow,
) -> Node:
    """Create or refresh node ``name``'s ``Node`` (``starting``: add the disks the node was
    started with); the object as stored."""
    try:
        spec_paths = [d.path for d in (await objects.get(Node, name)).spec.disks.values()]
    except NotFoundError:
        spec_paths = []
    wanted = list(spec_paths)
    if starting:
        known = {_normal(p) for p in spec_paths}
        wanted += [p for p in host.given if _normal(p) not in known]
    facts = await host.disks(wanted)
    given = {_normal(p) for p in host.given} if starting else set()
    add = [f for f in facts if _normal(f.path) in given]
    placed = scheduled_replicas(await replicas_on(objects, name), name)
    fresh = Node(meta=ObjectMeta(name=name), spec=NodeSpec())
    return await objects.upsert(
        Node, name, lambda n: with_disks(n, facts, clock(), placed, add=add), fresh
    )


def _disks_of(document: Document) -> object:
    spec = document.get("spec")
    return spec.get("disks") if isinstance(spec, dict) else None


async def run_node_agent(
    store: Store,
    name: str,
    host: DiskHost,
    *,
    refresh: float = REFRESH,
    clock: Callable[[], dt.datetime] = _utcnow,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Register node ``name`` and keep it registered and alive until cancelled; started once the
    node is in the store with a valid lease."""
    objects = Objects(store)
    recorded: list[object] = [None]

    def disks_changed(document: Document) -> str:
        metadata = document.get("metadata")
        mine = isinstance(metadata, dict) and metadata.get("name") == name
        return name if mine and _disks_of(document) != recorded[0] else ""

    send, receive = trio.open_memory_channel[str](math.inf)
    async with trio.open_nursery() as nursery:
        # the lease first: a node whose Node says Ready is never one whose lease ran out, which
        # the other nodes would mark not ready (lhtrio.manager.nudges.mark_down)
        await nursery.start(functools.partial(keep_lease, store, name, clock=clock))
        node = await register(objects, name, host, starting=True, clock=clock)
        recorded[0] = _disks_of(to_document(node))
        nursery.start_soon(follow, store, Node.KIND, disks_changed, send)
        task_status.started()
        while True:
            with trio.move_on_after(refresh):
                await receive.receive()
            try:
                node = await register(objects, name, host, clock=clock)
                recorded[0] = _disks_of(to_document(node))
            except (LhtrioError, OSError) as exc:
                logger.warning("node %s could not record its disks: %s", name, exc)
