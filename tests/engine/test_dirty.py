"""Away logs: which blocks a failed replica may lack."""

from __future__ import annotations

from lhtrio.engine.dirty import BLOCK, UNIT, DirtyTracker
from lhtrio.wire import Flush, Read, Unmap, Write

MiB = 1 << 20


def test_a_failed_replica_may_lack_what_was_not_flushed_and_what_came_after() -> None:
    dirty = DirtyTracker(64 * MiB)
    assert dirty.note([Write(0, b"x" * 4096, False), Write(MiB, b"y", False)]) is None
    token = dirty.note([Flush()])
    assert token is not None
    dirty.flushed(token)  # durable on every replica now
    dirty.note([Write(10 * UNIT - 1, b"zz", False)])  # straddles units 9 and 10: not flushed
    dirty.away("b")
    dirty.note(
        [
            Write(20 * UNIT + BLOCK, b"w" * BLOCK, True),
            Read(0, 4096),
            Unmap(30 * UNIT, 2 * BLOCK),
            Write(40 * UNIT + 100, b"v" * 5000, False),  # blocks 1 and 2 of unit 40
        ]
    )
    assert dirty.take("b") == [
        (9 * UNIT, 2 * UNIT),  # unflushed: whole units
        (20 * UNIT + BLOCK, BLOCK),  # while away: exact blocks
        (30 * UNIT, 2 * BLOCK),
        (40 * UNIT, 2 * BLOCK),
    ]
    assert dirty.take("b") is None  # taken once


def test_a_flush_in_flight_when_the_replica_fails_does_not_count() -> None:
    dirty = DirtyTracker(8 * MiB)
    dirty.note([Write(0, b"x", False)])
    token = dirty.note([Flush()])
    assert token is not None
    dirty.away("b")  # failed during that flush: it may not have made unit 0 durable
    dirty.flushed(token)
    assert dirty.take("b") == [(0, UNIT)]


def test_long_writes_mark_every_block_they_cover() -> None:
    dirty = DirtyTracker(64 * MiB + 3 * BLOCK)  # a size that is not a whole number of units
    dirty.away("b")
    dirty.note([Write(3 * BLOCK, bytes(40 * BLOCK), False), Unmap(64 * MiB, 3 * BLOCK)])
    assert dirty.take("b") == [(3 * BLOCK, 40 * BLOCK), (64 * MiB, 3 * BLOCK)]


def test_logs_are_forgotten_when_files_change_behind_them() -> None:
    dirty = DirtyTracker(8 * MiB)
    dirty.away("a")
    dirty.away("b")
    dirty.forget("a")
    assert not dirty.has("a")
    assert dirty.take("b") == []  # failed with nothing unflushed, nothing written since
    dirty.away("c")
    dirty.resize(16 * MiB)
    assert dirty.take("c") is None
    dirty.away("d")
    dirty.note([Write(15 * MiB, b"x", False)])
    dirty.forget()
    assert dirty.take("d") is None


def test_a_log_too_fragmented_to_send_is_dropped() -> None:
    dirty = DirtyTracker(1 << 30)
    dirty.away("b")
    dirty.note([Write(i * 2 * BLOCK, b"x", False) for i in range(60_000)])
    assert dirty.take("b") is None
