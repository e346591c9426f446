"""Ownership rules as a table: exactly one available node is responsible for any object."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from lhtrio.manager.ownership import available, responsible
from lhtrio.models.cluster.lease import NodeLease, NodeLeaseSpec
from lhtrio.models.cluster.meta import ObjectMeta

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
NODES = ("n1", "n2", "n3")


@pytest.mark.parametrize(
    ("owner", "preferred", "up", "expected"),
    [
        ("n1", "n1", {"n1", "n2", "n3"}, "n1"),  # the preferred owner owns it
        ("n2", "n1", {"n1", "n2", "n3"}, "n1"),  # the preferred owner takes it back
        ("n2", "n1", {"n2", "n3"}, "n2"),  # preferred down: the current owner keeps it
        ("n1", "n1", {"n2", "n3"}, "n2"),  # both down: one agreed taker
        ("", "", {"n2", "n3"}, "n2"),  # nobody owns it yet
        ("n3", "", {"n1", "n2", "n3"}, "n3"),  # no preference: its owner
        ("", "n3", {"n1", "n2"}, "n1"),  # preferred node never came up
        ("n1", "n2", set(), None),  # nobody up: nobody reconciles
    ],
)
def test_exactly_one_available_node_is_responsible(
    owner: str, preferred: str, up: set[str], expected: str | None
) -> None:
    chosen = [
        me for me in NODES if responsible(me, owner=owner, preferred=preferred, up=frozenset(up))
    ]
    assert chosen == ([] if expected is None else [expected])


def test_for_every_layout_at_most_one_node_and_one_if_any_is_up() -> None:
    for owner, preferred in itertools.product(("", *NODES), repeat=2):
        for size in range(len(NODES) + 1):
            for up in itertools.combinations(NODES, size):
                chosen = [
                    me
                    for me in NODES
                    if responsible(me, owner=owner, preferred=preferred, up=frozenset(up))
                ]
                assert len(chosen) == (1 if up else 0), (owner, preferred, up, chosen)
                assert set(chosen) <= set(up)


def lease(node: str, renewed: dt.datetime, duration: int = 15) -> NodeLease:
    spec = NodeLeaseSpec(holder_identity=node, lease_duration_seconds=duration, renew_time=renewed)
    return NodeLease(meta=ObjectMeta(name=node), spec=spec)


def test_a_lease_is_valid_for_its_duration() -> None:
    leases = [
        lease("n1", T0),
        lease("n2", T0 - dt.timedelta(seconds=15)),
        lease("n3", T0 - dt.timedelta(seconds=14)),
        NodeLease(meta=ObjectMeta(name="n4")),  # never renewed
    ]
    assert available(leases, T0) == {"n1", "n3"}
