"""Fault schedules drawn from seeds, and the link proxy's faults over real TCP."""

from __future__ import annotations

import pytest
import trio

from lhtrio.verify.faults import NODES, FaultKind, describe, draw_schedule
from lhtrio.verify.proxy import LinkProxy, open_link_proxy


def test_a_seed_draws_the_same_schedule_every_time() -> None:
    assert draw_schedule(7, faults=20) == draw_schedule(7, faults=20)
    assert draw_schedule(7, faults=20) != draw_schedule(8, faults=20)
    # A longer schedule starts with the shorter one's faults: a replay can be cut short.
    assert draw_schedule(7, faults=30)[:20] == draw_schedule(7, faults=20)


def test_schedules_cover_every_kind_and_stay_in_bounds() -> None:
    faults = [f for seed in range(50) for f in draw_schedule(seed, faults=10, timeout=1.0)]
    assert {f.kind for f in faults} == set(FaultKind)
    for f in faults:
        assert 0 <= f.target < NODES
        assert 0.1 <= f.pause <= 1.0
        assert 0.1 <= f.hold <= 2.5
        assert (f.delay > 0) == (f.kind is FaultKind.SLOW_LINK)
    # Holds straddle the replica timeout: some stalls are forgiven, some fail the replica.
    assert any(f.hold < 1.0 for f in faults)
    assert any(f.hold > 1.0 for f in faults)


def test_a_schedule_can_be_limited_to_some_kinds() -> None:
    only = frozenset({FaultKind.KILL_ENGINE})
    assert {f.kind for f in draw_schedule(1, faults=10, kinds=only)} == set(only)
    assert describe(draw_schedule(1, faults=1, kinds=only)[0]).startswith("kill-engine (")


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 0 faults"):
        draw_schedule(1, faults=-1)
    with pytest.raises(ValueError, match="no fault kind"):
        draw_schedule(1, faults=1, kinds=frozenset())


async def _echo_server(task_status: trio.TaskStatus[int]) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                while data := await stream.receive_some():
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(echo, listeners)


async def test_the_proxy_forwards_stalls_slows_and_cuts(autojump_clock: trio.abc.Clock) -> None:
    del autojump_clock  # the delays below run on trio's virtual clock
    async with trio.open_nursery() as nursery, open_link_proxy() as proxy:
        port = await nursery.start(_echo_server)
        proxy.target = ("127.0.0.1", port)
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with stream:
            await _faults(proxy, stream)
        nursery.cancel_scope.cancel()


async def _faults(proxy: LinkProxy, stream: trio.SocketStream) -> None:
    await stream.send_all(b"ping")
    assert await stream.receive_some() == b"ping"

    proxy.stall()
    await stream.send_all(b"held")
    with trio.move_on_after(5) as waited:
        await stream.receive_some()
    assert waited.cancelled_caught  # nothing came back while stalled
    proxy.heal()
    assert await stream.receive_some() == b"held"

    proxy.slow(0.25)
    start = trio.current_time()
    await stream.send_all(b"slow")
    assert await stream.receive_some() == b"slow"
    assert trio.current_time() - start >= 0.5  # delayed each way
    proxy.heal()

    proxy.cut()
    assert await stream.receive_some() == b""  # the connection was closed
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as refused:
        assert await refused.receive_some() == b""  # new ones too, until healed
    proxy.heal()
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as again:
        await again.send_all(b"back")
        assert await again.receive_some() == b"back"
    assert proxy.connections == 2


def test_a_power_loss_names_its_node_and_the_whole_sites_names_none() -> None:
    node = draw_schedule(3, faults=1, kinds=frozenset({FaultKind.POWER_LOSS}))[0]
    site = draw_schedule(3, faults=1, kinds=frozenset({FaultKind.POWER_LOSS_ALL}))[0]
    assert describe(node).startswith(f"power-loss {node.target} (")
    assert describe(site).startswith("power-loss-all (")
    assert site.target == 0
