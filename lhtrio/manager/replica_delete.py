"""Deleting one replica by hand, to force a rebuild (Longhorn's ``replicaRemove``).

The replica object is deleted; its finalizer (``lhtrio.io/replica-data``) makes its node stop
the instance and remove its data before the object goes, and the volume plan no longer counts it:
an attached volume gets a new replica placed and rebuilt at once (a detached one when it is next
attached, since a rebuild copies from the running engine).

The one rule (:func:`deletion_problem`, pure): the last healthy replica of a volume is never
deleted — it holds the only good copy of the data. A replica is healthy once it has been RW in
its volume's engine (``healthyAt``) and has not failed since; one being deleted no longer counts.
Deleting it is a conflict (409), not a refusal for good: once another replica has been rebuilt,
it can go. Failed replicas, replicas never rebuilt and the replicas of a volume being deleted can
always be deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lhtrio.errors import ConflictError, NotFoundError
from lhtrio.manager import versions
from lhtrio.manager.objects import Objects
from lhtrio.manager.selection import replicas_of
from lhtrio.models.cluster import Replica, Volume

__all__ = ["deletion_problem", "delete_replica", "healthy"]

logger = logging.getLogger(__name__)


def healthy(replica: Replica) -> bool:
    """RW once in its engine, not failed since, not being deleted."""
    return replica.spec.healthy_at is not None and not replica.failed and not replica.meta.deleting


def deletion_problem(
    replica: Replica, siblings: Sequence[Replica], *, volume_deleting: bool = False
) -> str | None:
    """Why ``replica`` may not be deleted now, or None. ``siblings``: every replica of its volume
    (``replica`` itself may be among them)."""
    if volume_deleting or replica.meta.deleting or not healthy(replica):
        return None
    others = sorted(
        r.meta.name for r in siblings if r.meta.name != replica.meta.name and healthy(r)
    )
    if others:
        return None
    return (
        f"replica {replica.meta.name!r} is the last healthy replica of volume "
        f"{replica.spec.volume_name!r}: deleting it would lose the volume's data; wait until "
        "another replica is rebuilt (or add one: updateReplicaCount), then delete it"
    )


async def delete_replica(
    objects: Objects, name: str, *, version: int | None = None
) -> Replica | None:
    """Delete replica ``name`` (or request it: its finalizer holds it until its data is gone);
    the replica after, None if it went at once.

    ConflictError if it is the last healthy replica of its volume; StaleVersionError if
    ``version`` is given and the replica is not at it; NotFoundError if there is none. (Two
    deletions racing through the APIs of two nodes may both see the other's replica healthy:
    the store changes one object at a time.)"""
    replica = await objects.get(Replica, name)
    volume = replica.spec.volume_name
    try:
        volume_deleting = (await objects.get(Volume, volume)).meta.deleting
    except NotFoundError:
        volume_deleting = True
    siblings = await replicas_of(objects, volume)

    def check(current: Replica) -> None:
        problem = deletion_problem(current, siblings, volume_deleting=volume_deleting)
        if problem is not None:
            raise ConflictError(problem)

    after = await versions.delete(objects, Replica, name, version=version, check=check)
    logger.info("replica %s of volume %s: deletion requested", name, volume)
    return after
