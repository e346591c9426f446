"""Away logs: which regions a failed replica may lack."""

from __future__ import annotations

from lhtrio.engine.dirty import REGION, DirtyTracker
from lhtrio.wire import Flush, Read, Unmap, Write

MiB = 1 << 20


def test_a_failed_replica_may_lack_what_was_not_flushed_and_what_came_after() -> None:
    dirty = DirtyTracker(64 * MiB)
    assert dirty.note([Write(0, b"x" * 4096, False), Write(10 * MiB, b"y", False)]) is None
    token = dirty.note([Flush()])
    assert token is not None
    dirty.flushed(token)  # regions 0 and 5 are durable on every replica now
    dirty.note([Write(20 * MiB - 1, b"zz", False)])  # straddles regions 9 and 10: not flushed
    dirty.away("b")
    dirty.note([Write(40 * MiB, b"w" * 4096, True), Read(0, 4096), Unmap(60 * MiB, 2 * MiB)])
    assert dirty.take("b") == [
        (9 * REGION, 2 * REGION),
        (20 * REGION, REGION),
        (30 * REGION, REGION),
    ]
    assert dirty.take("b") is None  # taken once


def test_a_flush_in_flight_when_the_replica_fails_does_not_count() -> None:
    dirty = DirtyTracker(8 * MiB)
    dirty.note([Write(0, b"x", False)])
    token = dirty.note([Flush()])
    assert token is not None
    dirty.away("b")  # failed during that flush: it may not have made region 0 durable
    dirty.flushed(token)
    assert dirty.take("b") == [(0, REGION)]


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
    dirty = DirtyTracker(1 << 40)
    dirty.away("b")
    dirty.note([Write(i * 2 * REGION, b"x", False) for i in range(60_000)])
    assert dirty.take("b") is None
