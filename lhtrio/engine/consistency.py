"""Replicas that read the same after a crash: the engine's side of the write-intent maps.

Every replica keeps a durable map of the regions where writes may have been in flight
(:mod:`lhtrio.replica.intent` explains the map and why it is correct). The engine does two
things with it:

* :func:`resync`, at start, before anything is served: the union of the RW replicas' marked
  regions is read from every RW replica and compared; wherever one differs from the *source* (the
  first RW replica: any of them holds a value that was written, and all of them hold every flushed
  write, since their persisted revision counters are equal), the differing 4 KiB blocks are
  written to it. Then every replica is flushed, their revision counters are made equal again (the
  resync's own writes counted only on the replicas they went to) and their maps cleared. From
  then on each block reads the same from every replica, and that value is one that was written.
  Outside the marked regions the replicas agree by construction, so a restart after a crash
  costs a read of the regions that were being written, not of the volume (Linux md's write-intent
  bitmap and DRBD's activity log do the same).
* :func:`sweep_intents`, while serving: every :data:`SWEEP_INTERVAL` seconds, if anything was
  written since the last sweep (or marks remain), it rotates every replica's generation with no
  write in flight (quiesced for the time of one round trip), waits for the next flush (the
  client's: a sweep flushes itself only when none came for :data:`OWN_FLUSH_AFTER` intervals,
  since a flush forces the replicas' dirty pages to disk, which a writing client pays for), and
  has every replica clear what was not written in the last two generations (a region written on
  and on stays marked, instead of being cleared and marked again at every sweep). Once nothing
  was written since the last rotation, the next sweep clears every mark. So with a client that
  flushes, a region stays marked for 5-10 s after its last write, and a replica re-marks (one
  ``fdatasync`` of its map) only regions that went quiet that long. A volume with nothing
  written and nothing marked sweeps nothing and does not wake up until its next write.

Cost, measured with ``nox -s bench -- nbd`` (``docs/benchmarks.md``): a mark per region and
generation on the replicas' data path, one short quiesce per volume every 5 s under writes, and
a flush of its own when the client does not flush for a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs
import trio

from lhtrio.engine.replicaset import Member, Mode
from lhtrio.errors import LhtrioError
from lhtrio.models.engine import ResyncState, ResyncStatus
from lhtrio.units import human_size
from lhtrio.wire import Data, Read, Write

if TYPE_CHECKING:
    from lhtrio.engine.volume import Volume

__all__ = ["SWEEP_INTERVAL", "CHUNK", "Resync", "resync", "sweep_intents"]

logger = logging.getLogger(__name__)

SWEEP_INTERVAL: Final = 5.0
#: A sweep waits this many intervals (a minute) for a client's flush before it flushes itself:
#: by then the kernel has written most dirty pages back (it does after 30 s), so the flush is
#: cheap for the client.
OWN_FLUSH_AFTER: Final = 12
#: Bytes read from every replica at a time while resyncing (the map's region size).
CHUNK: Final = 4 << 20
_BLOCK: Final = 4096


@attrs.define(eq=False)
class Resync:
    """What the start-up resync did (``ctl info`` shows :meth:`record`)."""

    status: ResyncStatus = attrs.field(factory=ResyncStatus)

    def record(self) -> ResyncStatus:
        return self.status

    def begin(self, total_bytes: int) -> None:
        self.status = attrs.evolve(self.status, state=ResyncState.RUNNING, total_bytes=total_bytes)

    def compared(self, source: str, differing_blocks: int = 0) -> None:
        """Replicas were compared with ``source``; ``differing_blocks`` more were written."""
        self.status = attrs.evolve(
            self.status,
            source=source,
            differing_blocks=self.status.differing_blocks + differing_blocks,
        )

    def advance(self, done_bytes: int) -> None:
        self.status = attrs.evolve(self.status, done_bytes=self.status.done_bytes + done_bytes)

    def end(self, error: str | None = None) -> None:
        """Done, or (``error``) failed."""
        if error is None:
            self.status = attrs.evolve(self.status, state=ResyncState.DONE)
        else:
            self.status = attrs.evolve(self.status, state=ResyncState.FAILED, error=error)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for offset, length in sorted(ranges):
        if out and offset <= out[-1][0] + out[-1][1]:
            start, size = out[-1]
            out[-1] = (start, max(size, offset + length - start))
        else:
            out.append((offset, length))
    return out


async def resync(volume: Volume, progress: Resync) -> None:
    """Make the RW replicas equal where their write-intent maps say they may differ (see the
    module docstring), reporting in ``progress``. Runs before the volume is served; a replica
    that fails on the way is set to ERR, as on the data path."""
    readers = list(volume.replicas.readers)
    if not readers:
        return
    marked = await volume.control.all(
        "intent_regions", lambda replica: replica.intent_regions(), members=readers
    )
    regions = _merge([(o, n) for ranges in marked.values() for o, n in ranges if n > 0])
    regions = [(o, min(n, volume.size - o)) for o, n in regions if o < volume.size]
    if regions and len(readers) > 1:
        total = sum(n for _, n in regions)
        progress.begin(total)
        logger.warning(
            "volume %s: %s in %d ranges may differ between replicas after an unclean stop; "
            "comparing them before serving",
            volume.name,
            human_size(total),
            len(regions),
        )
        try:
            for offset, length in regions:
                for start in range(offset, offset + length, CHUNK):
                    await _compare(volume, progress, start, min(CHUNK, offset + length - start))
                    progress.advance(min(CHUNK, offset + length - start))
            await volume.flush()
            await _equal_counters(volume)
        except LhtrioError as exc:
            progress.end(str(exc))
            raise
        progress.end()
        logger.warning(
            "volume %s: replicas compared (%s) from %s: %d blocks differed and were made equal",
            volume.name,
            human_size(total),
            progress.status.source,
            progress.status.differing_blocks,
        )
    writers = list(volume.replicas.writers)
    if writers:
        await volume.control.all(
            "intent_clear", lambda replica: replica.intent_clear(everything=True), members=writers
        )


async def _compare(volume: Volume, progress: Resync, offset: int, length: int) -> None:
    """Read ``[offset, offset+length)`` from every RW replica; write the source's blocks to
    every replica that differs."""
    readers = list(volume.replicas.readers)
    copies: list[tuple[Member, bytes]] = []
    for member in readers:
        data = await _read(volume, member, offset, length)
        if data is not None:
            copies.append((member, data))
    if len(copies) < 2:
        return
    source, truth = copies[0]
    progress.compared(source.address)
    for member, data in copies[1:]:
        if data == truth:
            continue
        writes = [
            Write(offset + at, truth[at : at + _BLOCK])
            for at in range(0, length, _BLOCK)
            if data[at : at + _BLOCK] != truth[at : at + _BLOCK]
        ]
        progress.compared(source.address, len(writes))
        await _send(volume, member, writes)


async def _read(volume: Volume, member: Member, offset: int, length: int) -> bytes | None:
    client = volume.links.client(member)
    if client is None or member.mode is not Mode.RW:
        return None
    try:
        with trio.fail_after(volume.replicas.timeout(member)):
            (reply,) = await client.call_many([Read(offset, length)])
    except (LhtrioError, trio.TooSlowError) as exc:
        volume.links.fail(member, f"resync read failed: {str(exc) or 'timed out'}")
        return None
    if not isinstance(reply, Data) or len(reply.data) != length:
        volume.links.fail(member, f"resync read answered with {reply!r}")
        return None
    return bytes(reply.data)


async def _send(volume: Volume, member: Member, writes: list[Write]) -> None:
    client = volume.links.client(member)
    if client is None:
        return
    try:
        with trio.fail_after(volume.replicas.timeout(member)):
            replies = await client.call_many(writes)
    except (LhtrioError, trio.TooSlowError) as exc:
        volume.links.fail(member, f"resync write failed: {str(exc) or 'timed out'}")
        return
    for reply in replies:
        if isinstance(reply, LhtrioError):
            volume.links.fail(member, f"resync write failed: {reply}")
            return


async def _equal_counters(volume: Volume) -> None:
    """After the resync the replicas hold the same data; make their revision counters say so
    (the resync's writes counted only where they went), or the next start would take the
    source for stale."""
    readers = list(volume.replicas.readers)
    infos = await volume.control.all("info", lambda replica: replica.info(), members=readers)
    if not infos:
        return
    value = max(info.revision_counter for info in infos.values())
    await volume.control.all(
        "set_revision_counter",
        lambda replica: replica.set_revision_counter(value),
        members=readers,
    )


def _written(volume: Volume) -> bool:
    """Whether a write went out since the last rotation (read anew: it changes while waiting)."""
    return volume.fanouts.wrote


async def sweep_intents(
    volume: Volume,
    *,
    interval: float = SWEEP_INTERVAL,
    swept: Callable[[int], object] | None = None,
) -> None:
    """Clear the replicas' write-intent marks as writes become durable everywhere (see the
    module docstring). Runs until cancelled; ``swept`` is told how many regions stay marked
    (on the replica that has most) after each sweep."""
    marks = False  # the start-up resync cleared every map
    durable = True  # a flush after the last rotation was answered
    while True:
        if not (volume.fanouts.wrote or marks):
            await volume.fanouts.written()  # nothing to clear: sleep until a write
        await trio.sleep(interval)
        if not (volume.fanouts.wrote or marks) or not volume.replicas.readers:
            continue
        try:
            if volume.fanouts.wrote:
                async with volume.quiesced():  # no write in flight while the generations turn
                    volume.fanouts.wrote = durable = False
                    await volume.control.all("intent_rotate", lambda r: r.intent_rotate())
                    mark = volume.fanouts.flush_mark
                # Every write before the rotation must be durable everywhere: a client's next
                # flush does it (clients flush often); without one the sweep flushes itself,
                # rarely (a flush forces the replicas' dirty pages out: a writing client pays).
                if not await volume.fanouts.flushed_since(mark, OWN_FLUSH_AFTER * interval):
                    await volume.flush()
                durable = True
                left = await volume.control.all("intent_clear", lambda r: r.intent_clear())
            else:
                # Nothing written since the last rotation, and a flush after it came: every
                # mark left is durable everywhere. (Quiesced: a write may not start meanwhile.)
                if not durable:  # (a sweep failed between its rotation and its flush)
                    await volume.flush()
                    durable = True
                async with volume.quiesced():
                    if _written(volume):  # (one may have started before the pause)
                        continue
                    left = await volume.control.all(
                        "intent_clear", lambda r: r.intent_clear(everything=True)
                    )
        except LhtrioError as exc:
            logger.warning("volume %s: write-intent sweep failed: %s", volume.name, exc)
            continue
        most = max(left.values(), default=0)
        marks = most > 0
        if swept is not None:
            swept(most)
