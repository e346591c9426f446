"""``serve_engine`` in-process: how an engine ends."""

from __future__ import annotations

import functools
from pathlib import Path

import trio
import trio.testing

from lhtrio.engine.server import serve_engine
from tests.engine.test_volume import AUTOJUMP, MiB, replicas


async def test_a_cancelled_engine_ends_after_its_final_flush_not_at_its_deadline(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses:
        with trio.CancelScope() as engine:
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve_engine, "v", 4 * MiB, addresses))
                stop = trio.current_time()
                engine.cancel()
        # The final flush was answered (its deadline is 10 s, virtual time here).
        assert trio.current_time() - stop < 5
