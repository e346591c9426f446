"""The engine's volume: the I/O gate and the data path, and where the volume's parts meet.

One :class:`Volume` per engine. Its parts, each in a module of its own: the replica links and the
stall watchdog (:mod:`lhtrio.engine.links`), the write/read fan-out and its replica-set rules
(:mod:`lhtrio.engine.fanout`), control calls to every replica (:mod:`lhtrio.engine.control`) and
the long operation it runs (:mod:`lhtrio.engine.operation_gate`), and the *I/O gate* in front of
the data path (:mod:`lhtrio.engine.io_gate`): snapshots, expansion, revert and a rebuild's steps
*quiesce* I/O (:meth:`Volume.quiesced`: new batches wait, the fast path declines, in-flight ones
finish first). This module is the data path the frontend drives
(:class:`~lhtrio.frontend.nbd.device.BlockDevice`).

Its methods take *batches* (all the requests a frontend parsed from one receive) because every
replica round trip costs far more than the Python around it: a batch is encoded once and sent to
every replica in one ``writev`` each, and completes when every replica answered (or was failed).

**Where the data path departs from plain trio task ownership, and why.** In plain trio a task
owns each piece of work and waits for it at a checkpoint. Profiled on this project's 2-core VMs,
every task step costs tens of microseconds at queue depth 1 (cold caches after each sleep), and
the first design (a task per batch, waiting on each replica in turn: five task steps per 4 KiB
write) was most of the latency the engine adds. So:

* **No task owns a batch.** A batch is a :class:`~lhtrio.engine.fanout.Fanout` submitted to every
  replica with a callback (``RpcClient.submit_encoded``); the answers complete it in place, and
  its outcome runs in whichever task delivered the last one. The frontend's fast path
  (:meth:`Volume.start_writes`, :meth:`Volume.start_reads`) hands a callback for the outcome,
  so a 4 KiB write costs the engine one task step for the frontend's receive, which sends to
  every replica, and one for the answers. The awaitable methods (``write_batch``, ``flush``, ...)
  wait for the same fan-outs (:func:`~lhtrio.engine.fanout.completed`); cancelling such a wait
  does not cancel the fan-out, whose outcome still reaches the replica set and the away logs.
* **One reader for every link.** No task per replica reads its answers: the volume's
  :class:`~lhtrio.net.reactor.Reactor` reads every replica link through a private ``epoll`` and
  runs the callbacks of every ready socket in one task step (:mod:`lhtrio.net.reactor` has the
  measurements).
* **Waiting in place, and busy-polling.** A standalone engine's frontend, having started its
  client's only request, waits inside its own task step for the answers and for the client's next
  request (:meth:`Volume.linger`, bounded by a budget and by trio's next deadline): 4 task steps
  per QD1 write before, 1 with the wait for the answers, about 0.2 with the wait for the next
  request too. Busy-polling for that next request, and for the answers to a lone single request
  (``spin``, :meth:`Volume._may_spin`), saves the engine's sleep and wake-up as well. Only in a
  process with one volume (``lhtrio engine``): in a node the wait would hold up every other
  volume's I/O.
* **No deadline per batch.** Stalls are found by one watchdog task per volume that wakes once a
  second (:meth:`~lhtrio.engine.links.ReplicaLinks.watch`), not by a cancel scope per request.
* **Links that outlive the engine's cancellation.** Once connected, each replica link is shielded:
  a cancelled engine still flushes through its links, then closes them
  (:meth:`~lhtrio.engine.links.ReplicaLinks.close`).

The replicas depart on their side too: a replica with a process of its own serves each engine
connection from an OS thread in blocking I/O (:mod:`lhtrio.net.threaded`: about 100 µs less per
4 KiB write at queue depth 1), which the engine does not see. Any of these changes is measured
with ``nox -s bench -- nbd`` (``docs/benchmarks.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, TypeVar

import trio

from lhtrio.engine.control import ControlCalls
from lhtrio.engine.dirty import DirtyTracker
from lhtrio.engine.fanout import Fanout, Fanouts, completed
from lhtrio.engine.io_gate import IoGate
from lhtrio.engine.iostats import IoCounters
from lhtrio.engine.links import ReplicaLinks
from lhtrio.engine.operation_gate import OperationGate
from lhtrio.engine.progress import RebuildTracker
from lhtrio.engine.replicaset import Member, ReplicaSet
from lhtrio.errors import LhtrioError, NotSupportedError, OutOfRangeError
from lhtrio.net.reactor import Reactor
from lhtrio.wire import Buffer, Flush, Read, Request, Unmap, Write
from lhtrio.wire.messages import ZERO, Zero, ZeroMode

__all__ = ["MAX_IO", "ZERO_BATCH", "Volume"]

MAX_IO: Final = 32 << 20
_BLOCK: Final = 4096
_MASK: Final = _BLOCK - 1
_ZEROS: Final = memoryview(bytes(MAX_IO))
#: Pieces of one trim or zeroing sent at once (8 x 32 MiB): a 1 TiB trim goes out a batch at
#: a time, never as 32768 requests in every replica's queue.
ZERO_BATCH: Final = 8
_T = TypeVar("_T")


def _chunks(offset: int, length: int) -> Iterator[list[tuple[int, int]]]:
    """``(offset, length)`` pieces of at most MAX_IO bytes (the wire's cap per request), in
    batches of at most ZERO_BATCH pieces; nothing at all for a zero length."""
    end = offset + length
    for first in range(offset, end, MAX_IO * ZERO_BATCH):
        last = min(first + MAX_IO * ZERO_BATCH, end)
        yield [(off, min(MAX_IO, last - off)) for off in range(first, last, MAX_IO)]


class Volume:
    """A replicated volume. :func:`lhtrio.engine.server.serve_engine` makes one.

    Its parts: ``links`` (:class:`~lhtrio.engine.links.ReplicaLinks`), ``fanouts``
    (:class:`~lhtrio.engine.fanout.Fanouts`), ``control``
    (:class:`~lhtrio.engine.control.ControlCalls`), ``operation``
    (:class:`~lhtrio.engine.operation_gate.OperationGate`), ``dirty`` (the away logs of failed
    replicas, :mod:`lhtrio.engine.dirty`), ``rebuild`` (the current or last rebuild's
    progress, :mod:`lhtrio.engine.replica_add`), ``io`` (read and write counters,
    :mod:`lhtrio.engine.iostats`) and ``gate`` (the I/O gate, :mod:`lhtrio.engine.io_gate`).
    """

    def __init__(
        self,
        name: str,
        size: int,
        replicas: ReplicaSet,
        nursery: trio.Nursery,
        reactor: Reactor,
        *,
        linger: float = 0.0,
        spin: float = 0.0,
        local: bool = True,
    ) -> None:
        self.name = name
        self.size = size
        self.replicas = replicas
        self.nursery = nursery  # where the volume's background work runs (links, a rebuild)
        self.reactor = reactor  # reads the replica links' answers
        self._linger = linger  # see linger()
        self._spin = spin  # see linger()
        self.dirty = DirtyTracker(size)
        self.operation = OperationGate(name)
        self.links = ReplicaLinks(
            name,
            replicas,
            nursery,
            reactor,
            dirty=self.dirty,
            operation=self.operation,
            local=local,
        )
        self.io = IoCounters()  # reads and writes so far, for /metrics
        self.gate = IoGate()
        self._io = self.gate.through  # (bound once, as the fan-out's entry points below)
        self._left = self.gate.left
        self.fanouts = Fanouts(name, replicas, self.links, self.dirty, self._left, io=self.io)
        self.control = ControlCalls(self.links)
        self.rebuild: RebuildTracker | None = None
        # The fan-out's entry points, bound once (the data path calls them per batch).
        self._start = self.fanouts.start
        self._start_read = self.fanouts.start_read
        self._write_settled = self.fanouts.write_settled
        self._send_checked = self.fanouts.send_checked

    def quiesced(self) -> AbstractAsyncContextManager[None]:
        """No I/O runs inside: new batches wait, in-flight ones are finished first
        (:meth:`IoGate.quiesced <lhtrio.engine.io_gate.IoGate.quiesced>`)."""
        return self.gate.quiesced()

    # --- data path -------------------------------------------------------------------------------

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRangeError(
                f"{length} bytes at offset {offset} is outside volume {self.name} "
                f"({self.size} bytes)"
            )

    def start_writes(
        self,
        writes: Sequence[tuple[int, Buffer, bool]],
        done: Callable[[LhtrioError | None], None],
    ) -> bool:
        """Send every ``(offset, data, fua)`` now and return; ``done`` gets the outcome later.

        The frontend's fast path: no task waits, the replicas' answers complete the batch and
        ``done`` runs in the task that delivered the last one. False (and nothing sent) when the
        batch needs :meth:`write_batch` instead: I/O is paused, or a replica is being rebuilt and
        a write is not 4 KiB-aligned. Raises OutOfRangeError before sending anything.
        """
        size = self.size
        nbytes = 0
        for offset, data, _ in writes:
            n = len(data)
            nbytes += n
            if offset < 0 or offset + n > size:
                self.check_range(offset, n)
        gate = self.gate
        if gate.paused is not None or (
            self.replicas.rebuilding
            and any((offset | len(data)) & _MASK for offset, data, _ in writes)
        ):
            return False
        gate.inflight += 1
        gate.lone = len(writes) == 1
        io = self.io
        io.write_ops += len(writes)
        io.write_bytes += nbytes  # (the latency: Fanouts._write_done, as the batch is gated)
        self._start(
            [Write(offset, data, fua) for offset, data, fua in writes],
            self.replicas.writers,
            self._write_settled,
            done=done,
            gated=True,
        )
        return True

    def start_reads(
        self,
        reads: Sequence[tuple[int, int]],
        done: Callable[[list[Buffer] | LhtrioError], None],
    ) -> bool:
        """Like :meth:`start_writes` for reads: ``done`` gets the data, or the error."""
        nbytes = 0
        for offset, length in reads:
            self.check_range(offset, length)
            nbytes += length
        gate = self.gate
        if gate.paused is not None:
            return False
        gate.inflight += 1
        gate.lone = len(reads) == 1
        io = self.io
        io.read_ops += len(reads)
        io.read_bytes += nbytes
        self._start_read(
            [Read(offset, length) for offset, length in reads],
            None,
            functools.partial(self._leaving, done, trio.current_time(), len(reads)),
        )
        return True

    def linger(self, client: int, *, partial: bool = False) -> bool:
        """Wait here, briefly, for the answers to the one batch in flight and then for the
        client's next request, or (``partial``) for the rest of a request the client is sending;
        True as soon as descriptor ``client`` (the client's connection, not read here) has
        something to read. Answers that arrive meanwhile are delivered here.

        For a frontend that has nothing else to do. The answers are delivered in the calling
        task, the client is answered from it, and its next bytes are taken without a scheduler
        round in between (:meth:`lhtrio.net.reactor.Reactor.wait`, which bounds the wait). Does
        nothing (False) unless the volume was made with a ``linger`` budget; nor, unless
        ``partial``, while other batches are in flight (another connection's, say): those
        should not wait for our client's next request. With a ``spin`` budget, the wait
        busy-polls for that long (:meth:`_may_spin`).
        """
        if self._linger and (partial or self.gate.inflight == 1):
            return self.reactor.wait(
                self._linger, wake=client, spin=self._spin, may_spin=self._may_spin
            )
        return False

    def _may_spin(self) -> bool:
        """Whether a lingering wait may busy-poll now: while no batch is in flight (for the
        client's next request), or while a lone one of a single request is (queue depth 1).

        Never while a batch of several requests is out: a busy client keeps the replicas
        working, and on a small machine a polling engine takes a CPU they need (spinning
        through every batch cost about a fifth of the 4 KiB QD32 rate with 3 replicas on
        2 cores). A single request's answers come within a few hundred microseconds, and
        polling for them saves the engine's sleep and wake-up and makes the replicas' sends
        cheaper (their reader is awake): 4 KiB QD1 writes with 3 replicas 321 -> 296 µs over
        TCP and 325 -> 240 µs over same-host sockets, QD1 reads 258 -> 191 µs over TCP, QD32
        and 1 MiB writes unchanged within noise (alternating fio runs, 2026-12-04).

        ``gate.lone`` describes the batch started last. Should a single request started after a
        batch of several be answered first (replicas answer in order, so hardly ever), the wait
        may poll for the earlier batch too: that costs CPU, never correctness.
        """
        gate = self.gate
        return not gate.inflight or (gate.inflight == 1 and gate.lone)

    def _leaving(self, done: Callable[[_T], None], started: float, count: int, outcome: _T) -> None:
        """Complete a batch of ``count`` reads that :meth:`start_reads` let through the gate
        at ``started``."""
        self.io.read_seconds += (trio.current_time() - started) * count
        self._left()
        done(outcome)

    async def read_batch(self, reads: Sequence[tuple[int, int]]) -> list[Buffer]:
        """Read every ``(offset, length)`` from one RW replica, failing over to the next."""
        nbytes = 0
        for offset, length in reads:
            self.check_range(offset, length)
            nbytes += length
        io, started = self.io, trio.current_time()
        io.read_ops += len(reads)
        io.read_bytes += nbytes
        try:
            async with self._io():
                return await self._read(reads)
        finally:
            io.read_seconds += (trio.current_time() - started) * len(reads)

    async def _read(self, reads: Sequence[tuple[int, int]]) -> list[Buffer]:
        requests = [Read(offset, length) for offset, length in reads]
        outcome: list[Buffer] | LhtrioError = await completed(
            functools.partial(self._start_read, requests, None)
        )
        if isinstance(outcome, LhtrioError):
            raise outcome
        return outcome

    async def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]:
        """``(length, allocated)`` extents covering the range, from one RW replica."""
        self.check_range(offset, length)
        if not length:
            return []
        for member in self.replicas.read_order():
            client = self.links.control(member)
            if client is None:
                continue
            try:
                with trio.fail_after(self.replicas.timeout(member)):
                    return await client.allocation(offset, length)
            except (LhtrioError, trio.TooSlowError):
                continue
        return [(length, True)]  # unknown: report data, which is always safe

    async def write_batch(self, writes: Sequence[tuple[int, Buffer, bool]]) -> None:
        """Write every ``(offset, data, fua)``; raises StorageError if no RW replica took them."""
        nbytes = 0
        for offset, data, _ in writes:
            self.check_range(offset, len(data))
            nbytes += len(data)
        io, started = self.io, trio.current_time()
        io.write_ops += len(writes)
        io.write_bytes += nbytes
        try:
            await self._write([Write(offset, data, fua) for offset, data, fua in writes])
        finally:
            io.write_seconds += (trio.current_time() - started) * len(writes)

    async def write_zeroes(
        self, offset: int, length: int, *, fua: bool, fast: bool = False, punch: bool = True
    ) -> None:
        """Make the range read as zeros, without sending zeros: ``Zero`` requests to every
        writer, in pieces of at most MAX_IO bytes, ZERO_BATCH at a time. Each replica punches
        its head where no older snapshot holds data and writes zeros over the rest
        (``punch=False``: writes zeros everywhere, the range stays allocated). While a replica
        is rebuilt (it must not punch), or if a writer did not announce ``zero``, zeros are
        written instead, aligned as every write then is.

        ``fast``: only if punching alone does it. NotSupportedError, and nothing changed, if
        every replica refused every piece (older snapshots hold data there), zeros would have
        to be written, or ``punch`` is False. Replicas that disagree (some punched, some
        refused) are brought level by zeroing the refused pieces the default way on every
        writer, and the request succeeds: replicas never differ, and a refusal never fails one.
        """
        self.check_range(offset, length)
        if length and fast and not punch:
            raise NotSupportedError(
                f"volume {self.name}: a fast zero cannot keep the range allocated (NO_HOLE); "
                "zero without the fast flag"
            )
        changed = False  # a piece was zeroed: a fast request can no longer be refused
        for batch in _chunks(offset, length):
            zero = False
            async with self._io():
                # Checked inside the gate: a replica joins as WO only while I/O is paused.
                if not self.replicas.rebuilding and self._speak_zero():
                    zero = True
                    if fast and not changed:
                        await self._zero_fast(batch)
                    else:
                        mode = ZeroMode.PUNCH if punch else ZeroMode.ALLOCATE
                        await self._send_checked([Zero(off, n, mode) for off, n in batch])
            if not zero:
                if fast and not changed:
                    why = "is being rebuilt" if self.replicas.rebuilding else "does not speak zero"
                    raise NotSupportedError(
                        f"volume {self.name} cannot zero fast now: a replica {why}, so zeros "
                        "would have to be written; zero without the fast flag"
                    )
                await self._write([Write(off, _ZEROS[:n], False) for off, n in batch])
            changed = True
        if fua and changed:
            await self.flush()

    def _speak_zero(self) -> bool:
        """Whether every connected writer announced ``zero`` in its hello."""
        for member in self.replicas.writers:
            client = self.links.clients.get(member.address)
            if client is not None and (client.server is None or ZERO not in client.server.features):
                return False
        return True

    async def _zero_fast(self, batch: list[tuple[int, int]]) -> None:
        """Fast ``Zero`` pieces to every writer (inside the I/O gate). NotSupportedError if every
        replica refused every piece; the pieces that some refused are then zeroed the default
        way on every writer (the others punch again: a no-op that keeps counters in step)."""
        requests = [Zero(off, n, ZeroMode.FAST) for off, n in batch]
        fanouts: list[Fanout] = []

        def start(done: Callable[[LhtrioError | None], None]) -> None:
            writers = self.replicas.writers
            fanouts.append(
                self._start(requests, writers, self._write_settled, done=done, refusals=True)
            )

        error = await completed(start)
        if error is not None:
            raise error
        refused = fanouts[0].refused
        assert refused is not None
        by_piece: dict[int, set[Member]] = {}
        for member, index in refused:
            by_piece.setdefault(index, set()).add(member)
        answered = set(fanouts[0].acked)
        if len(by_piece) == len(requests) and all(answered <= who for who in by_piece.values()):
            raise NotSupportedError(
                f"cannot zero {sum(n for _, n in batch)} bytes at offset {batch[0][0]} of volume "
                f"{self.name} fast: older snapshots hold data there; zero without the fast flag"
            )
        rest = [batch[index] for index in sorted(by_piece)]
        if rest:
            await self._send_checked([Zero(off, n, ZeroMode.PUNCH) for off, n in rest])

    async def _write(self, requests: Sequence[Write]) -> None:
        async with self._io():
            # Checked inside the gate: a replica joins as WO only while I/O is paused.
            if not self.replicas.rebuilding or not any(
                (w.offset | len(w.data)) & _MASK for w in requests
            ):
                await self._send_checked(requests)
                return
        await self._write_aligned(requests)

    async def _write_aligned(self, requests: Sequence[Write]) -> None:
        """Writes while a replica is rebuilt, some not 4 KiB-aligned: align them from RW data.

        A rebuilding replica cannot fill in the rest of a partial block itself (its snapshot
        files are still arriving), so the engine reads the edge blocks from an RW replica,
        patches them and sends every replica the same whole blocks (``longhorn-facts.md`` §4.4).
        The read-modify-write of a block must not interleave with other writes to it: the batch
        runs alone (quiesced), one request at a time, in order. Rare: file systems write whole
        blocks.
        """
        async with self.quiesced():
            for write in requests:
                await self._send_checked([await self._align(write)])

    async def _align(self, write: Write) -> Write:
        offset, n = write.offset, len(write.data)
        if not (offset | n) & _MASK:
            return write
        start = offset & ~_MASK
        end = (offset + n + _MASK) & ~_MASK
        edges = [(start, _BLOCK)]
        if end - _BLOCK > start:
            edges.append((end - _BLOCK, _BLOCK))
        first, *last = await self._read(edges)
        buf = bytearray(end - start)
        buf[:_BLOCK] = first
        if last:
            buf[-_BLOCK:] = last[0]
        buf[offset - start : offset - start + n] = write.data
        return Write(start, buf, write.fua)

    async def trim(self, offset: int, length: int) -> None:
        """Unmap the range on every writer, in pieces of at most MAX_IO bytes, ZERO_BATCH at a
        time (nothing at all for a zero length)."""
        self.check_range(offset, length)
        for batch in _chunks(offset, length):
            async with self._io():
                if self.replicas.rebuilding:
                    return  # a rebuilding replica must not see unmaps (longhorn/longhorn#7103)
                await self._send_checked([Unmap(off, n) for off, n in batch])

    async def flush(self) -> None:
        await self._fan_out([Flush()])

    async def _fan_out(self, requests: Sequence[Request]) -> None:
        async with self._io():
            await self._send_checked(requests)

    async def flush_quiesced(self) -> None:
        """Flush every writer; only inside :meth:`quiesced` (normal flushes go through I/O)."""
        await self.fanouts.send_all([Flush()])
