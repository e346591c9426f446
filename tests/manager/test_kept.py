"""What a manager keeps from its watches: the space scheduled on each disk, the objects of a
kind decoded, the nodes' leases; from a listing, changes, deletions and unreadable documents."""

from __future__ import annotations

import datetime as dt

from lhtrio.manager.kept import Kept
from lhtrio.manager.ownership import available
from lhtrio.manager.space import ScheduledSpace
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import Node, NodeLease, ObjectMeta, Replica
from lhtrio.models.cluster.lease import NodeLeaseSpec
from lhtrio.models.cluster.node import NodeSpec
from lhtrio.models.cluster.replica import ReplicaSpec

MiB = 1 << 20


def up(leases: Kept[NodeLease], now: dt.datetime) -> frozenset[str]:
    return available(leases.values(), now)


T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


def replica(name: str, node: str, disk: str, size: int = 4 * MiB) -> Replica:
    return Replica(
        meta=ObjectMeta(name=name),
        spec=ReplicaSpec(volume_name="v", volume_size=size, node_id=node, disk_id=disk),
    )


def test_scheduled_space_follows_the_replicas() -> None:
    space = ScheduledSpace()
    space.reset([to_document(replica("r1", "n1", "d1")), to_document(replica("r2", "n1", "d2"))])
    space.see(to_document(replica("r3", "n1", "d1", 8 * MiB)))
    space.add(replica("r4", "n2", "d9"))  # written by this manager: counted before its event
    assert space.placed == {"n1": {"d1": 12 * MiB, "d2": 4 * MiB}, "n2": {"d9": 4 * MiB}}
    space.see(to_document(replica("r2", "n1", "d1")))  # (never moves in lhtrio, but if it did)
    space.forget("r4")
    unreadable = to_document(replica("r1", "n1", "d1"))
    unreadable["spec"]["volumeSize"] = "lots"  # type: ignore[index]
    space.see(unreadable)
    space.see(to_document(replica("r5", "n1", "")))  # not placed on a disk yet: nothing
    assert space.placed == {"n1": {"d1": 12 * MiB}}
    space.reset([])
    assert space.placed == {}


def test_kept_objects_are_decoded_and_the_unreadable_left_out() -> None:
    nodes = Kept(Node)
    assert not nodes.listed.is_set()
    nodes.reset([to_document(Node(meta=ObjectMeta(name=n), spec=NodeSpec())) for n in "ba"])
    assert nodes.listed.is_set()
    assert [n.meta.name for n in nodes.values()] == ["a", "b"]
    nodes.see({"kind": "Node", "metadata": {"name": "a"}, "spec": {"disks": 7}})
    nodes.forget("zzz")
    assert [n.meta.name for n in nodes.values()] == ["b"]


def test_kept_leases_say_which_nodes_are_up_and_wake_on_a_change() -> None:
    leases = Kept(NodeLease)

    def lease(name: str, renewed: dt.datetime) -> NodeLease:
        spec = NodeLeaseSpec(holder_identity=name, renew_time=renewed, lease_duration_seconds=15)
        return NodeLease(meta=ObjectMeta(name=name), spec=spec)

    leases.reset([to_document(lease("n1", T0)), to_document(lease("n2", T0))])
    assert up(leases, T0 + dt.timedelta(seconds=10)) == {"n1", "n2"}
    changed = leases.changed
    leases.see(to_document(lease("n2", T0 + dt.timedelta(seconds=10))))
    assert changed.is_set()
    assert up(leases, T0 + dt.timedelta(seconds=20)) == {"n2"}  # n1's ran out
    leases.forget("n2")
    assert up(leases, T0 + dt.timedelta(seconds=20)) == frozenset()
