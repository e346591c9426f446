"""The engine's side of the write-intent maps (lhtrio.engine.consistency), in process.

The start-up resync makes replicas that differ in marked regions equal (and leaves their
revision counters equal); the sweep clears marks once writes are durable everywhere, riding on
the client's flushes and flushing itself only when none come.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from lhtrio.engine.consistency import OWN_FLUSH_AFTER, sweep_intents
from lhtrio.engine.server import serve_engine
from lhtrio.engine.volume import Volume
from lhtrio.net import open_rpc_client
from lhtrio.wire import Data, Read, Role, Write
from tests.engine.test_volume import AUTOJUMP, MiB, replicas, volume

REGION = 4 * MiB
SWEEP_INTERVAL = 1.0  # (the engine's is 5 s; shorter here: fewer virtual seconds to jump)


async def _call(address: str, name: str, **args: Any) -> Any:
    async with open_rpc_client(address, volume="v", role=Role.REPLICA) as client:
        return await client.call_control(name, **args)


async def _read(address: str, offset: int, length: int) -> bytes:
    async with open_rpc_client(address, volume="v", role=Role.REPLICA) as client:
        (reply,) = await client.call_many([Read(offset, length)])
    assert isinstance(reply, Data)
    return bytes(reply.data)


async def test_replicas_that_differ_where_writes_were_in_flight_are_made_equal(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=2, stalled=0) as (a, b):
        # As an engine killed mid-write leaves them: a has the new block, b the old one.
        for address, fill in ((a, b"\x01"), (b, b"\x01")):
            async with open_rpc_client(address, volume="v", role=Role.REPLICA) as client:
                await client.call_many([Write(0, fill * 8192)])
                await client.call_control("intent_clear", everything=True)
        async with open_rpc_client(a, volume="v", role=Role.REPLICA) as client:
            await client.call_many([Write(4096, b"\x02" * 4096)])
        assert await _call(a, "intent_regions") == [[0, REGION]]
        assert await _call(b, "intent_regions") == []
        assert await _read(a, 0, 8192) != await _read(b, 0, 8192)
        async with trio.open_nursery() as nursery:
            host, port, _ = await nursery.start(
                functools.partial(serve_engine, "v", 4 * MiB, [a, b])
            )
            async with open_rpc_client(f"{host}:{port}", role=Role.ENGINE) as engine:
                info = await engine.call_control("info")
            nursery.cancel_scope.cancel()
        assert info["resync"]["state"] == "done"
        assert info["resync"]["differing_blocks"] == 1
        assert [r["mode"] for r in info["replicas"]] == ["RW", "RW"]
        assert await _read(a, 0, 8192) == await _read(b, 0, 8192) == b"\x01" * 4096 + b"\x02" * 4096
        counters = [(await _call(x, "info"))["persisted_revision_counter"] for x in (a, b)]
        assert counters[0] == counters[1]  # the next start takes neither for stale
        assert await _call(a, "intent_regions") == await _call(b, "intent_regions") == []


@asynccontextmanager
async def swept_after_a_write(
    tmp_path: Path,
) -> AsyncIterator[tuple[list[str], Volume, trio.MemoryReceiveChannel[int], trio.Nursery]]:
    """Two replicas, a volume with its write-intent sweep (each sweep's count of regions still
    marked arrives on the channel), and one write made."""
    send, sweeps = trio.open_memory_channel[int](100)
    async with (
        replicas(tmp_path, healthy=2, stalled=0) as addresses,
        volume(addresses) as vol,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(
            functools.partial(sweep_intents, vol, interval=SWEEP_INTERVAL, swept=send.send_nowait)
        )
        await vol.write_batch([(0, b"x" * 4096, False)])
        yield addresses, vol, sweeps, nursery


@pytest.mark.slow
async def test_a_sweep_rides_on_the_clients_flushes(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with swept_after_a_write(tmp_path) as (addresses, vol, sweeps, nursery):
        assert await _call(addresses[0], "intent_regions") == [[0, REGION]]

        async def client_flushes() -> None:
            while True:
                await trio.sleep(SWEEP_INTERVAL / 2)
                await vol.flush()

        nursery.start_soon(client_flushes)
        start = trio.current_time()
        async for left in sweeps:
            if not left:
                break
        # Two sweeps after the last write, each as soon as a client's flush came.
        assert trio.current_time() - start <= 4 * SWEEP_INTERVAL
        assert vol.fanouts.flush_mark == (trio.current_time() - start) // (SWEEP_INTERVAL / 2)
        for address in addresses:
            assert await _call(address, "intent_regions") == []
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_without_the_clients_flushes_a_sweep_flushes_itself_rarely(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with swept_after_a_write(tmp_path) as (addresses, vol, sweeps, nursery):
        start = trio.current_time()
        first = await sweeps.receive()
        assert first == 1  # written in the previous generation: still marked
        took = trio.current_time() - start
        # The sweep waited that long for a client's flush, then flushed itself: once.
        assert OWN_FLUSH_AFTER * SWEEP_INTERVAL <= took < (OWN_FLUSH_AFTER + 2) * SWEEP_INTERVAL
        assert vol.fanouts.flush_mark == 1
        # Nothing written since: the next sweep clears the rest, with no flush of its own.
        assert await sweeps.receive() == 0
        assert trio.current_time() - start < (OWN_FLUSH_AFTER + 3) * SWEEP_INTERVAL
        assert vol.fanouts.flush_mark == 1
        for address in addresses:
            assert await _call(address, "intent_regions") == []
        nursery.cancel_scope.cancel()
