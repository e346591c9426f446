"""Placing a volume's missing replicas from the store's objects."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import attrs

from lhtrio.manager.placement import node_views, place_replicas
from lhtrio.manager.scheduler import Policy, Reason
from lhtrio.models.cluster import Node, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.meta import Condition
from lhtrio.models.cluster.node import CONDITION_READY, DiskSpec, DiskStatus, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import VolumeSpec

GiB = 1 << 30
READY = (Condition(type=CONDITION_READY, status=True),)


def node(name: str, free: int = 100, *, ready: bool = True, zone: str = "") -> Node:
    return Node(
        meta=ObjectMeta(name=name),
        spec=NodeSpec(disks={f"{name}-d": DiskSpec(path=f"/d/{name}")}, zone=zone),
        status=NodeStatus(
            conditions=READY if ready else (),
            disk_status={
                f"{name}-d": DiskStatus(
                    storage_available=free * GiB, storage_maximum=100 * GiB, disk_uuid=f"{name}-d"
                )
            },
        ),
    )


def volume(replicas: int = 3, size: int = 10) -> Volume:
    return Volume(
        meta=ObjectMeta(name="v"), spec=VolumeSpec(size=size * GiB, number_of_replicas=replicas)
    )


def suffixes() -> Iterator[str]:
    return (f"{n:08x}" for n in itertools.count(1))


NODES = [node("n1"), node("n2"), node("n3")]
UP = frozenset({"n1", "n2", "n3"})


def test_three_replicas_land_on_three_nodes_with_longhorns_names() -> None:
    created, why = place_replicas(volume(), [], node_views(NODES, UP), Policy(), suffixes())
    assert why is None
    assert sorted(r.spec.node_id for r in created) == ["n1", "n2", "n3"]
    assert [r.meta.name for r in created] == ["v-r-00000001", "v-r-00000002", "v-r-00000003"]
    assert {r.spec.data_directory_name for r in created} == {
        "v-00000001",
        "v-00000002",
        "v-00000003",
    }
    assert all(r.spec.volume_size == 10 * GiB for r in created)


def test_a_node_whose_lease_expired_gets_nothing_and_the_rest_say_why() -> None:
    created, why = place_replicas(
        volume(), [], node_views(NODES, frozenset({"n1", "n2"})), Policy(), suffixes()
    )
    assert sorted(r.spec.node_id for r in created) == ["n1", "n2"]
    assert why is not None
    assert why.reason is Reason.ANTI_AFFINITY


def test_existing_replicas_count_and_failed_ones_are_replaced_elsewhere() -> None:
    keep = Replica(
        meta=ObjectMeta(name="v-r-a"),
        spec=ReplicaSpec(volume_name="v", volume_size=10 * GiB, node_id="n1", disk_id="n1-d"),
    )
    failed = Replica(
        meta=ObjectMeta(name="v-r-b"),
        spec=ReplicaSpec(
            volume_name="v",
            volume_size=10 * GiB,
            node_id="n2",
            disk_id="n2-d",
            failed_at=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
        ),
    )
    created, why = place_replicas(
        volume(replicas=2), [keep, failed], node_views(NODES, UP), Policy(), suffixes()
    )
    assert why is None
    assert [r.spec.node_id for r in created] == ["n3"]  # not n1 (used), not n2 (its failed copy)


def test_placements_in_one_pass_count_against_their_disk() -> None:
    one = [node("n1", free=100)]
    created, why = place_replicas(
        volume(replicas=3, size=40),
        [],
        node_views(one, frozenset({"n1"})),
        Policy(replica_soft_anti_affinity=True),
        suffixes(),
    )
    assert len(created) == 2  # 40 + 40 <= 100, a third would be 120
    assert why is not None
    assert why.reason is Reason.INSUFFICIENT_STORAGE


def test_a_node_not_ready_or_never_measured_is_not_used() -> None:
    unmeasured = attrs.evolve(node("n3"), status=NodeStatus(conditions=READY))
    nodes = [node("n1", ready=False), node("n2"), unmeasured]
    created, why = place_replicas(
        volume(replicas=1), [], node_views(nodes, UP), Policy(), suffixes()
    )
    assert [r.spec.node_id for r in created] == ["n2"]
    assert why is None


def test_replicas_already_on_a_disk_count_against_over_provisioning() -> None:
    """The disks' scheduled space is counted from the replicas placed there, not from what the
    nodes last recorded: 95 GiB of replicas on n1's 100 GiB disk leave no room for 10 GiB
    more (over-provisioning 100 %), though the disk reports it free."""
    held = [
        Replica(
            meta=ObjectMeta(name=f"w{n}-r-00000001"),
            spec=ReplicaSpec(
                volume_name=f"w{n}", volume_size=19 * GiB, node_id="n1", disk_id="n1-d"
            ),
        )
        for n in range(5)
    ]
    views = node_views(NODES, UP, held)
    assert views[0].disks[0].storage_scheduled == 95 * GiB
    assert views[1].disks[0].storage_scheduled == 0
    created, why = place_replicas(volume(replicas=3), [], views, Policy(), suffixes())
    assert sorted(r.spec.node_id for r in created) == ["n2", "n3"]
    assert why is not None
    # without the replicas, the nodes' own records (nothing scheduled) would let it fit
    created, _ = place_replicas(volume(replicas=3), [], node_views(NODES, UP), Policy(), suffixes())
    assert len(created) == 3
