"""The simulated network: the product's own RPC over it, delays, partitions, resets, crashes."""

from __future__ import annotations

import functools
import random

import pytest
import trio
import trio.testing

from lhtrio.errors import ConflictError, ConnectionLostError
from lhtrio.net import Address, open_rpc_client, serve_rpc
from lhtrio.net.network import NETWORK
from lhtrio.sim.network import HOST, LinkFaults, SimNetwork
from lhtrio.wire import Done, Identity, Ping, Request, Role


def _echo(request: Request) -> Done:
    assert isinstance(request, Ping)
    return Done(0)


async def _server(net: SimNetwork, host: str, nursery: trio.Nursery) -> Address:
    HOST.set(host)
    serve = functools.partial(serve_rpc, identity=Identity(instance="srv", role=Role.NODE))
    bound = await nursery.start(serve, _echo, host, 0)
    HOST.set("c")
    return Address(host=bound[0], port=bound[1])


@pytest.fixture
async def net() -> SimNetwork:
    net = SimNetwork(random.Random(1))
    NETWORK.set(net)  # (pytest-trio: a test sees its async fixtures' context, and only it)
    return net


async def test_rpc_runs_over_the_simulated_network(
    net: SimNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        address = await _server(net, "s", nursery)
        assert str(address) == "tcp://s:10000"
        async with open_rpc_client(address, role=Role.NODE) as rpc:
            started = trio.current_time()
            await rpc.ping()
            assert 0 < trio.current_time() - started < 0.01  # two latencies, simulated
        assert net.counters["connects"] == 1
        nursery.cancel_scope.cancel()


async def test_a_taken_address_is_refused(
    net: SimNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    await net.listen(Address(host="s", port=7))
    with pytest.raises(ConflictError, match="tcp://s:7"):
        await net.listen(Address(host="s", port=7))


async def test_a_partition_holds_bytes_until_healed(
    net: SimNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        address = await _server(net, "s", nursery)
        async with open_rpc_client(address, role=Role.NODE) as rpc:
            net.partition("c", "s")
            nursery.start_soon(_heal_at, net, trio.current_time() + 30)
            started = trio.current_time()
            await rpc.ping()  # held, not lost: it arrives once healed
            assert 30 <= trio.current_time() - started < 30.01
        nursery.cancel_scope.cancel()


async def _heal_at(net: SimNetwork, when: float) -> None:
    await trio.sleep_until(when)
    net.heal()


async def test_connects_into_a_partition_hang_and_time_out(
    net: SimNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        address = await _server(net, "s", nursery)
        net.partition("c", "s", both=False)
        with pytest.raises(ConnectionLostError, match="no answer within 10 s"):
            async with open_rpc_client(address, role=Role.NODE):
                pass  # pragma: no cover
        nursery.cancel_scope.cancel()


async def test_a_reset_breaks_connections_and_a_crash_refuses_new_ones(
    net: SimNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        address = await _server(net, "s", nursery)
        async with open_rpc_client(address, role=Role.NODE) as rpc:
            net.reset("c", "s")
            with pytest.raises(ConnectionLostError):
                await rpc.ping()
        net.crash("s")
        with pytest.raises(ConnectionLostError, match="connection refused"):
            async with open_rpc_client(address, role=Role.NODE):
                pass  # pragma: no cover
        nursery.cancel_scope.cancel()


async def test_loss_delays_by_a_retransmission(
    net: SimNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        address = await _server(net, "s", nursery)
        async with open_rpc_client(address, role=Role.NODE) as rpc:
            net.links[("c", "s")] = LinkFaults(loss=1.0, retransmit=2.0)
            started = trio.current_time()
            await rpc.ping()
            assert 2 <= trio.current_time() - started < 2.01
            assert net.counters["delayed"] >= 1
        nursery.cancel_scope.cancel()
