"""The target's data transfer of a rebuild: pull every snapshot file straight from the source.

Data goes replica to replica and never through the engine (``longhorn-facts.md`` §4.1): the
engine tells the target which source to pull from and which files (``sync_start``), and polls
``sync_status``. The target connects to the source's ordinary protocol v1 endpoint and, per file:

1. ``file_info``: size, allocated bytes, recorded checksum. A file the target already had with an
   equal, still-valid recorded checksum is skipped whole.
2. ``file_map``: the source's data extents. On a file the target already had, every source hole is
   punched (a hole is never sent).
3. Per 2 MiB window of data, :data:`IN_FLIGHT` windows at a time: a new file is read with
   ``file_read`` (one ``Data`` reply per window); a file the target had is compared first
   (``file_diff`` per window, then per 4 KiB block of a differing window) and only differing
   blocks are read. Hashing, reads and writes run in worker threads; the target's event loop keeps
   serving the writes the engine sends to its head.
4. ``fdatasync``, and the source's recorded checksum is recorded for the received file.

Counters (:class:`SyncStatus`): ``total_bytes`` is the allocated size of the source files,
``done_bytes`` how much of it was handled (compared, copied or skipped), ``sent_bytes`` how many
bytes actually crossed the network.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import attrs
import trio

from lhtrio.errors import ProtocolError
from lhtrio.net import RpcClient, open_rpc_client
from lhtrio.replica import transfer
from lhtrio.replica.checksum import CHECKSUM_METHOD
from lhtrio.replica.store import Replica
from lhtrio.replica.transfer import FileInfo, Range
from lhtrio.wire import Call, Data
from lhtrio.wire.control import converter

__all__ = ["IN_FLIGHT", "SyncStatus", "pull"]

IN_FLIGHT: Final = 4


@attrs.frozen(kw_only=True)
class SyncStatus:
    """Where a transfer stands. ``state``: idle, syncing, done, failed or cancelled."""

    state: str = "idle"
    source: str = ""
    files: int = 0
    files_done: int = 0
    skipped_files: int = 0
    total_bytes: int = 0
    done_bytes: int = 0
    sent_bytes: int = 0
    error: str = ""


@attrs.define
class _Counters:
    status: SyncStatus
    report: Callable[[SyncStatus], None]

    def add(self, **deltas: int) -> None:
        self.status = attrs.evolve(
            self.status, **{k: getattr(self.status, k) + v for k, v in deltas.items()}
        )
        self.report(self.status)


async def pull(
    replica: Replica,
    source: str,
    files: Sequence[str],
    existing: Sequence[str],
    *,
    limiter: trio.CapacityLimiter,
    report: Callable[[SyncStatus], None],
) -> SyncStatus:
    """Copy ``files`` (snapshot file names) of the replica at ``source`` into ``replica``.

    ``existing`` are the files ``replica`` already had (compared instead of copied). Calls
    ``report`` with every change of the counters; returns the final status (state ``done``).
    Errors propagate (the caller records them).
    """
    counters = _Counters(SyncStatus(state="syncing", source=source, files=len(files)), report)
    report(counters.status)
    run = functools.partial(trio.to_thread.run_sync, limiter=limiter)
    async with open_rpc_client(
        source, volume=replica.volume, client=f"rebuild-{replica.instance}"
    ) as src:
        infos = [
            converter.structure(await src.call_control("file_info", name=name), FileInfo)
            for name in files
        ]
        counters.add(total_bytes=sum(info.allocated for info in infos))
        for info in infos:
            await _pull_file(
                src, replica, info, existed=info.name in existing, counters=counters, run=run
            )
            counters.add(files_done=1)
    done = attrs.evolve(counters.status, state="done", done_bytes=counters.status.total_bytes)
    report(done)
    return done


async def _pull_file(
    src: RpcClient,
    replica: Replica,
    info: FileInfo,
    *,
    existed: bool,
    counters: _Counters,
    run: Callable[..., Any],
) -> None:
    name = info.name
    fd: int = await run(functools.partial(transfer.open_snapshot, replica, name, write=True))
    try:
        if existed and info.checksum:
            ours = await run(transfer.recorded_checksum, replica, name, fd)
            if ours == info.checksum and os.fstat(fd).st_size == info.size:
                counters.add(skipped_files=1, done_bytes=info.allocated)
                return
        extents: list[Range] = [
            (int(offset), int(length))
            for offset, length in await src.call_control("file_map", name=name)
        ]
        if existed:
            await run(transfer.punch_outside, fd, extents, info.size)
        work: Iterator[list[Range]] = iter(transfer.windows(extents))

        async def worker() -> None:
            for window in work:
                ranges = await _changed(src, name, fd, window, run) if existed else window
                if ranges:
                    data = await _read(src, name, ranges)
                    await run(transfer.write_ranges, fd, ranges, data)
                    counters.add(sent_bytes=len(data))
                counters.add(done_bytes=sum(length for _, length in window))

        async with trio.open_nursery() as nursery:
            for _ in range(IN_FLIGHT):
                nursery.start_soon(worker)
        await run(os.fdatasync, fd)
        if info.checksum:
            await run(transfer.record_checksum, replica, name, fd, info.checksum, CHECKSUM_METHOD)
    finally:
        os.close(fd)


async def _changed(
    src: RpcClient, name: str, fd: int, window: list[Range], run: Callable[..., Any]
) -> list[Range]:
    """The ranges of ``window`` whose bytes differ from the source's: window, then 4 KiB blocks."""
    ours = await run(transfer.digests, fd, [window])
    if not await src.call_control("file_diff", name=name, groups=[window], digests=ours):
        return []
    groups = transfer.blocks(window)
    ours = await run(transfer.digests, fd, groups)
    differ = await src.call_control("file_diff", name=name, groups=groups, digests=ours)
    return transfer.merge(groups[int(i)][0] for i in differ)


async def _read(src: RpcClient, name: str, ranges: list[Range]) -> memoryview:
    reply = await src.call(Call("file_read", {"name": name, "ranges": ranges}))
    if not isinstance(reply, Data):
        raise ProtocolError(f"{src.peer} answered file_read with {type(reply).__name__}")
    expected = sum(length for _, length in ranges)
    data = memoryview(reply.data)
    if data.nbytes != expected:
        raise ProtocolError(f"{src.peer} sent {data.nbytes} bytes for {expected} asked")
    return data
