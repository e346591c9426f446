"""An operator's node and disk changes (pure rules): the fields given change, the others stay;
eviction needs scheduling off; a disk is added by path, removed only when it takes no replica
and holds none, never moved; two disks are never one directory."""

from __future__ import annotations

import pytest

from lhtrio.errors import FailedPreconditionError, InvalidArgumentError
from lhtrio.manager.node_update import (
    DiskChange,
    NodeUpdate,
    apply_disk_update,
    apply_node_update,
    disk_holders,
)
from lhtrio.models.cluster import Node, ObjectMeta, Replica
from lhtrio.models.cluster.node import DiskSpec, DiskStatus, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import ReplicaSpec

GiB = 1 << 30


def node(**disks: DiskSpec) -> Node:
    statuses = {name: DiskStatus(disk_uuid=f"uuid-{name}") for name in disks}
    return Node(
        meta=ObjectMeta(name="n1"),
        spec=NodeSpec(disks=disks or {"d1": DiskSpec(path="/mnt/d1")}, tags=("old",)),
        status=NodeStatus(disk_status=statuses),
    )


def replica(name: str, disk: str, node_id: str = "n1") -> Replica:
    return Replica(
        meta=ObjectMeta(name=name),
        spec=ReplicaSpec(volume_name="v", volume_size=GiB, node_id=node_id, disk_id=disk),
    )


def test_a_node_update_changes_only_what_it_gives() -> None:
    before = node()
    after = apply_node_update(before, NodeUpdate(allow_scheduling=False, zone="zone-a"))
    assert (after.spec.allow_scheduling, after.spec.zone) == (False, "zone-a")
    assert (after.spec.tags, after.spec.disks) == (("old",), before.spec.disks)
    assert apply_node_update(before, NodeUpdate()) is before  # nothing asked: the same object


def test_eviction_needs_scheduling_off() -> None:
    with pytest.raises(FailedPreconditionError, match="scheduling off"):
        apply_node_update(node(), NodeUpdate(eviction_requested=True))
    both = apply_node_update(node(), NodeUpdate(eviction_requested=True, allow_scheduling=False))
    assert both.spec.eviction_requested
    assert not both.spec.allow_scheduling


def test_a_disk_is_added_by_path_and_known_disks_keep_what_is_left_out() -> None:
    before = node(d1=DiskSpec(path="/mnt/d1", tags=("ssd",), storage_reserved=GiB))
    after = apply_disk_update(
        before,
        {"d1": DiskChange(allow_scheduling=False), "d2": DiskChange(path="/mnt/d2/")},
        {},
    )
    assert after.spec.disks == {
        "d1": DiskSpec(path="/mnt/d1", allow_scheduling=False, tags=("ssd",), storage_reserved=GiB),
        "d2": DiskSpec(path="/mnt/d2"),
    }


def test_a_new_disk_needs_a_path() -> None:
    with pytest.raises(InvalidArgumentError, match="give its path"):
        apply_disk_update(node(), {"d1": DiskChange(), "d2": DiskChange(tags=("x",))}, {})


def test_a_disks_path_never_changes() -> None:
    with pytest.raises(FailedPreconditionError, match="remove the disk"):
        apply_disk_update(node(), {"d1": DiskChange(path="/mnt/other")}, {})
    same = apply_disk_update(node(), {"d1": DiskChange(path="/mnt/d1/")}, {})
    assert same.spec.disks["d1"].path == "/mnt/d1"


def test_two_disks_are_never_one_directory() -> None:
    with pytest.raises(InvalidArgumentError, match="both /mnt/d1"):
        apply_disk_update(node(), {"d1": DiskChange(), "d2": DiskChange(path="/mnt/./d1")}, {})


def test_disk_eviction_needs_the_disks_scheduling_off() -> None:
    with pytest.raises(FailedPreconditionError, match="scheduling off"):
        apply_disk_update(node(), {"d1": DiskChange(eviction_requested=True)}, {})


@pytest.mark.parametrize(
    ("scheduling", "held", "problem"),
    [
        (True, [], "still allows scheduling"),
        (False, ["v-r-1"], r"holds replicas \(v-r-1"),
        (True, ["v-r-1"], "still allows scheduling"),
    ],
)
def test_a_disk_is_removed_only_unschedulable_and_empty(
    scheduling: bool, held: list[str], problem: str
) -> None:
    before = node(
        d1=DiskSpec(path="/mnt/d1"), d2=DiskSpec(path="/mnt/d2", allow_scheduling=scheduling)
    )
    with pytest.raises(FailedPreconditionError, match=problem):
        apply_disk_update(before, {"d1": DiskChange()}, {"d2": held})


def test_an_empty_unschedulable_disk_is_removed() -> None:
    before = node(d1=DiskSpec(path="/mnt/d1"), d2=DiskSpec(path="/mnt/d2", allow_scheduling=False))
    after = apply_disk_update(before, {"d1": DiskChange()}, {"d2": []})
    assert list(after.spec.disks) == ["d1"]


def test_the_replicas_on_a_disk_are_found_by_its_uuid_or_its_name() -> None:
    n = node(d1=DiskSpec(path="/mnt/d1"), d2=DiskSpec(path="/mnt/d2"))
    replicas = [
        replica("a", "uuid-d1"),
        replica("b", "d2"),
        replica("c", "uuid-d1", node_id="n2"),  # another node's
        replica("d", "unknown"),
    ]
    assert disk_holders(n, replicas) == {"d1": ["a"], "d2": ["b"]}
