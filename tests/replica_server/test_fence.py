"""A rebuild fences off the replica's older connections (found by the chaos schedules).

A failed replica may still hold writes of the engine's dropped connection (in its socket
buffers, or retransmitted by TCP once a partition heals) and would run them whenever they
arrive: after a rebuild copied newer data into those blocks, that left the replica RW with older
values (docs/reliability.md). ``set_rebuilding`` now raises a fence: writes, unmaps and zeroes
of connections opened before it are refused with CONFLICT and change nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lhtrio.errors import ConflictError
from lhtrio.net import open_rpc_client
from lhtrio.wire import Done, Flush, Unmap, Write
from lhtrio.wire.messages import Zero, ZeroMode
from tests.replica_server.test_replica_server import read, replica_process

pytestmark = pytest.mark.real

BLOCK = 4096


async def test_writes_of_a_connection_older_than_a_rebuild_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "vol-r-1"
    async with (
        replica_process(d, "--size", "4Mi", "--volume", "vol") as (address, _),
        open_rpc_client(address, volume="vol") as old,
        open_rpc_client(address, volume="vol") as new,
    ):
        assert await old.call(Write(0, b"o" * BLOCK)) == Done(BLOCK)
        await new.call_control("set_rebuilding", rebuilding=True)  # the rebuild's connection

        for request in (
            Write(0, b"x" * BLOCK),
            Unmap(0, BLOCK),
            Zero(0, BLOCK, ZeroMode.ALLOCATE.value),
        ):
            with pytest.raises(ConflictError, match="a rebuild into it started on a newer"):
                await old.call(request)
        assert await read(old, 0, BLOCK) == b"o" * BLOCK  # refused: nothing changed
        assert await old.call(Flush()) == Done(0)  # reads and flushes are still answered

        assert await new.call(Write(0, b"n" * BLOCK)) == Done(BLOCK)
        assert await read(new, 0, BLOCK) == b"n" * BLOCK
        await new.call_control("set_rebuilding", rebuilding=False)  # the same connection goes on
        assert await new.call(Write(BLOCK, b"m" * BLOCK)) == Done(BLOCK)

        # A connection opened after the fence writes as any other.
        async with open_rpc_client(address, volume="vol") as later:
            assert await later.call(Write(2 * BLOCK, b"l" * BLOCK)) == Done(BLOCK)
            assert await read(later, 0, 3 * BLOCK) == b"n" * BLOCK + b"m" * BLOCK + b"l" * BLOCK
