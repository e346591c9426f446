"""Node leases over the in-memory store on the autojump clock: a node that stops renewing is
seen down after the lease's duration, and its objects change hands."""

from __future__ import annotations

import datetime as dt
import functools

import pytest
import trio
import trio.testing

from lhtrio.manager.lease import DURATION, RENEW, available_nodes, keep_lease, renew
from lhtrio.manager.ownership import responsible
from lhtrio.manager.store.memory import MemoryStore

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
