"""What nudges a node's reconcilers besides their own objects' changes, and what their resync
covers.

The runner (:mod:`lhtrio.manager.runner`) reconciles every change of a kind its scope covers,
and every :data:`~lhtrio.manager.runner.RESYNC` seconds every object it covers. A volume's plan
also reads what no volume change tells of; these nudge the volumes instead of a short resync:

* :func:`follow_availability`: a node went down or came back (a lease expired: nothing in the
  store changes then) — every volume (:data:`~lhtrio.manager.scope.EVERY`: those this node is
  responsible for now, as its volume scope judges with the nodes up, which this keeps read for
  the scope and the reconcilers). A node seen down also has its Ready condition set false
  (``LeaseExpired``), so ``lhtrio node ls`` and ``kubectl get`` say so: its own process, which
  writes that condition otherwise, cannot. Any node may write it (the change is idempotent); the
  node sets it true again when it registers on its return (and at each record of its disks, so a
  false one written in a race with its return lasts at most that long).
* :func:`follow_operator`: a setting changed, or a node's spec (scheduling, tags, disks,
  eviction) or readiness — every volume (a node's record of its disks' free space, rewritten every
  30 s under writes, does not nudge: the resync picks it up).

Which volumes, replicas and engines a node acts on is :mod:`lhtrio.manager.scope`'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Final

import attrs
import trio

from lhtrio.errors import CorruptMetadataError, LhtrioError, NotFoundError
from lhtrio.manager.kept import Kept
from lhtrio.manager.lease import KIND, Availability
from lhtrio.manager.objects import Objects
from lhtrio.manager.ownership import available
from lhtrio.manager.runner import follow
from lhtrio.manager.scope import EVERY
from lhtrio.manager.store.api import Document, Store
from lhtrio.manager.store.codec import from_document
from lhtrio.models.cluster import Node, NodeLease, Setting
from lhtrio.models.cluster.meta import get_condition, set_condition
from lhtrio.models.cluster.node import CONDITION_READY
from lhtrio.models.times import wall_now

__all__ = [
    "AVAILABILITY_POLL",
    "LEASE_EXPIRED",
    "follow_availability",
    "follow_operator",
]

logger = logging.getLogger(__name__)

#: How often the nodes' leases are read for a node that went down or came back (seconds).
AVAILABILITY_POLL: Final = 1.0

#: The reason of a node's false Ready condition once its lease ran out.
LEASE_EXPIRED: Final = "LeaseExpired"


def _utcnow() -> dt.datetime:
    return wall_now()


async def follow_availability(
    store: Store,
    nudge: trio.MemorySendChannel[str],
    availability: Availability | None = None,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``availability`` (the nodes up) current, nudge :data:`EVERY` volume when it
    changes, and say which nodes are down; started once the leases were first read.

    The leases are watched (a node that registers or comes back is up as soon as its lease is
    written) and judged again every :data:`AVAILABILITY_POLL` seconds (an expiry is no change
    in the store); nothing is listed after the first time."""
    availability = availability or Availability()
    leases = Kept(NodeLease)
    last: frozenset[str] | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(follow, index=leases), store, KIND, _none, nudge)
        await leases.listed.wait()
        while True:
            changed = leases.changed
            now = clock()
            up = available(leases.values(), now)
            availability.up, availability.read_at = up, now
            try:
                if up != last:
                    await mark_down(store, up, now)
                if up != last and last is not None:
                    await nudge.send(EVERY)
                last = up
            except LhtrioError as exc:
                logger.warning("marking the nodes down failed: %s", exc)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            with trio.move_on_after(AVAILABILITY_POLL):
                await changed.wait()


def _none(document: Document) -> str:
    return ""


async def mark_down(store: Store, up: frozenset[str], now: dt.datetime) -> None:
    """Set the Ready condition of every node not in ``up`` false (:data:`LEASE_EXPIRED`)."""

    def down(node: Node) -> Node:
        ready = get_condition(node.status.conditions, CONDITION_READY)
        if ready is not None and not ready.status:
            return node  # already says why (its own disk check, or another node's word)
        message = (
            "its lease was not renewed in time: the node's lhtrio process is down, "
            "or cannot reach the store"
        )
        conditions = set_condition(
            node.status.conditions,
            CONDITION_READY,
            False,
            reason=LEASE_EXPIRED,
            message=message,
            now=now,
        )
        return attrs.evolve(node, status=attrs.evolve(node.status, conditions=conditions))

    objects = Objects(store)
    nodes, _ = await objects.list(Node)
    for node in nodes:
        if node.meta.name not in up and down(node) != node:
            with contextlib.suppress(NotFoundError):  # removed meanwhile
                await objects.change(Node, node.meta.name, down)


def _node_key() -> Callable[[Document], str]:
    """A key for :func:`~lhtrio.manager.runner.follow` that is ``"*"`` when a node's spec or
    readiness (of the node or one of its disks) changed since its last change, else empty."""
    seen: dict[str, object] = {}

    def key(document: Document) -> str:
        try:
            node = from_document(Node, document)
        except CorruptMetadataError:
            return "*"
        disks = {
            name: get_condition(disk.conditions, CONDITION_READY)
            for name, disk in node.status.disk_status.items()
        }
        now = (node.spec, get_condition(node.status.conditions, CONDITION_READY), disks)
        before, seen[node.meta.name] = seen.get(node.meta.name), now
        return "*" if before != now else ""

    return key


async def follow_operator(
    store: Store,
    nudge: trio.MemorySendChannel[str],
    *,
    nodes: Kept[Node] | None = None,
    settings: Kept[Setting] | None = None,
) -> None:
    """Nudge :data:`EVERY` volume when a setting changes, or a node's spec or readiness does;
    keep ``nodes`` and ``settings`` as they change (before the nudge)."""
    wanted_in, wanted = trio.open_memory_channel[str](64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(follow, index=settings),
            store,
            Setting.KIND,
            lambda _: "*",
            wanted_in.clone(),
        )
        nursery.start_soon(
            functools.partial(follow, index=nodes), store, Node.KIND, _node_key(), wanted_in
        )
        async for _ in wanted:
            while True:  # a burst of changes: one round of nudges
                try:
                    wanted.receive_nowait()
                except trio.WouldBlock:
                    break
            await nudge.send(EVERY)
