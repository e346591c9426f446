"""The register model (lhtrio.verify.model): hand-made histories, then generated ones.

The generated histories come from a device that keeps its promise (a write lands somewhere
between its invocation and its reply, a flush makes everything landed before its reply durable,
a crash keeps the durable value or any value landed since, or a write still in flight): the
checker must accept every read-back it can give. Each known-bad read-back is made from a good
one by one change the model must catch: an older value than a durable write's, zeros where a
durable write was, a torn block, another block's value, a stamp nobody wrote.
"""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhtrio.verify.model import (
    INITIAL,
    NEVER,
    Decoded,
    Flush,
    History,
    Stamp,
    ViolationKind,
    Write,
    check,
    decode_block,
    encode_block,
    initial_digest,
    unstable,
)

SIZE = 512  # a smaller block keeps the generated runs fast; the model is size-agnostic


def history(blocks: int = 4, *, multi_conn: bool = True) -> History:
    return History(run=7, blocks=blocks, block_size=SIZE, multi_conn=multi_conn)


def value(h: History, write: Write, block: int) -> bytes:
    return encode_block(run=h.run, block=block, stamp=write.stamp, size=h.block_size)


def kinds(
    h: History, reads: dict[int, bytes], *, as_of: int | None = None
) -> list[tuple[int, ViolationKind]]:
    return [(v.block, v.kind) for v in check(h, reads, as_of=as_of).violations]


# -- blocks --------------------------------------------------------------------------------------


def test_a_block_round_trips_and_any_flipped_byte_is_torn() -> None:
    data = encode_block(run=1, block=9, stamp=Stamp(writer=2, seq=3))
    assert len(data) == 4096
    block = decode_block(data)
    assert (block.kind, block.run, block.block, block.stamp) == (
        Decoded.STAMPED,
        1,
        9,
        Stamp(writer=2, seq=3),
    )
    for i in (0, 40, 2048, 4095):
        flipped = bytearray(data)
        flipped[i] ^= 1
        assert decode_block(bytes(flipped)).kind in {Decoded.TORN, Decoded.GARBAGE}
    assert decode_block(bytes(4096)).kind is Decoded.ZERO
    assert decode_block(b"x" * 4096).kind is Decoded.GARBAGE


def test_half_of_one_write_and_half_of_another_is_torn() -> None:
    a = encode_block(run=1, block=0, stamp=Stamp(writer=0, seq=1))
    b = encode_block(run=1, block=0, stamp=Stamp(writer=0, seq=2))
    assert decode_block(a[:2048] + b[2048:]).kind is Decoded.TORN
    assert decode_block(b[:2048] + a[2048:]).kind is Decoded.TORN


# -- hand-made histories -------------------------------------------------------------------------


def test_an_acked_flushed_write_must_survive() -> None:
    h = history()
    old = h.invoke_write(writer=0, first=0)
    h.ack_write(old)
    new = h.invoke_write(writer=0, first=0)
    h.ack_write(new)
    h.ack_flush(h.invoke_flush())
    assert kinds(h, {0: value(h, new, 0)}) == []
    assert kinds(h, {0: value(h, old, 0)}) == [(0, ViolationKind.STALE)]
    assert kinds(h, {0: bytes(SIZE)}) == [(0, ViolationKind.STALE)]
    # Blocks the workload never wrote read as zeros.
    assert kinds(h, {1: bytes(SIZE)}) == []


def test_an_unflushed_write_may_be_lost_but_not_an_older_flushed_one() -> None:
    h = history()
    a = h.invoke_write(writer=0, first=0)
    h.ack_write(a)
    h.ack_flush(h.invoke_flush())
    b = h.invoke_write(writer=0, first=0)
    h.ack_write(b)
    assert kinds(h, {0: value(h, a, 0)}) == []
    assert kinds(h, {0: value(h, b, 0)}) == []
    assert kinds(h, {0: bytes(SIZE)}) == [(0, ViolationKind.STALE)]


def test_a_flush_covers_only_writes_acked_before_it_was_sent() -> None:
    h = history()
    a = h.invoke_write(writer=0, first=0)
    h.ack_write(a)
    b = h.invoke_write(writer=1, first=0)
    flush = h.invoke_flush()
    h.ack_write(b)  # acknowledged after the flush was sent: not covered by it
    h.ack_flush(flush)
    report = check(h, {0: value(h, a, 0)})
    assert report.ok
    assert (report.writes, report.acked_writes, report.durable_writes) == (2, 2, 1)
    # b was concurrent with nothing durable after it: both values are allowed, zeros are not.
    assert kinds(h, {0: value(h, b, 0)}) == []
    assert kinds(h, {0: bytes(SIZE)}) == [(0, ViolationKind.STALE)]


def test_a_failed_or_unanswered_flush_makes_nothing_durable() -> None:
    h = history()
    a = h.invoke_write(writer=0, first=0)
    h.ack_write(a)
    h.fail_flush(h.invoke_flush())
    h.invoke_flush()  # never answered
    assert kinds(h, {0: bytes(SIZE)}) == []
    assert check(h, {0: bytes(SIZE)}).acked_flushes == 0


def test_concurrent_writes_may_land_in_either_order() -> None:
    h = history()
    a = h.invoke_write(writer=0, first=0)
    b = h.invoke_write(writer=1, first=0)
    h.ack_write(b)
    h.ack_write(a)
    h.ack_flush(h.invoke_flush())
    assert kinds(h, {0: value(h, a, 0)}) == []
    assert kinds(h, {0: value(h, b, 0)}) == []


def test_an_unacknowledged_write_may_land_even_after_a_durable_one() -> None:
    h = history()
    lost = h.invoke_write(writer=0, first=0)  # no reply: the connection died
    failed = h.invoke_write(writer=1, first=0)
    h.fail_write(failed)
    d = h.invoke_write(writer=2, first=0)
    h.ack_write(d)
    h.ack_flush(h.invoke_flush())
    for w in (lost, failed, d):
        assert kinds(h, {0: value(h, w, 0)}) == []


def test_without_multi_conn_a_flush_covers_its_own_connection_only() -> None:
    h = history(multi_conn=False)
    a = h.invoke_write(writer=0, first=0, conn=0)
    h.ack_write(a)
    h.ack_flush(h.invoke_flush(conn=1))
    assert kinds(h, {0: bytes(SIZE)}) == []
    h.ack_flush(h.invoke_flush(conn=0))
    assert kinds(h, {0: bytes(SIZE)}) == [(0, ViolationKind.STALE)]


def test_a_flush_covers_other_connections_only_if_in_use_when_the_write_was_acked() -> None:
    """A flush on a connection opened after the write's reply (the server may have been
    restarted: the writer's own connection broke) does not make it durable."""
    h = history()
    a = h.invoke_write(writer=0, first=0, conn=1)
    h.ack_write(a)
    # Connection 1 broke with nothing flushed; connection 2 is new: its flush covers only what
    # it saw (nothing), so the crash could still lose a.
    h.ack_flush(h.invoke_flush(conn=2))
    assert kinds(h, {0: bytes(SIZE)}) == []
    assert check(h, {0: bytes(SIZE)}).durable_writes == 0
    # A connection in use before a's reply (connection 3's first request) covers it.
    h2 = history()
    h2.invoke_write(writer=1, first=1, conn=3)  # connection 3 in use (this write never answered)
    b = h2.invoke_write(writer=0, first=0, conn=1)
    h2.ack_write(b)
    h2.ack_flush(h2.invoke_flush(conn=3))
    assert kinds(h2, {0: bytes(SIZE)}) == [(0, ViolationKind.STALE)]


def test_multi_block_writes_stamp_each_block() -> None:
    h = history()
    w = h.invoke_write(writer=0, first=1, count=3)
    h.ack_write(w)
    h.ack_flush(h.invoke_flush())
    payload = h.payload(w)
    reads = {b: payload[(b - 1) * SIZE : b * SIZE] for b in (1, 2, 3)}
    assert kinds(h, reads) == []
    # Block 2's bytes in block 3: a misplaced write (the engine wrote the wrong offset).
    assert kinds(h, {**reads, 3: reads[2]}) == [(3, ViolationKind.MISPLACED)]


def test_foreign_runs_unknown_stamps_garbage_and_torn_blocks_are_violations() -> None:
    h = history()
    h.ack_write(h.invoke_write(writer=0, first=0))
    other_run = encode_block(run=8, block=0, stamp=Stamp(writer=0, seq=1), size=SIZE)
    unknown = encode_block(run=7, block=0, stamp=Stamp(writer=0, seq=99), size=SIZE)
    torn = bytearray(unknown)
    torn[100] ^= 0xFF
    assert kinds(h, {0: other_run}) == [(0, ViolationKind.MISPLACED)]
    assert kinds(h, {0: unknown}) == [(0, ViolationKind.UNKNOWN)]
    assert kinds(h, {0: bytes(torn)}) == [(0, ViolationKind.TORN)]
    assert kinds(h, {0: b"\x01" * SIZE}) == [(0, ViolationKind.GARBAGE)]


def test_a_volume_written_before_reads_its_initial_value_until_a_durable_write() -> None:
    h = history()
    before = b"\x05" * SIZE
    h.initial[0] = initial_digest(before)
    assert kinds(h, {0: before}) == []
    assert kinds(h, {0: bytes(SIZE)}) == [(0, ViolationKind.GARBAGE)]
    h.ack_write(h.invoke_write(writer=0, first=0))
    h.ack_flush(h.invoke_flush())
    assert kinds(h, {0: before}) == [(0, ViolationKind.STALE)]


def test_bad_input_is_refused_and_changes_nothing() -> None:
    h = history(blocks=4)
    with pytest.raises(ValueError, match=r"outside the 4 blocks"):
        h.invoke_write(writer=0, first=3, count=2)
    with pytest.raises(ValueError, match=r"writer -1"):
        h.invoke_write(writer=-1, first=0)
    assert h.writes == []
    w = h.invoke_write(writer=0, first=0)
    assert w.stamp == Stamp(writer=0, seq=1)  # the refused ones took no sequence
    h.ack_write(w)
    with pytest.raises(ValueError, match="already completed"):
        h.fail_write(w)
    assert not w.failed
    assert w.acked != NEVER


# -- generated histories -------------------------------------------------------------------------


@attrs.define
class Device:
    """A device that keeps the promise, with a crash that keeps any value allowed to survive."""

    h: History
    volatile: dict[int, Write | None] = attrs.field(factory=dict)
    durable: dict[int, Write | None] = attrs.field(factory=dict)
    since: dict[int, list[Write]] = attrs.field(factory=dict)  # landed since the last flush
    unlanded: list[Write] = attrs.field(factory=list)
    landed: list[Write] = attrs.field(factory=list)  # landed, reply not yet received

    def land(self, w: Write) -> None:
        self.unlanded.remove(w)
        self.landed.append(w)
        for b in w.blocks:
            self.volatile[b] = w
            self.since.setdefault(b, []).append(w)

    def flush_done(self) -> None:
        self.durable = dict(self.volatile)
        self.since = {}

    def crash(self, rng: random.Random) -> dict[int, bytes]:
        """Every block: its durable value, or any value landed since, or a write in flight."""
        return {
            b: bytes(self.h.block_size) if w is None else value(self.h, w, b)
            for b, w in self.crash_values(rng).items()
        }

    def crash_values(self, rng: random.Random) -> dict[int, Write | None]:
        picks = {}
        for b in range(self.h.blocks):
            choices: list[Write | None] = [self.durable.get(b)]
            choices += self.since.get(b, [])
            choices += [w for w in self.unlanded if b in w.blocks]
            picks[b] = rng.choice(choices)
        return picks


def run_device(
    data: st.DataObject,
    *,
    multi_conn: bool,
    midway: list[tuple[int, dict[int, bytes]]] | None = None,
    restarts: bool = False,
) -> tuple[History, dict[int, bytes]]:
    """A run of the device; with ``midway``, reads of the whole device taken at random moments
    while the run goes on (what each block holds then), with the history's clock then; with
    ``restarts``, the device crashes now and then (keeping any value a crash may keep) and the
    client goes on over a new connection, its old requests never answered."""
    h = history(blocks=data.draw(st.integers(1, 6)), multi_conn=multi_conn)
    dev = Device(h)
    flushes: list[Flush] = []
    conn = 0
    steps = ["write", "land", "ack", "flush", "flushed", "fail"] + (["restart"] if restarts else [])
    for _ in range(data.draw(st.integers(0, 40))):
        if midway is not None and data.draw(st.booleans()):
            midway.append(
                (
                    h.clock,
                    {
                        b: bytes(SIZE) if (w := dev.volatile.get(b)) is None else value(h, w, b)
                        for b in range(h.blocks)
                    },
                )
            )
        step = data.draw(st.sampled_from(steps))
        if step == "restart":
            kept = dev.crash_values(random.Random(data.draw(st.integers(0, 2**32))))
            dev.volatile = dict(kept)
            dev.durable = dict(kept)  # what survived the crash is on disk
            dev.since, dev.unlanded, dev.landed, flushes = {}, [], [], []
            conn += 1
        elif step == "write":
            first = data.draw(st.integers(0, h.blocks - 1))
            count = data.draw(st.integers(1, h.blocks - first))
            writer = data.draw(st.integers(0, 2))
            dev.unlanded.append(h.invoke_write(writer=writer, first=first, count=count, conn=conn))
        elif step == "land" and dev.unlanded:
            dev.land(data.draw(st.sampled_from(dev.unlanded)))
        elif step == "ack" and (answerable := [w for w in dev.landed if not w.failed]):
            w = data.draw(st.sampled_from(answerable))
            dev.landed.remove(w)
            h.ack_write(w)
        elif step == "fail" and (failable := [w for w in dev.unlanded if not w.failed]):
            w = data.draw(st.sampled_from(failable))
            h.fail_write(w)  # may still land later: it stays in flight for the device
        elif step == "flush":
            flushes.append(h.invoke_flush(conn=conn))
        elif step == "flushed" and flushes:
            f = data.draw(st.sampled_from(flushes))
            flushes.remove(f)
            dev.flush_done()
            h.ack_flush(f)
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    return h, dev.crash(rng)


def durable_newest(h: History, b: int) -> Write | None:
    """Written independently of the model: the newest-invoked write to b some acked flush covers."""
    covered = [
        w
        for w in h.writes
        if b in w.blocks
        and any(f.acked != NEVER and w.acked < f.invoked for f in h.flushes)
        and w.acked != NEVER
    ]
    return max(covered, key=lambda w: w.invoked, default=None)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_read_back_of_a_correct_device_is_accepted(data: st.DataObject) -> None:
    h, reads = run_device(data, multi_conn=True)
    report = check(h, reads)
    assert report.ok, report.violations
    assert report.blocks == h.blocks


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_known_bad_read_back_is_caught(data: st.DataObject) -> None:
    h, reads = run_device(data, multi_conn=True)
    b = data.draw(st.integers(0, h.blocks - 1))
    newest = durable_newest(h, b)
    bad: dict[str, tuple[bytes, ViolationKind]] = {
        "torn": (reads[b][: SIZE // 2] + b"\xff" * (SIZE // 2), ViolationKind.GARBAGE),
        "unknown": (
            encode_block(run=h.run, block=b, stamp=Stamp(writer=9, seq=1), size=SIZE),
            ViolationKind.UNKNOWN,
        ),
    }
    stamped = decode_block(reads[b])
    if stamped.kind is Decoded.STAMPED:
        torn = bytearray(reads[b])
        torn[SIZE // 2] ^= 1
        bad["torn"] = (bytes(torn), ViolationKind.TORN)
    if newest is not None:
        bad["zeros"] = (bytes(SIZE), ViolationKind.STALE)
        older = [w for w in h.writes if b in w.blocks and w.acked < newest.invoked]
        if older:
            bad["older"] = (value(h, data.draw(st.sampled_from(older)), b), ViolationKind.STALE)
    if h.blocks > 1:
        other = (b + 1) % h.blocks
        theirs = [w for w in h.writes if other in w.blocks]
        if theirs:
            bad["misplaced"] = (
                value(h, data.draw(st.sampled_from(theirs)), other),
                ViolationKind.MISPLACED,
            )
    name = data.draw(st.sampled_from(sorted(bad)))
    data_bad, kind = bad[name]
    assert kinds(h, {**reads, b: data_bad}) == [(b, kind)], name


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_device_that_crashes_and_restarts_under_the_client_is_accepted(
    data: st.DataObject,
) -> None:
    """Writes answered before a crash but never flushed may be lost, even though a flush on
    the connection made after the restart is answered: it covers nothing of before."""
    h, reads = run_device(data, multi_conn=True, restarts=True)
    report = check(h, reads)
    assert report.ok, report.violations


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_without_multi_conn_a_correct_device_is_accepted_too(data: st.DataObject) -> None:
    h, reads = run_device(data, multi_conn=False)
    assert check(h, reads).ok


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_reads_while_writes_go_on_are_judged_as_of_their_start(data: st.DataObject) -> None:
    midway: list[tuple[int, dict[int, bytes]]] = []
    h, _ = run_device(data, multi_conn=True, midway=midway)
    for as_of, reads in midway:
        assert check(h, reads, as_of=as_of).ok
        # Zeros where a write was durable by then: the model sees it, as of then.
        durable = {
            b
            for w in h.writes
            for b in w.blocks
            if any(f.acked <= as_of and w.acked < f.invoked for f in h.flushes)
        }
        for b in durable:
            assert kinds(h, {**reads, b: bytes(SIZE)}, as_of=as_of) == [(b, ViolationKind.STALE)]


def test_a_read_as_of_an_earlier_moment_ignores_later_flushes() -> None:
    h = history()
    a = h.invoke_write(writer=0, first=0)
    h.ack_write(a)
    before = h.clock
    h.ack_flush(h.invoke_flush())
    assert kinds(h, {0: bytes(SIZE)}, as_of=before) == []
    assert kinds(h, {0: bytes(SIZE)}, as_of=h.clock) == [(0, ViolationKind.STALE)]


def test_reads_that_differ_with_no_write_between_are_unstable() -> None:
    h = history()
    a, b = h.invoke_write(writer=0, first=0), h.invoke_write(writer=1, first=0)
    first = {0: value(h, a, 0), 1: bytes(SIZE)}
    second = {0: value(h, b, 0), 1: bytes(SIZE)}
    assert unstable(first, first) == ()
    (v,) = unstable(first, second)
    assert (v.block, v.kind) == (0, ViolationKind.UNSTABLE)
    assert v.detail == "read writer 0 #1, then writer 1 #1 with no write between"
    # Both writes unanswered: either may land between the reads, nothing to say.
    assert unstable(first, second, h) == ()
    h.ack_write(a)
    h.ack_write(b)
    assert [v.block for v in unstable(first, second, h)] == [0]


def test_the_initial_stamp_is_no_write() -> None:
    assert INITIAL.writer < 0
