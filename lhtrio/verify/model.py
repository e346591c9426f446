"""The register model of the no-acknowledged-write-lost checker: pure, no I/O, no trio.

Every block of the volume (4 KiB by default) is a register. A write stamps each block it covers
with who wrote it and when (run, block, writer, sequence) and a checksum over the whole block
(:func:`encode_block`), so a read-back names the write it came from, or shows that it is torn or
garbage (:func:`decode_block`).

A :class:`History` records, in the order they happen (one logical clock, one tick per event),
each write's invocation and acknowledgement and each flush's invocation and acknowledgement.
Whoever drives the device feeds it: the trio NBD workload (:mod:`lhtrio.verify.workload`) or a
simulated client; the history never looks at the device.

What a read-back of block ``b`` may give, after any schedule of faults (:func:`check`):

* A write ``w`` is *durable* once a flush that was invoked after ``w`` was acknowledged has been
  acknowledged (NBD's rule: a flush covers the writes whose replies were received before it was
  sent), on the same connection — or, when the export offers multi-conn, on any connection that
  was already in use when ``w`` was acknowledged (so it reached the same server: a flush sent to
  a server restarted since does not cover what the crash could lose; :class:`_Coverage`).
* The read value ``v`` must be a value of ``b``: the initial one or one some write to ``b`` carried
  (checksum right, block right, writer and sequence known). Otherwise: TORN, GARBAGE, MISPLACED or
  UNKNOWN.
* ``v`` must not be *stale*: there is no durable write ``d`` to ``b`` such that ``v``'s write was
  acknowledged before ``d`` was invoked (``v`` happened before ``d``, and ``d`` survives, so ``v``
  was overwritten for good). The initial value happened before every write. A write never
  acknowledged (no reply, or an error reply) may still land at any moment: it is never stale.
  Writes concurrent with ``d`` may be read in either order (block-device register semantics).

So, per block, with ``M`` the latest invocation among its durable writes, ``v`` is allowed iff
``ack(v) > M`` (with ``ack = ∞`` for writes never acknowledged): one comparison per block, which
keeps the check linear in the history.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import itertools
import struct
from collections.abc import Iterator, Mapping

import attrs

__all__ = [
    "BLOCK_SIZE",
    "INITIAL",
    "Block",
    "Decoded",
    "Flush",
    "History",
    "Report",
    "Stamp",
    "Violation",
    "ViolationKind",
    "Write",
    "check",
    "unstable",
    "decode_block",
    "encode_block",
    "initial_digest",
]

BLOCK_SIZE = 4096
MAGIC = b"lhverify"
# magic, run, block, writer, sequence: 8 + 8 + 8 + 4 + 8 = 36 bytes, then filler, then the
# checksum (BLAKE2b-128) of everything before it.
_HEADER = struct.Struct(">8sQQIQ")
_DIGEST = 16
NEVER = 1 << 62  # the "acknowledgement time" of a write never acknowledged


@attrs.frozen(kw_only=True)
class Stamp:
    """Who wrote a block: (writer, sequence) names one write of one run."""

    writer: int
    seq: int


INITIAL = Stamp(writer=-1, seq=-1)
"""The value a block holds before the workload's first write to it."""


def _filler(header: bytes, size: int) -> bytes:
    seed = hashlib.blake2b(header, digest_size=64).digest()
    return (seed * (size // len(seed) + 1))[:size]


def encode_block(*, run: int, block: int, stamp: Stamp, size: int = BLOCK_SIZE) -> bytes:
    """The bytes one write puts in one block: header, filler derived from it, checksum."""
    header = _HEADER.pack(MAGIC, run, block, stamp.writer, stamp.seq)
    body = header + _filler(header, size - _HEADER.size - _DIGEST)
    return body + hashlib.blake2b(body, digest_size=_DIGEST).digest()


class Decoded(enum.Enum):
    """What a block's bytes are, before the history is asked about them."""

    ZERO = "zero"  # all zeros: a block never written (by anyone)
    STAMPED = "stamped"  # a block of ours, checksum right
    TORN = "torn"  # our magic, but the checksum does not match: parts of several writes
    GARBAGE = "garbage"  # neither zeros nor ours


@attrs.frozen(kw_only=True)
class Block:
    """One decoded block: its kind and, when stamped, its run, block number and stamp."""

    kind: Decoded
    run: int = 0
    block: int = -1
    stamp: Stamp | None = None


def decode_block(data: bytes | memoryview) -> Block:
    """Decode one block's bytes (any size the writer used)."""
    data = bytes(data)
    if not data.strip(b"\0"):
        return Block(kind=Decoded.ZERO)
    if len(data) < _HEADER.size + _DIGEST or not data.startswith(MAGIC):
        return Block(kind=Decoded.GARBAGE)
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        return Block(kind=Decoded.TORN)
    _, run, block, writer, seq = _HEADER.unpack_from(body)
    return Block(kind=Decoded.STAMPED, run=run, block=block, stamp=Stamp(writer=writer, seq=seq))


def initial_digest(data: bytes | memoryview) -> bytes:
    """What :attr:`History.initial` keeps of a block read before the workload."""
    return hashlib.blake2b(bytes(data)).digest()


@attrs.define(eq=False)
class Write:
    """One write request: the blocks it covers and the times of its events."""

    conn: int
    stamp: Stamp
    first: int
    count: int
    invoked: int
    acked: int = NEVER
    failed: bool = False

    @property
    def blocks(self) -> range:
        return range(self.first, self.first + self.count)


@attrs.define(eq=False)
class Flush:
    """One flush request: its connection and the times of its events."""

    conn: int
    invoked: int
    acked: int = NEVER
    failed: bool = False


@attrs.define(eq=False)
class History:
    """What a workload did to a device, in order. Mutable: fed while the workload runs.

    ``multi_conn``: a flush on one connection covers writes acknowledged on any (the export
    offers ``NBD_FLAG_CAN_MULTI_CONN``). ``initial`` maps a block to the digest of what it
    held before the workload (absent: zeros), for runs against a volume already written.
    """

    run: int
    blocks: int
    block_size: int = BLOCK_SIZE
    multi_conn: bool = True
    initial: dict[int, bytes] = attrs.field(factory=dict)
    writes: list[Write] = attrs.field(factory=list)
    flushes: list[Flush] = attrs.field(factory=list)
    _clock: int = 0
    _seqs: dict[int, int] = attrs.field(factory=dict)

    @property
    def clock(self) -> int:
        """The logical time of the last event: ``check(..., as_of=history.clock)`` judges a
        read-back started now, while writes go on."""
        return self._clock

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def invoke_write(self, *, writer: int, first: int, count: int = 1, conn: int = 0) -> Write:
        """Record that a write is about to be sent; its stamp carries the next sequence."""
        if count < 1 or first < 0 or first + count > self.blocks:
            raise ValueError(
                f"write of blocks {first}..{first + count - 1} is outside the "
                f"{self.blocks} blocks of the history"
            )
        if writer < 0:
            raise ValueError(f"writer {writer} must be ≥ 0")
        seq = self._seqs.get(writer, 0) + 1
        self._seqs[writer] = seq
        write = Write(
            conn=conn,
            stamp=Stamp(writer=writer, seq=seq),
            first=first,
            count=count,
            invoked=self._tick(),
        )
        self.writes.append(write)
        return write

    def payload(self, write: Write) -> bytes:
        """The bytes the write sends: one stamped block per block it covers."""
        return b"".join(
            encode_block(run=self.run, block=b, stamp=write.stamp, size=self.block_size)
            for b in write.blocks
        )

    def ack_write(self, write: Write) -> None:
        """The device replied success to the write."""
        self._complete(write)
        write.acked = self._tick()

    def fail_write(self, write: Write) -> None:
        """The device replied an error (or the connection died): the write may have landed."""
        self._complete(write)
        write.failed = True

    def invoke_flush(self, *, conn: int = 0) -> Flush:
        """Record that a flush is about to be sent."""
        flush = Flush(conn=conn, invoked=self._tick())
        self.flushes.append(flush)
        return flush

    def ack_flush(self, flush: Flush) -> None:
        """The device replied success to the flush."""
        self._complete(flush)
        flush.acked = self._tick()

    def fail_flush(self, flush: Flush) -> None:
        """The flush failed or got no reply: it makes nothing durable."""
        self._complete(flush)
        flush.failed = True

    @staticmethod
    def _complete(op: Write | Flush) -> None:
        if op.acked != NEVER or op.failed:
            raise ValueError(f"{op!r} was already completed")


class ViolationKind(enum.Enum):
    STALE = "stale"  # an older value than a durable write's: an acknowledged flushed write lost
    TORN = "torn"  # checksum wrong: a block made of parts of several writes
    GARBAGE = "garbage"  # bytes nobody wrote
    MISPLACED = "misplaced"  # a value written to another block (or by another run)
    UNKNOWN = "unknown"  # a stamp no write of this history carried
    UNSTABLE = (
        "unstable"  # two reads with no write in flight between them differ (:func:`unstable`)
    )


@attrs.frozen(kw_only=True)
class Violation:
    """One block whose read-back the model does not allow, and why, in words."""

    block: int
    kind: ViolationKind
    detail: str


@attrs.frozen(kw_only=True)
class Report:
    """The outcome of a check: the counts a run prints and every violation found."""

    blocks: int
    writes: int
    acked_writes: int
    durable_writes: int
    flushes: int
    acked_flushes: int
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


class _Coverage:
    """Which acknowledged writes the flushes acknowledged by ``as_of`` made durable.

    A flush on connection ``c`` covers a write acknowledged on ``c`` before the flush was sent.
    With multi-conn it also covers a write acknowledged on another connection before it was
    sent, *if ``c`` was already in use when that write was acknowledged*: both connections then
    talked to the same server (had the server been restarted in between, ``c`` would have broken
    and its flush could not have been answered). Without that condition a flush sent to a
    restarted server would claim writes the crash was allowed to lose. A connection counts as in
    use from its first request (a little after it opened: the conservative side).
    """

    def __init__(self, history: History, as_of: int) -> None:
        self.multi_conn = history.multi_conn
        self.same: dict[int, int] = {}  # per connection: its latest acked flush's invocation
        for flush in history.flushes:
            if flush.acked <= as_of:
                self.same[flush.conn] = max(self.same.get(flush.conn, 0), flush.invoked)
        first: dict[int, int] = {}
        ops: list[Write | Flush] = [*history.writes, *history.flushes]
        for op in ops:
            first[op.conn] = min(first.get(op.conn, NEVER), op.invoked)
        # Connections with a flush, by first use; the latest flush among the first k of them.
        ordered = sorted((first[c], latest) for c, latest in self.same.items())
        self.starts = [start for start, _ in ordered]
        self.best: list[int] = list(itertools.accumulate((latest for _, latest in ordered), max))

    def durable(self, write: Write) -> bool:
        if write.acked == NEVER:
            return False
        if write.acked < self.same.get(write.conn, 0):
            return True
        if not self.multi_conn:
            return False
        k = bisect.bisect_left(self.starts, write.acked)  # connections in use before the ack
        return k > 0 and self.best[k - 1] > write.acked


def _describe(stamp: Stamp) -> str:
    return "the initial value" if stamp == INITIAL else f"writer {stamp.writer} #{stamp.seq}"


def check(
    history: History, reads: Mapping[int, bytes | memoryview], *, as_of: int | None = None
) -> Report:
    """Check each block read back (block number → its bytes) against the history.

    ``as_of``: the reads were sent after that moment of the history (:attr:`History.clock`)
    while writes went on: only the flushes acknowledged by then make writes durable, and any
    write of the history may have landed. Without it, the read-back came after the last event.
    """
    coverage = _Coverage(history, NEVER - 1 if as_of is None else as_of)
    by_block: dict[int, dict[Stamp, Write]] = {}
    newest_durable: dict[int, Write] = {}
    durable = 0
    for write in history.writes:
        is_durable = coverage.durable(write)
        durable += is_durable
        for b in write.blocks:
            by_block.setdefault(b, {})[write.stamp] = write
            known = newest_durable.get(b)
            if is_durable and (known is None or write.invoked > known.invoked):
                newest_durable[b] = write
    violations = [
        v
        for b, data in sorted(reads.items())
        for v in _check_block(history, b, data, by_block.get(b, {}), newest_durable.get(b))
    ]
    return Report(
        blocks=len(reads),
        writes=len(history.writes),
        acked_writes=sum(w.acked != NEVER for w in history.writes),
        durable_writes=durable,
        flushes=len(history.flushes),
        acked_flushes=sum(f.acked != NEVER for f in history.flushes),
        violations=tuple(violations),
    )


def _check_block(
    history: History,
    b: int,
    data: bytes | memoryview,
    writes: Mapping[Stamp, Write],
    newest: Write | None,
) -> Iterator[Violation]:
    if b in history.initial and initial_digest(data) == history.initial[b]:
        decoded = Block(kind=Decoded.STAMPED, run=history.run, block=b, stamp=INITIAL)
    else:
        decoded = decode_block(data)
    if decoded.kind is Decoded.ZERO and b not in history.initial:
        decoded = Block(kind=Decoded.STAMPED, run=history.run, block=b, stamp=INITIAL)
    if decoded.kind is Decoded.TORN:
        yield Violation(block=b, kind=ViolationKind.TORN, detail="checksum does not match")
        return
    if decoded.kind is not Decoded.STAMPED or decoded.stamp is None:
        yield Violation(
            block=b, kind=ViolationKind.GARBAGE, detail=f"{decoded.kind.value} bytes nobody wrote"
        )
        return
    if decoded.run != history.run or decoded.block != b:
        yield Violation(
            block=b,
            kind=ViolationKind.MISPLACED,
            detail=f"holds block {decoded.block} of run {decoded.run:#x} "
            f"({_describe(decoded.stamp)})",
        )
        return
    stamp = decoded.stamp
    if stamp == INITIAL:
        acked = 0
    elif stamp in writes:
        acked = writes[stamp].acked
    else:
        yield Violation(
            block=b, kind=ViolationKind.UNKNOWN, detail=f"{_describe(stamp)} never wrote it"
        )
        return
    if newest is not None and acked < newest.invoked:
        yield Violation(
            block=b,
            kind=ViolationKind.STALE,
            detail=f"reads {_describe(stamp)}, older than {_describe(newest.stamp)}, "
            "which was acknowledged and flushed",
        )


def unstable(
    first: Mapping[int, bytes | memoryview],
    second: Mapping[int, bytes | memoryview],
    history: History | None = None,
) -> tuple[Violation, ...]:
    """Blocks two read-backs with no write in flight between them read differently: each value
    may be allowed by :func:`check`, but the replicas disagree (round-robin reads flap). With
    ``history``, blocks of writes that never got an answer are left out: such a write may land
    between the two reads."""
    unsettled: set[int] = set()
    if history is not None:
        for write in history.writes:
            if write.acked == NEVER and not write.failed:
                unsettled.update(write.blocks)
    return tuple(
        Violation(
            block=b,
            kind=ViolationKind.UNSTABLE,
            detail=f"read {_short(first[b])}, then {_short(second[b])} with no write between",
        )
        for b in sorted(first.keys() & second.keys())
        if b not in unsettled and bytes(first[b]) != bytes(second[b])
    )


def _short(data: bytes | memoryview) -> str:
    block = decode_block(data)
    if block.kind is Decoded.STAMPED and block.stamp is not None:
        return _describe(block.stamp)
    return f"{block.kind.value} bytes"
