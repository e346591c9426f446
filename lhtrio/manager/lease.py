"""A node's heartbeat lease in the store, and the set of nodes whose leases are valid.

:func:`keep_lease` renews the node's ``NodeLease`` (:mod:`lhtrio.models.cluster.lease`) every
:data:`RENEW` seconds (creating it on the first start, taking it back after a restart);
:func:`available_nodes` reads every lease and says which nodes are up
(:mod:`lhtrio.manager.ownership` has the rules). A node that stops (killed, partitioned from the
store) simply stops renewing: after :data:`DURATION` seconds the others see it down and take
its objects over.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Final

import attrs
import trio

from lhtrio.errors import (
    CorruptMetadataError,
    LhtrioError,
)
from lhtrio.manager.objects import Objects
from lhtrio.manager.ownership import available
from lhtrio.manager.store.api import Store
from lhtrio.manager.store.codec import from_document
from lhtrio.models.cluster.lease import NodeLease, NodeLeaseSpec
from lhtrio.models.cluster.meta import ObjectMeta
from lhtrio.models.times import wall_now

__all__ = [
    "DURATION",
    "KIND",
    "RENEW",
    "Availability",
    "available_nodes",
    "keep_lease",
    "nodes_up",
]

logger = logging.getLogger(__name__)

KIND: Final = NodeLease.KIND
#: How long a lease is valid after its renewal (seconds): Kubernetes' node lease default is 40;
#: shorter here so that a volume attached to a lost node moves sooner.
DURATION: Final = 15
#: How often a node renews its lease (a third of its duration: two renewals may fail).
RENEW: Final = 5.0


def _utcnow() -> dt.datetime:
    return wall_now()


async def renew(
    store: Store,
    node: str,
    *,
    duration: float = DURATION,
    clock: Callable[[], dt.datetime] = _utcnow,
) -> None:
    """Renew (or create) ``node``'s lease once; a concurrent change is retried from a fresh read."""
    now = clock()

    def renewed(lease: NodeLease) -> NodeLease:
        spec = attrs.evolve(lease.spec, renew_time=now, lease_duration_seconds=int(duration))
        return attrs.evolve(lease, spec=spec)

    fresh = NodeLease(
        meta=ObjectMeta(name=node), spec=NodeLeaseSpec(holder_identity=node, acquire_time=now)
    )
    await Objects(store).upsert(NodeLease, node, renewed, fresh)


async def keep_lease(
    store: Store,
    node: str,
    *,
    duration: float = DURATION,
    every: float = RENEW,
    clock: Callable[[], dt.datetime] = _utcnow,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``node``'s lease valid until cancelled; started once it was first renewed."""
    await renew(store, node, duration=duration, clock=clock)
    task_status.started()
    while True:
        await trio.sleep(every)
        try:
            await renew(store, node, duration=duration, clock=clock)
        except LhtrioError as exc:  # the store is unreachable: the lease runs out by itself
            logger.warning("node %s could not renew its lease: %s", node, exc)


async def available_nodes(
    store: Store, *, clock: Callable[[], dt.datetime] = _utcnow
) -> frozenset[str]:
    """The nodes whose leases are valid now (a lease that does not read counts as expired: a
    node that cannot be read is not trusted to be up)."""
    listing = await store.list(KIND)
    leases = []
    for document in listing.documents:
        try:
            leases.append(from_document(NodeLease, document))
        except CorruptMetadataError as exc:
            logger.warning("ignoring a lease: %s", exc)
    return available(leases, clock())


@attrs.define
class Availability:
    """The nodes whose leases were valid when last read, and when: kept read by
    :func:`lhtrio.manager.nudges.follow_availability` for a node's reconcilers (they would read
    every lease at each reconcile otherwise)."""

    up: frozenset[str] = frozenset()
    read_at: dt.datetime | None = None


async def nodes_up(store: Store, availability: Availability | None) -> frozenset[str]:
    """The nodes up as ``availability`` last read them (once read), else as the leases say now."""
    if availability is None or availability.read_at is None:
        return await available_nodes(store)
    return availability.up
