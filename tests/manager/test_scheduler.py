"""Replica scheduling as tables: node, zone, disk and tag layouts, and every reason not to fit."""

from __future__ import annotations

import pytest

from lhtrio.manager.scheduler import (
    DiskView,
    NodeView,
    Placement,
    Policy,
    Reason,
    ReplicaRequest,
    Unschedulable,
    schedule,
)

GiB = 1 << 30


def disk(name: str = "d1", free: int = 100, maximum: int = 100, **kw: object) -> DiskView:
    return DiskView(name=name, storage_available=free * GiB, storage_maximum=maximum * GiB, **kw)  # type: ignore[arg-type]


def node(name: str, *disks: DiskView, **kw: object) -> NodeView:
    return NodeView(name=name, disks=disks or (disk(),), **kw)  # type: ignore[arg-type]


def request(
    size: int = 10, existing: tuple[tuple[str, str], ...] = (), **kw: object
) -> ReplicaRequest:
    return ReplicaRequest(volume="v", size=size * GiB, existing=existing, **kw)  # type: ignore[arg-type]


THREE = [node("n1"), node("n2"), node("n3")]


@pytest.mark.parametrize(
    ("nodes", "req", "policy", "expected"),
    [
        # the emptiest disk wins, ties by name
        (THREE, request(), Policy(), Placement("n1", "d1")),
        (
            [node("n1", disk(free=50)), node("n2", disk(free=90))],
            request(),
            Policy(),
            Placement("n2", "d1"),
        ),
        (
            [node("n1", disk("a", free=60), disk("b", free=80))],
            request(),
            Policy(),
            Placement("n1", "b"),
        ),
        # reserved space counts against a disk
        (
            [node("n1", disk(free=90, storage_reserved=40 * GiB)), node("n2", disk(free=60))],
            request(),
            Policy(),
            Placement("n2", "d1"),
        ),
        # node anti-affinity: not on a node holding a replica
        (THREE, request(existing=(("n1", "d1"),)), Policy(), Placement("n2", "d1")),
        (THREE, request(existing=(("n1", "d1"), ("n2", "d1"))), Policy(), Placement("n3", "d1")),
        # zones: an unused zone first, even on a fuller disk
        (
            [
                node("n1", zone="a"),
                node("n2", disk(free=99), zone="a"),
                node("n3", disk(free=50), zone="b"),
            ],
            request(existing=(("n1", "d1"),)),
            Policy(),
            Placement("n3", "d1"),
        ),
        # zone soft (default): a used zone when no other is left
        (
            [node("n1", zone="a"), node("n2", zone="a")],
            request(existing=(("n1", "d1"),)),
            Policy(),
            Placement("n2", "d1"),
        ),
        # node soft anti-affinity: another disk of a used node
        (
            [node("n1", disk("a"), disk("b"))],
            request(existing=(("n1", "a"),)),
            Policy(replica_soft_anti_affinity=True),
            Placement("n1", "b"),
        ),
        # node and disk soft: even the same disk
        (
            [node("n1")],
            request(existing=(("n1", "d1"),)),
            Policy(replica_soft_anti_affinity=True),
            Placement("n1", "d1"),
        ),
        # tags: node and disk selectors
        (
            [node("n1"), node("n2", tags=frozenset({"ssd"}))],
            request(node_selector=frozenset({"ssd"})),
            Policy(),
            Placement("n2", "d1"),
        ),
        (
            [node("n1", disk("a"), disk("b", free=10, tags=frozenset({"nvme"})))],
            request(size=1, disk_selector=frozenset({"nvme"})),
            Policy(minimal_available_percent=5),
            Placement("n1", "b"),
        ),
        # over-provisioning: 200 % lets 150 GiB onto a 100 GiB disk
        (
            [node("n1")],
            request(size=150),
            Policy(over_provisioning_percent=200),
            Placement("n1", "d1"),
        ),
    ],
)
def test_placements(
    nodes: list[NodeView], req: ReplicaRequest, policy: Policy, expected: Placement
) -> None:
    assert schedule(req, nodes, policy) == expected


@pytest.mark.parametrize(
    ("nodes", "req", "policy", "reason"),
    [
        ([], request(), Policy(), Reason.NO_NODES),
        (
            [
                node("n1", ready=False),
                node("n2", allow_scheduling=False),
                node("n3", eviction_requested=True),
            ],
            request(),
            Policy(),
            Reason.NODES_UNAVAILABLE,
        ),
        (THREE, request(node_selector=frozenset({"ssd"})), Policy(), Reason.NODE_TAGS),
        (
            [
                node("n1", disk(allow_scheduling=False)),
                node("n2", disk(schedulable=False)),
                node("n3", disk(eviction_requested=True)),
            ],
            request(),
            Policy(),
            Reason.DISKS_UNAVAILABLE,
        ),
        (THREE, request(disk_selector=frozenset({"nvme"})), Policy(), Reason.DISK_TAGS),
        # over-provisioning: 100 % of 100 GiB holds 90 GiB scheduled + 10, not + 11
        (
            [node("n1", disk(storage_scheduled=90 * GiB))],
            request(size=11),
            Policy(),
            Reason.INSUFFICIENT_STORAGE,
        ),
        # minimal available: 25 % of 100 GiB must stay free
        ([node("n1", disk(free=25))], request(size=1), Policy(), Reason.INSUFFICIENT_STORAGE),
        # hard node anti-affinity with every node used
        (
            [node("n1"), node("n2")],
            request(existing=(("n1", "d1"), ("n2", "d1"))),
            Policy(),
            Reason.ANTI_AFFINITY,
        ),
        # zone hard: the only unused node is in a used zone
        (
            [node("n1", zone="a"), node("n2", zone="a")],
            request(existing=(("n1", "d1"),)),
            Policy(zone_soft_anti_affinity=False),
            Reason.ANTI_AFFINITY,
        ),
        # node soft but disk hard: the one disk holds a replica
        (
            [node("n1")],
            request(existing=(("n1", "d1"),)),
            Policy(replica_soft_anti_affinity=True, disk_soft_anti_affinity=False),
            Reason.ANTI_AFFINITY,
        ),
    ],
)
def test_every_reason_not_to_fit_is_named(
    nodes: list[NodeView], req: ReplicaRequest, policy: Policy, reason: Reason
) -> None:
    result = schedule(req, nodes, policy)
    assert isinstance(result, Unschedulable)
    assert result.reason is reason
    assert result.message


def test_the_fit_limits_are_exact() -> None:
    edge = [node("n1", disk(storage_scheduled=90 * GiB))]
    assert schedule(request(size=10), edge) == Placement("n1", "d1")  # exactly at 100 %
    floor = [node("n1", disk(free=26))]
    assert schedule(request(size=1), floor) == Placement("n1", "d1")  # 26 > 25
    assert isinstance(schedule(request(size=1, actual_size=1 * GiB), floor), Unschedulable)


def test_three_replicas_land_on_three_nodes_one_at_a_time() -> None:
    existing: tuple[tuple[str, str], ...] = ()
    for _ in range(3):
        placed = schedule(request(existing=existing), THREE)
        assert isinstance(placed, Placement)
        existing += ((placed.node, placed.disk),)
    assert sorted(n for n, _ in existing) == ["n1", "n2", "n3"]
    assert isinstance(schedule(request(existing=existing), THREE), Unschedulable)
