"""A node's heartbeat lease in the store, and the set of nodes whose leases are valid.

:func:`keep_lease` renews the node's ``Lease`` document every :data:`RENEW` seconds (creating it
on the first start, taking it back after a restart); :func:`available_nodes` reads every lease
and says which nodes are up (:mod:`lhtrio.manager.ownership` has the rules). A node that stops
(killed, partitioned from the store) simply stops renewing: after :data:`DURATION` seconds the
others see it down and take its objects over.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Final

import trio

from lhtrio.errors import AlreadyExistsError, ConflictError, LhtrioError, NotFoundError
from lhtrio.manager.ownership import available, lease_of
from lhtrio.manager.store.api import Document, Store
from lhtrio.models.times import format_time

__all__ = ["DURATION", "KIND", "RENEW", "available_nodes", "keep_lease"]

logger = logging.getLogger(__name__)

KIND: Final = "Lease"
#: How long a lease is valid after its renewal (seconds): Kubernetes' node lease default is 40;
#: shorter here so that a volume attached to a lost node moves sooner.
DURATION: Final = 15.0
#: How often a node renews its lease (a third of its duration: two renewals may fail).
RENEW: Final = 5.0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lease(node: str, now: dt.datetime, duration: float, base: Document | None) -> Document:
    document: Document = (
        dict(base)
        if base is not None
        else {
            "apiVersion": "lhtrio.io/v1",
            "kind": KIND,
            "metadata": {"name": node},
        }
    )
    document["spec"] = {
        "holderIdentity": node,
        "renewTime": format_time(now),
        "leaseDurationSeconds": duration,
    }
    return document


async def renew(
    store: Store,
    node: str,
    *,
    duration: float = DURATION,
    clock: Callable[[], dt.datetime] = _utcnow,
) -> None:
    """Renew (or create) ``node``'s lease once; a concurrent change is retried from a fresh read."""
    while True:
        try:
            current = await store.get(KIND, node)
        except NotFoundError:
            try:
                await store.create(_lease(node, clock(), duration, None))
            except AlreadyExistsError:  # another process created it meanwhile: update it
                continue
            else:
                return
        try:
            await store.update(_lease(node, clock(), duration, current))
        except ConflictError:
            continue
        else:
            return


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
    """The nodes whose leases are valid now."""
    listing = await store.list(KIND)
    leases = [lease for d in listing.documents if (lease := lease_of(d)) is not None]
    return available(leases, clock())
