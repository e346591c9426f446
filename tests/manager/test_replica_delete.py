"""Deleting one replica by hand: never the last healthy replica of a volume (pure rule), and
through the store the replica's deletion is requested (its finalizer holds it)."""

from __future__ import annotations

import datetime as dt

import pytest

from lhtrio.errors import ConflictError, NotFoundError, StaleVersionError
from lhtrio.manager.objects import Objects
from lhtrio.manager.replica_delete import delete_replica, deletion_problem
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import ObjectMeta, Replica, Volume
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import VolumeSpec

GiB = 1 << 30
T0 = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def replica(
    name: str, *, healthy: bool = True, failed: bool = False, deleting: bool = False
) -> Replica:
    return Replica(
        meta=ObjectMeta(
            name=name,
            finalizers=("lhtrio.io/replica-data",),
            deletion_requested=T0 if deleting else None,
        ),
        spec=ReplicaSpec(
            volume_name="v",
            volume_size=GiB,
            node_id="n1",
            healthy_at=T0 if healthy else None,
            failed_at=T0 if failed else None,
        ),
    )


def test_the_last_healthy_replica_is_kept() -> None:
    last = replica("v-r-1")
    others = [last, replica("v-r-2", failed=True), replica("v-r-3", healthy=False)]
    problem = deletion_problem(last, others)
    assert problem is not None
    assert "last healthy replica" in problem
    # another healthy one: it may go; one being deleted does not count as healthy
    assert deletion_problem(last, [*others, replica("v-r-4")]) is None
    assert deletion_problem(last, [*others, replica("v-r-4", deleting=True)]) is not None


@pytest.mark.parametrize("victim", [replica("v-r-1", failed=True), replica("v-r-1", healthy=False)])
def test_failed_and_never_healthy_replicas_may_always_go(victim: Replica) -> None:
    assert deletion_problem(victim, [victim]) is None


def test_a_deleted_volumes_last_replica_may_go() -> None:
    last = replica("v-r-1")
    assert deletion_problem(last, [last], volume_deleting=True) is None


async def test_deleting_through_the_store() -> None:
    objects = Objects(MemoryStore())
    await objects.create(Volume(meta=ObjectMeta(name="v"), spec=VolumeSpec(size=GiB)))
    for name in ("v-r-1", "v-r-2"):
        await objects.create(replica(name))
    stored = await objects.get(Replica, "v-r-1")
    with pytest.raises(StaleVersionError) as stale:
        await delete_replica(objects, "v-r-1", version=stored.meta.resource_version - 1)
    assert stale.value.current == str(stored.meta.resource_version)
    after = await delete_replica(objects, "v-r-1", version=stored.meta.resource_version)
    assert after is not None
    assert after.meta.deleting  # held by its finalizer until its node removed its data
    assert await delete_replica(objects, "v-r-1") == after  # asked again: nothing new
    with pytest.raises(ConflictError, match="last healthy replica"):
        await delete_replica(objects, "v-r-2")
    assert not (await objects.get(Replica, "v-r-2")).meta.deleting
    with pytest.raises(NotFoundError):
        await delete_replica(objects, "v-r-9")
