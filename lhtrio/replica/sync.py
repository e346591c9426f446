"""The target's data transfer of a rebuild: pull every snapshot file straight from the source.

Data goes replica to replica and never through the engine (``longhorn-facts.md`` §4.1): the
engine tells the target which source to pull from and which files (``sync_start``), and polls
``sync_status``. The target connects to the source's ordinary protocol v1 endpoint and, per file:

1. ``file_info``: size, allocated bytes, recorded checksum. A file the target already had with an
   equal, still-valid recorded checksum is skipped whole.
2. ``file_map``, page by page (:data:`~lhtrio.replica.transfer.MAP_EXTENTS` extents each, so a
   fragmented file never makes a frame too large), while the windows of earlier pages are already
   moving: the source's data extents. On a file the target already had, its data outside them is
   punched (a hole is never sent); inside them, only what the target holds data for is compared,
   the rest is read outright.
3. Per 2 MiB window of data, :data:`IN_FLIGHT` windows at a time: data the target holds is
   compared first (``file_diff`` over the window, then per 4 KiB block if that differs; at most
   :data:`FEW_BLOCKS` blocks go straight to the per-block comparison), then the differing blocks
   and the data the target does not hold are read together with one ``file_read`` (one ``Data``
   reply) and written. Hashing, reads and writes run in worker threads; the target's event loop
   keeps serving the writes the engine sends to its head.
4. ``fdatasync``, and the source's recorded checksum is recorded for the received file.

Measured with ``nox -s bench -- rebuild`` (figures and the yardstick in ``docs/benchmarks.md``):

* **Writes of 64 KiB and more bypass the page cache** (``O_DIRECT``, through one page-aligned
  bounce buffer per window in flight; Longhorn's sync does direct I/O too). A rebuild writes data
  nobody reads soon; through the page cache every fresh page costs a fault (on this VM about
  3 ms per MiB of CPU, most of a dense rebuild's time) and the final ``fdatasync`` writes it all
  at once. Smaller ranges stay buffered: direct 4 KiB writes wait for the disk one by one.
  Dense 1 GiB: 4.5 s -> 1.5 s, the target's CPU 4.4 s -> 0.9 s.
* **One write at a time per file.** Concurrent buffered writes to one file spin on its inode lock
  (11-15 % of the target's CPU); reads stay :data:`IN_FLIGHT` deep.
* **Compare only what the target has.** The system snapshot that ``replica add`` takes on the
  target is its (often empty) head: comparing it window by window hashed holes on both sides and
  sent every block's digest. Dense 1 GiB: 13.9 s -> 4.5 s.
* **Holes that are holes already are not punched again** (one ``fallocate`` per source hole cost
  0.2 s for 32k holes).
* **Scattered data is compared per block at once, and read with the new data of its window.** A
  returning replica whose head held 10 % scattered 4 KiB writes, 10 % more written while it was
  away: 511 of 514 windows differed as a whole anyway; the new snapshot file took 2.7-3.6 s, now
  1.75 s.
* **Progress is reported at most every** :data:`REPORT_EVERY` seconds: each report wakes the
  engine's long poll and its client's (0.27 s -> 0.02 s of the engine's CPU per GiB).

Counters (:class:`~lhtrio.models.replica.TransferCounters`, declared once, carried by the
replica's ``SyncStatus`` and the engine's rebuild progress): ``total_bytes`` is the allocated
size of the source files, ``done_bytes`` how much of it was handled so far. Every handled byte
ends in exactly one of:

* ``sent_bytes``: data the source sent (``file_read``), because the target lacked it, held other
  bytes there, or the away log named it;
* ``compared_bytes``: data the target held and proved equal by digests (only digests crossed);
* ``known_bytes``: data the target held outside the engine's away log: equal by construction,
  neither compared nor sent;
* ``skipped_bytes``: the files skipped whole (equal recorded checksums).

At the end the four add up to the source files' data (``total_bytes`` is their allocation, which
on ext4 also counts the blocks of a large file's extent tree), and ``sent_bytes`` is exactly the
data written into the target. A returning replica whose files were equal is thus rebuilt with
``sent_bytes`` 0 and now says why: issue 16 saw "sent 0 B for 360 MiB synced", which was right —
the 360 MiB had been compared, not copied — but nothing said so. Digests, maps and control
replies are not counted anywhere (a few bytes per 2 MiB window).
"""

from __future__ import annotations

import functools
import mmap
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol, TypeVar, TypeVarTuple, Unpack

import attrs
import trio

from lhtrio.clients.replica import ReplicaClient
from lhtrio.errors import ProtocolError
from lhtrio.models.replica import FileInfo, SyncState, SyncStatus
from lhtrio.net import open_rpc_client
from lhtrio.replica import transfer
from lhtrio.replica.checksum import CHECKSUM_METHOD
from lhtrio.replica.layers import Layers
from lhtrio.replica.store import Replica
from lhtrio.replica.transfer import Range
from lhtrio.wire import Role

__all__ = ["IN_FLIGHT", "REPORT_EVERY", "pull"]

IN_FLIGHT: Final = 4
#: Windows holding at most this many 4 KiB blocks to compare are compared per block at once.
FEW_BLOCKS: Final = 64
#: Progress reports (each wakes the engine's long poll, and its client's) at most this often.
REPORT_EVERY: Final = 0.1

_Work = tuple[list[Range], list[Range]]  # one window's ranges: to read, to compare first

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _Run(Protocol):
    """``trio.to_thread.run_sync`` with the transfer's capacity limiter."""

    def __call__(self, fn: Callable[[Unpack[Ts]], T], /, *args: *Ts) -> Awaitable[T]: ...


def _runner(limiter: trio.CapacityLimiter) -> _Run:
    async def run(fn: Callable[[Unpack[Ts]], T], /, *args: *Ts) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    return run


@attrs.define
class _Counters:
    """The transfer's counters; every change is reported, at most every :data:`REPORT_EVERY` s."""

    status: SyncStatus
    report: Callable[[SyncStatus], None]
    next_report: float = 0.0

    def add(self, **deltas: int) -> None:
        self.status = attrs.evolve(
            self.status, **{k: getattr(self.status, k) + v for k, v in deltas.items()}
        )
        now = trio.current_time()
        if now >= self.next_report:
            self.next_report = now + REPORT_EVERY
            self.report(self.status)


async def pull(
    replica: Replica,
    source: str,
    files: Sequence[str],
    existing: Sequence[str],
    *,
    dirty: Sequence[Range] | None = None,
    dirty_file: str = "",
    limiter: trio.CapacityLimiter,
    report: Callable[[SyncStatus], None],
) -> SyncStatus:
    """Copy ``files`` (snapshot file names) of the replica at ``source`` into ``replica``.

    ``existing`` are the files ``replica`` already had (compared instead of copied). ``dirty``
    (the engine's away log, :mod:`lhtrio.engine.dirty`) covers ``dirty_file``, the snapshot that
    was this replica's head when it failed: outside those byte ranges the data it holds there is
    known to equal the source's, inside it is read outright. The other existing files are known
    equal (snapshots do not change; data the source dropped is still punched, data this replica
    lacks still read). Calls
    ``report`` with every change of the counters; returns the final status (state ``done``).
    Errors propagate (the caller records them).
    """
    status = SyncStatus(state=SyncState.SYNCING, source=source, files=len(files))
    counters = _Counters(status, report)
    report(counters.status)
    run = _runner(limiter)
    async with open_rpc_client(
        source, volume=replica.volume, client=f"rebuild-{replica.instance}", role=Role.REPLICA
    ) as rpc:
        src = ReplicaClient(rpc)
        infos = [await src.file_info(name) for name in files]
        counters.add(total_bytes=sum(info.allocated for info in infos))
        for info in infos:
            await _pull_file(
                src,
                replica.layers,
                info,
                existed=info.name in existing,
                dirty=None if dirty is None else dirty if info.name == dirty_file else (),
                counters=counters,
                run=run,
            )
            counters.add(files_done=1)
    done = attrs.evolve(
        counters.status, state=SyncState.DONE, done_bytes=counters.status.total_bytes
    )
    report(done)
    return done


async def _pull_file(
    src: ReplicaClient,
    layers: Layers,
    info: FileInfo,
    *,
    existed: bool,
    dirty: Sequence[Range] | None,
    counters: _Counters,
    run: _Run,
) -> None:
    name = info.name
    fd = await run(functools.partial(transfer.open_snapshot, layers, name, write=True))
    direct = -1
    try:
        if existed and info.checksum:
            ours = await run(transfer.recorded_checksum, layers, name, fd)
            if ours == info.checksum and os.fstat(fd).st_size == info.size:
                counters.add(
                    skipped_files=1, done_bytes=info.allocated, skipped_bytes=info.allocated
                )
                return
        direct = await run(transfer.open_direct, layers, name)
        writing = trio.Lock()
        send, receive = trio.open_memory_channel[_Work](4 * IN_FLIGHT)

        async def worker(work: trio.MemoryReceiveChannel[_Work]) -> None:
            with mmap.mmap(-1, transfer.WINDOW) as memory, memoryview(memory) as bounce, work:
                store = functools.partial(transfer.write_ranges, fd, direct=direct, bounce=bounce)
                async for fresh, compare in work:
                    ranges, differ = fresh, []
                    if compare and (differ := await _changed(src, name, fd, compare, run)):
                        ranges = transfer.merge(sorted([*fresh, *differ]))
                    if ranges:
                        data = await _read(src, name, ranges)
                        async with writing:
                            await run(store, ranges, data)
                        counters.add(sent_bytes=data.nbytes)
                    held = sum(n for _, n in compare)
                    counters.add(
                        done_bytes=sum(n for _, n in fresh) + held,
                        compared_bytes=held - sum(n for _, n in differ),
                    )

        try:
            async with trio.open_nursery() as nursery, receive:
                for _ in range(IN_FLIGHT):
                    nursery.start_soon(worker, receive.clone())
                await _plan(
                    src,
                    info,
                    fd,
                    existed=existed,
                    dirty=dirty,
                    counters=counters,
                    work=send,
                    run=run,
                )
            await run(os.fdatasync, fd)
        except* OSError as group:  # (EIO fails the replica for good: layers.error)
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            assert isinstance(first, OSError)
            raise layers.error(first, f"cannot write {name}") from None
        if info.checksum:
            await run(transfer.record_checksum, layers, name, fd, info.checksum, CHECKSUM_METHOD)
    finally:
        os.close(fd)
        if direct >= 0:
            os.close(direct)


async def _plan(
    src: ReplicaClient,
    info: FileInfo,
    fd: int,
    *,
    existed: bool,
    dirty: Sequence[Range] | None,
    counters: _Counters,
    work: trio.MemorySendChannel[_Work],
    run: _Run,
) -> None:
    """Fetch the source's map page by page and queue its windows (punching stray data first).

    With ``dirty`` (the engine's away log), held data outside it is known equal (skipped) and held
    data inside it is read without comparing.
    """
    async with work:
        offset = 0
        while True:
            page = await src.file_map(info.name, offset=offset, limit=transfer.MAP_EXTENTS)
            _check_page(page, offset, info.size, src.rpc.peer)
            end = page[-1][0] + page[-1][1] if page else info.size
            compare: list[Range] = []
            if existed:
                ours = await run(
                    functools.partial(transfer.punch_outside, fd, page, end, start=offset)
                )
                compare, page = transfer.split(page, ours)
                if dirty is not None:
                    # The away log names what changed (or may have been lost): read it outright,
                    # comparing would hash both ends to learn what the log already says.
                    changed, known = transfer.split(compare, dirty)
                    compare = []
                    if changed:
                        page = transfer.merge(sorted([*page, *changed]))
                    if known:
                        equal = sum(n for _, n in known)
                        counters.add(done_bytes=equal, known_bytes=equal)
            for item in transfer.paired_windows(page, compare):
                await work.send(item)
            if end >= info.size:
                return
            offset = end


def _check_page(page: list[Range], offset: int, size: int, peer: str) -> None:
    """A ``file_map`` page (its shape checked by the client) in order, inside ``[offset, size)``."""
    pos = offset
    for start, length in page:
        if start < pos or length <= 0 or start + length > size:
            raise ProtocolError(
                f"{peer} answered file_map with extents out of order or outside "
                f"[{offset}, {size}): [{start}, {length}]"
            )
        pos = start + length


async def _changed(
    src: ReplicaClient, name: str, fd: int, ranges: list[Range], run: _Run
) -> list[Range]:
    """The parts of ``ranges`` (one window's) whose bytes differ from the source's.

    Compared as a whole first, then per 4 KiB block if they differ; up to :data:`FEW_BLOCKS`
    blocks go straight to the per-block comparison (scattered data seldom compares equal as a
    whole, and the second round trip and hashing cost more than a few digests).
    """
    groups = transfer.blocks(ranges)
    if len(groups) > FEW_BLOCKS:
        ours = await run(transfer.digests, fd, [ranges])
        if not await src.file_diff(name, [ranges], ours):
            return []
    ours = await run(transfer.digests, fd, groups)
    differ = await src.file_diff(name, groups, ours)
    if not all(0 <= i < len(groups) for i in differ):
        raise ProtocolError(f"{src.rpc.peer} answered file_diff with indices out of range")
    return transfer.merge(groups[i][0] for i in differ)


async def _read(src: ReplicaClient, name: str, ranges: list[Range]) -> memoryview:
    reply = await src.file_read(name, ranges)
    expected = sum(length for _, length in ranges)
    data = memoryview(reply.data)
    if data.nbytes != expected:
        raise ProtocolError(f"{src.rpc.peer} sent {data.nbytes} bytes for {expected} asked")
    return data
