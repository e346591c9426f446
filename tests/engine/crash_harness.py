"""Crash rounds against real processes: stamped writes in flight, SIGKILL, restart, verify.

Each 4 KiB block is a register. The writer stamps every write with (block, sequence number)
repeated over the whole block, never has two writes to the same block in flight, and records
what was acknowledged and what a completed flush covered (NBD: a flush covers every write
acknowledged before the flush was sent). A round kills the engine (or the engine and every
replica) a few milliseconds after a flush while writes are in flight, starts it again, and
then reads every block of the volume from every RW replica directly (not through the engine):

* every RW replica holds the same bytes (reads are stable: issue 16 item 7);
* every block holds a value that was written: all zeros (never written) or one intact stamp of
  that block with a sequence number that was sent (never torn, never another block's);
* no flushed write is lost: the sequence number is at least the one the last completed flush
  covered.

The client speaks NBD itself (:mod:`tests.nbdclient`): the harness must know exactly which
writes are in flight when the kill comes, which a client library hides.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from lhtrio.net import open_rpc_client
from lhtrio.wire import Data, Read, Role
from tests.nbdclient import FLUSH, WRITE, NbdClient
from tests.procs import Proc, ctl, engine, replica

BLOCK = 4096
_STAMP = struct.Struct("<4sQQI")  # magic, block, seq, crc32(block, seq)
_MAGIC = b"LHTS"


def stamp(block: int, seq: int) -> bytes:
    head = _STAMP.pack(_MAGIC, block, seq, zlib.crc32(struct.pack("<QQ", block, seq)))
    return (head * (BLOCK // _STAMP.size + 1))[:BLOCK]


def read_stamp(block: int, data: bytes) -> int:
    """The sequence number a block holds (0: never written); AssertionError if it is torn or
    holds anything else."""
    if data == bytes(BLOCK):
        return 0
    magic, found, seq, crc = _STAMP.unpack_from(data)
    assert magic == _MAGIC, f"block {block}: not a stamp: {data[:32]!r}"
    assert found == block, f"block {block} holds block {found}'s data"
    assert crc == zlib.crc32(struct.pack("<QQ", block, seq)), f"block {block}: bad stamp"
    assert data == stamp(block, seq), f"block {block}: torn (mixed stamps)"
    return int(seq)


@attrs.define
class Ledger:
    """What the writer sent, what was acknowledged, what flushes covered."""

    sent: dict[int, set[int]] = attrs.field(factory=dict)
    acked: dict[int, int] = attrs.field(factory=dict)
    floor: dict[int, int] = attrs.field(factory=dict)  # covered by a completed flush
    flushes: int = 0
    writes: int = 0

    def check(self, block: int, seq: int) -> None:
        floor = self.floor.get(block, 0)
        assert seq >= floor, f"block {block}: flushed write {floor} lost (holds {seq})"
        if seq:
            assert seq in self.sent.get(block, ()), f"block {block}: {seq} was never written"


class NbdWriter:
    """Stamped writes and flushes, many in flight, over :class:`tests.nbdclient.NbdClient`."""

    def __init__(self, client: NbdClient, ledger: Ledger, blocks: int) -> None:
        self._client = client
        self._ledger = ledger
        self._blocks = blocks
        self.pending: dict[int, tuple[str, Any]] = {}
        self._busy: set[int] = set()
        self._room = trio.Event()
        self.flushed = trio.Event()  # set (and replaced) whenever a flush completes
        self.flushing = True  # False: only 1 MiB writes from now on, no flush
        self.lagging = 0  # bytes sent with flushing off
        self.full = trio.Event()  # set once 14 MiB went out with flushing off, or no more can

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: Path, ledger: Ledger, blocks: int) -> AsyncIterator[NbdWriter]:
        async with NbdClient.connect(path) as client:
            yield cls(client, ledger, blocks)

    async def run(self, depth: int, flush_every: int, rng: random.Random) -> None:
        """Write until the connection breaks (the engine was killed)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._replies)
            while True:
                while len(self.pending) >= depth:
                    if not self.flushing:
                        self.full.set()
                    self._room = trio.Event()
                    await self._room.wait()
                self._ledger.writes += 1
                handle = self._client.reserve()
                if self.flushing and self._ledger.writes % flush_every == 0:
                    self.pending[handle] = ("flush", dict(self._ledger.acked))
                    await self._client.send(FLUSH, handle=handle)
                    continue
                # 4 KiB to 1 MiB: large writes queue in the engine's sends to a slow replica.
                count = rng.choice((1, 1, 16, 64, 256)) if self.flushing else 256
                for _ in range(16):  # never two writes to one block in flight
                    first = rng.randrange(self._blocks // count) * count
                    span = range(first, first + count)
                    if not any(b in self._busy for b in span):
                        break
                else:  # everything near is in flight: wait for an answer
                    if not self.flushing:
                        self.full.set()  # nothing more can go out before an answer
                    self._room = trio.Event()
                    await self._room.wait()
                    continue
                seq = self._ledger.writes
                self._busy.update(span)
                for b in span:
                    self._ledger.sent.setdefault(b, set()).add(seq)
                self.pending[handle] = ("write", (span, seq))
                data = b"".join(stamp(b, seq) for b in span)
                await self._client.send(WRITE, first * BLOCK, data, handle=handle)
                if not self.flushing:
                    self.lagging += len(data)
                    if self.lagging >= 14 << 20:  # more than a laggard's socket buffers hold
                        self.full.set()

    async def _replies(self) -> None:
        while True:
            handle, error, _ = await self._client.reply()
            kind, what = self.pending.pop(handle)
            assert error == 0, f"{kind} failed with NBD error {error}"
            if kind == "write":
                span, seq = what
                for b in span:
                    self._busy.discard(b)
                    self._ledger.acked[b] = seq
            else:  # every write acknowledged before the flush was sent is durable now
                self._ledger.floor.update(what)
                self._ledger.flushes += 1
                self.flushed.set()
                self.flushed = trio.Event()
            self._room.set()


@attrs.define
class CrashVolume:
    """Three replicas on Unix sockets (a restarted one keeps its address) and an engine."""

    tmp: Path
    stack: AsyncExitStack
    size: int
    replicas: dict[str, Proc] = attrs.field(factory=dict)
    engine: Proc | None = None

    @property
    def socket(self) -> Path:
        return self.tmp / "nbd.sock"

    def address(self, name: str) -> str:
        return f"unix:{self.tmp / name}.sock"

    async def start_replica(self, name: str, *, create: bool) -> None:
        size = f"{self.size}" if create else None
        self.replicas[name] = await self.stack.enter_async_context(
            replica(self.tmp / name, "vol", size, unix=True)
        )

    async def start_engine(self, *, sweep: float = 5.0) -> None:
        self.engine = await self.stack.enter_async_context(
            engine(
                "vol",
                f"{self.size}",
                [self.address(n) for n in ("r0", "r1", "r2")],
                self.socket,
                "--intent-sweep",
                str(sweep),
            )
        )

    async def started(self) -> tuple[list[str], dict[str, Any]]:
        """The RW replicas of the engine just started, and what its start-up resync did."""
        assert self.engine is not None
        info = await ctl(self.engine.address, "info")
        return [r["address"] for r in info["replicas"] if r["mode"] == "RW"], info["resync"]

    async def rebuild_the_rest(self) -> int:
        """Add every replica that is not RW back (rebuilt from an RW one), so that the next
        round starts with three; how many were rebuilt."""
        assert self.engine is not None
        info = await ctl(self.engine.address, "info")
        stale = [r["address"] for r in info["replicas"] if r["mode"] != "RW"]
        if os.environ.get("LHTRIO_CRASH_DEBUG"):
            print([(r["address"][-8:], r["mode"], r["error"]) for r in info["replicas"]])
        for address in stale:
            result = await ctl(self.engine.address, "replica", "add", address)
            assert result["state"] == "done", result
        return len(stale)


async def read_all(address: str, size: int) -> bytes:
    out = bytearray()
    async with open_rpc_client(address, volume="vol", role=Role.REPLICA) as client:
        for offset in range(0, size, 1 << 20):
            (reply,) = await client.call_many([Read(offset, min(1 << 20, size - offset))])
            assert isinstance(reply, Data), reply
            out += reply.data
    return bytes(out)


async def crash_round(
    vol: CrashVolume,
    ledger: Ledger,
    rng: random.Random,
    *,
    everything: bool,
    lag: bool,
    next_sweep: float = 5.0,
) -> dict[str, int]:
    """Write, kill a few ms after a flush, restart, verify. Returns what the round saw.

    ``lag``: one replica lags (stopped for a moment, well within its stall timeout) and no
    flush is sent meanwhile, while 16 writes of 1 MiB are in flight: more than the laggard's
    socket buffers hold, so at the kill the other replicas have writes it never received, and
    their persisted revision counters are equal, so all come back RW with different versions
    of those blocks. Without ``lag`` the kill comes at a random moment a few milliseconds after
    a flush; the engine started for the next round sweeps its write-intent marks every
    ``next_sweep`` seconds (a lag round needs an engine that does not flush meanwhile: a sweep
    flushes, and rightly leaves the laggard stale, which hides nothing but compares less; the
    other rounds race sweeps every fraction of a second against the kill)."""
    assert vol.engine is not None
    blocks = vol.size // BLOCK
    depth = 16 if lag else rng.choice((4, 16, 32))
    async with NbdWriter.connect(vol.socket, ledger, blocks) as writer, trio.open_nursery() as n:

        async def write() -> None:
            try:
                await writer.run(depth=depth, flush_every=rng.randint(8, 64), rng=rng)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the engine is gone: the writes still in flight have no outcome

        n.start_soon(write)
        for _ in range(rng.randint(1, 4)):
            with trio.fail_after(30):
                await writer.flushed.wait()
        laggard = rng.choice(list(vol.replicas.values())) if lag else None
        if laggard is not None:
            writer.flushing = False
            with trio.fail_after(30):  # a flush still in flight could leave the laggard stale
                while any(kind == "flush" for kind, _ in writer.pending.values()):
                    await writer.flushed.wait()
            laggard.process.send_signal(signal.SIGSTOP)
            with trio.fail_after(30):
                await writer.full.wait()
        await trio.sleep(rng.uniform(0, 0.02))  # a few milliseconds after a flush
        vol.engine.process.send_signal(signal.SIGKILL)
        if laggard is not None:
            laggard.process.send_signal(signal.SIGCONT)
        if everything:
            for proc in vol.replicas.values():
                proc.process.send_signal(signal.SIGKILL)
    await vol.engine.process.wait()
    if everything:
        for proc in vol.replicas.values():
            await proc.process.wait()
        for name in list(vol.replicas):
            await vol.start_replica(name, create=False)
    await vol.start_engine(sweep=next_sweep)
    rw, resynced = await vol.started()
    assert rw, "no replica came back RW"
    images = [await read_all(address, vol.size) for address in rw]
    for address, image in zip(rw[1:], images[1:], strict=True):
        if image != images[0]:
            differs = next(
                b
                for b in range(blocks)
                if image[b * BLOCK : (b + 1) * BLOCK] != images[0][b * BLOCK : (b + 1) * BLOCK]
            )
            raise AssertionError(f"{address} and {rw[0]} differ, first at block {differs}")
    for block in range(blocks):
        ledger.check(block, read_stamp(block, images[0][block * BLOCK : (block + 1) * BLOCK]))
    rebuilt = await vol.rebuild_the_rest()  # a replica left stale is added back for the next round
    return {
        "rw": len(rw),
        "rebuilt": rebuilt,
        "writes": ledger.writes,
        "flushes": ledger.flushes,
        "compared_bytes": resynced["total_bytes"],
        "differing_blocks": resynced["differing_blocks"],
    }


@asynccontextmanager
async def crash_volume(tmp: Path, size: int, *, sweep: float = 5.0) -> AsyncIterator[CrashVolume]:
    async with AsyncExitStack() as stack:
        vol = CrashVolume(tmp, stack, size)
        for name in ("r0", "r1", "r2"):
            await vol.start_replica(name, create=True)
        await vol.start_engine(sweep=sweep)
        yield vol


def rounds() -> int:
    """How many rounds a test runs: ``LHTRIO_CRASH_ROUNDS`` (a long run in a session of its own),
    else a few (CI)."""
    return int(os.environ.get("LHTRIO_CRASH_ROUNDS", "4"))
