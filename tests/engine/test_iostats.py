"""The volume's I/O counters: every read and write counted once, with its bytes and its latency
(from the batch's start to its answer), on the fast path (callbacks) and the awaitable one."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from lhtrio.models.stats import IoTotals
from tests.engine.test_volume import AUTOJUMP, _Outcomes, replicas, volume


async def test_reads_and_writes_are_counted_once_with_their_bytes(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses, volume(addresses) as vol:
        assert vol.io.totals() == IoTotals()
        outcomes = _Outcomes()
        assert vol.start_writes([(0, b"w" * 4096, False), (4096, b"v" * 512, True)], outcomes)
        assert await outcomes.next() is None
        assert vol.start_reads([(0, 4096), (4096, 512)], outcomes)
        await outcomes.next()
        await vol.write_batch([(8192, b"x" * 8192, False)])
        await vol.read_batch([(8192, 8192)])
        await vol.flush()  # not a read or a write
        await vol.trim(0, 4096)
        totals = vol.io.totals()
        assert (totals.write_ops, totals.write_bytes) == (3, 4096 + 512 + 8192)
        assert (totals.read_ops, totals.read_bytes) == (3, 4096 + 512 + 8192)
        assert totals.write_seconds > 0
        assert totals.read_seconds > 0


async def test_a_refused_fast_path_is_counted_by_the_slow_one_only(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as addresses, volume(addresses) as vol:
        outcomes = _Outcomes()
        async with vol.quiesced():
            assert not vol.start_writes([(0, b"w" * 4096, False)], outcomes)
            assert not vol.start_reads([(0, 4096)], outcomes)
        assert vol.io.totals() == IoTotals()


@pytest.mark.slow
async def test_latency_is_the_time_to_the_answer_per_request(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=1, stalled=1) as addresses, volume(addresses) as vol:
        # the stalled replica is failed after 8 s: the batch's two writes waited that long each
        await vol.write_batch([(0, b"x" * 4096, False), (4096, b"y" * 4096, False)])
        totals = vol.io.totals()
        assert totals.write_ops == 2
        assert 2 * 8 <= totals.write_seconds < 2 * 16
        outcomes = _Outcomes()
        assert vol.start_writes([(0, b"z" * 4096, False)], outcomes)  # one RW replica left
        assert await outcomes.next() is None
        assert vol.io.totals().write_ops == 3
        assert vol.io.totals().write_seconds - totals.write_seconds < 1
