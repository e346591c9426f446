"""Node leases over the in-memory store on the autojump clock: a node that stops renewing is
seen down after the lease's duration, its objects change hands, and its Ready condition says it
is down until it registers again."""

from __future__ import annotations

import datetime as dt
import functools

import pytest
import trio
import trio.testing

from lhtrio.manager.lease import DURATION, RENEW, available_nodes, keep_lease, renew
from lhtrio.manager.node_agent import with_disks
from lhtrio.manager.nudges import AVAILABILITY_POLL, LEASE_EXPIRED, follow_availability
from lhtrio.manager.objects import Objects
from lhtrio.manager.ownership import responsible
from lhtrio.manager.scope import EVERY
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Node, ObjectMeta, Volume
from lhtrio.models.cluster.meta import get_condition
from lhtrio.models.cluster.node import CONDITION_READY, NodeSpec
from lhtrio.models.cluster.volume import VolumeSpec

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def now() -> dt.datetime:
    return T0 + dt.timedelta(seconds=trio.current_time())


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_node_that_stops_renewing_is_down_after_its_lease_and_loses_its_objects(
    clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        scopes = {}
        for node in ("n1", "n2", "n3"):
            scope = trio.CancelScope()
            scopes[node] = scope

            async def run(node: str, scope: trio.CancelScope, **kw: object) -> None:
                with scope:
                    await keep_lease(store, node, clock=now, **kw)  # type: ignore[arg-type]

            await nursery.start(functools.partial(run, node, scope))
        await trio.sleep(60)
        up = await available_nodes(store, clock=now)
        assert up == {"n1", "n2", "n3"}
        assert responsible("n3", owner="n3", preferred="n3", up=up)

        scopes["n3"].cancel()  # n3 dies: its last renewal was at most RENEW s ago
        await trio.sleep(DURATION - RENEW - 0.5)
        assert "n3" in await available_nodes(store, clock=now)  # not yet
        await trio.sleep(RENEW + 1)
        up = await available_nodes(store, clock=now)
        assert up == {"n1", "n2"}
        assert [m for m in ("n1", "n2") if responsible(m, owner="n3", preferred="n3", up=up)] == [
            "n1"
        ]
        nursery.cancel_scope.cancel()


async def test_a_restarted_node_takes_its_lease_back(clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await renew(store, "n1", clock=now)
    await trio.sleep(DURATION + 1)
    assert await available_nodes(store, clock=now) == frozenset()
    await renew(store, "n1", clock=now)
    assert await available_nodes(store, clock=now) == {"n1"}
    assert len((await store.list("NodeLease")).documents) == 1


async def test_a_node_whose_lease_ran_out_is_marked_not_ready_until_it_registers_again(
    clock: trio.testing.MockClock,
) -> None:
    """Its own process writes a node's Ready condition; once it is down, the others say so."""
    store = MemoryStore()
    objects = Objects(store)
    for name in ("n1", "n2"):
        await objects.create(Node(meta=ObjectMeta(name=name), spec=NodeSpec()))
        await objects.change(Node, name, lambda n: with_disks(n, [], now(), {}))
    nudged, nudges = trio.open_memory_channel[str](100)
    async with trio.open_nursery() as nursery:
        n2 = trio.CancelScope()

        async def lease_of_n2(task_status: trio.TaskStatus[None]) -> None:
            with n2:
                await keep_lease(store, "n2", clock=now, task_status=task_status)

        await nursery.start(functools.partial(keep_lease, store, "n1", clock=now))
        await nursery.start(lease_of_n2)
        await objects.create(Volume(meta=ObjectMeta(name="v"), spec=VolumeSpec(size=1 << 30)))
        nursery.start_soon(functools.partial(follow_availability, store, nudged, clock=now))
        await trio.sleep(30)
        assert [ready(await objects.get(Node, n)) for n in ("n1", "n2")] == [(True, ""), (True, "")]

        n2.cancel()  # n2's process dies
        await trio.sleep(DURATION + AVAILABILITY_POLL + 1)
        assert ready(await objects.get(Node, "n1")) == (True, "")
        assert ready(await objects.get(Node, "n2")) == (False, LEASE_EXPIRED)
        assert nudges.receive_nowait() == EVERY  # and every volume was looked at again

        await renew(store, "n2", clock=now)  # n2 is back: it registers and renews its lease
        await objects.change(Node, "n2", lambda n: with_disks(n, [], now(), {}))
        await trio.sleep(AVAILABILITY_POLL * 3)
        assert ready(await objects.get(Node, "n2")) == (True, "")
        nursery.cancel_scope.cancel()


def ready(node: Node) -> tuple[bool, str]:
    condition = get_condition(node.status.conditions, CONDITION_READY)
    assert condition is not None
    return condition.status, condition.reason
