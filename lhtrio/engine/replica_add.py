"""Adding a replica: the engine's side of an online rebuild, filling it from a healthy one.

Longhorn's ``AddReplica`` (``longhorn-facts.md`` §4.1), with the data moving replica to replica:

1. **Attach.** Connect the target; its size must be the volume's; it records ``Rebuilding=true``
   (persisted: an engine that restarts before the end sets it to ERR, see ``decide_start``).
2. **Snapshot and add as WO**, quiesced: flush, take one system snapshot on every replica and the
   target, add the target as WO. From here it receives every write (unaligned ones aligned by
   the engine, :meth:`Volume._write_aligned`), is never read, and unmap is suspended.
3. **Adopt**, quiesced (milliseconds): the target takes the disk graph of one RW *source*
   (:mod:`lhtrio.replica.adopt`); snapshot operations cannot slip in between.
4. **Transfer**, I/O flowing: the target pulls every snapshot file from the source
   (:mod:`lhtrio.replica.sync`), sparse- and delta-aware; the engine long-polls its progress.
5. **Verify and switch**, quiesced: flush; the target reloads its chain, which must equal the
   source's (same snapshots, same parents); the source's revision counter is copied; the target
   clears ``Rebuilding`` and becomes RW.

A rebuild is a long operation (:class:`~lhtrio.models.volume.VolumeOperation`): one per volume
at a time, and none beside a purge, an expansion, a revert or a salvage
(:class:`~lhtrio.engine.operation_gate.OperationGate`); revert and expansion are refused while a
replica is WO. The replica side is :mod:`lhtrio.replica.adopt` (adopt) and
:mod:`lhtrio.replica.sync` (transfer); the progress it reports, :mod:`lhtrio.engine.progress`.
Every call to a replica goes through its :class:`~lhtrio.clients.replica.ReplicaClient`.

A rebuild purges the system snapshots when it ends, whether it succeeded or failed
(:func:`~lhtrio.engine.purge.purge_after_rebuild`): without that, one more piles up on every
healthy replica per attempt. A target whose disk fails, retried by the manager, would fill the
healthy replicas' disks with them (each holds what was written between two attempts) until the
volume faults: the chaos runs' read-error schedules did, in seconds.
Any failure — the source or the target dying, a chain that does not verify — sets the target to
ERR and ends the rebuild; the volume keeps serving, and ``replica add`` may be run again (a
target keeps what it received: the next transfer only sends what differs).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import trio

from lhtrio.clients.replica import ReplicaClient
from lhtrio.engine.progress import RebuildTracker
from lhtrio.engine.purge import purge_after_rebuild
from lhtrio.engine.replicaset import Member, Mode
from lhtrio.engine.volume import Volume
from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    LhtrioError,
    StorageError,
)
from lhtrio.models.engine import RebuildState
from lhtrio.models.replica import ReplicaInfo, SyncState, snapshot_disk
from lhtrio.models.times import format_time, utc_now
from lhtrio.models.volume import VolumeOperation
from lhtrio.net import parse_address
from lhtrio.units import format_size
from lhtrio.wire.calls.replica import PlannedArgs

__all__ = ["add_replica"]

logger = logging.getLogger(__name__)

POLL: float = 0.5

R = TypeVar("R")


class _RebuildError(Exception):
    pass


async def add_replica(volume: Volume, address: str) -> RebuildTracker:
    """Steps 1-2 (see the module docstring); step 3 onwards runs in the engine's nursery.

    Returns once the target is WO. Raises (and leaves the volume as it was) when the rebuild
    cannot start.
    """
    try:
        parse_address(address)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    replicas = volume.replicas
    old = replicas.by_address(address)
    if old is not None and old.mode is not Mode.ERR:
        raise AlreadyExistsError(f"{address} is already a replica of volume {volume.name}")
    await volume.operation.begin(VolumeOperation.REBUILD)
    try:
        _check_can_rebuild(volume)
    except BaseException:
        volume.operation.end()
        raise
    progress = RebuildTracker(address=address)
    member = Member(address, Mode.WO)
    snapshotted = False
    try:
        await volume.links.attach(member)
        target = _client(volume, member)
        info = await _control(volume, target.info())
        _check_size(volume, address, info.size)
        member.identity = (info.instance, info.path)
        if old is None or old.identity != member.identity:
            volume.dirty.forget(address)  # another replica at that address: its log says nothing
        await _control(volume, target.sync_cancel())
        await _control(volume, target.set_rebuilding(True))
        name = str(uuid.uuid4())
        created = format_time(utc_now())
        async with volume.quiesced():
            await volume.flush_quiesced()
            members = [*replicas.writers, member]
            snapshotted = True  # (on some replicas, perhaps, even if the call fails)
            await volume.control.all(
                "snapshot",
                lambda replica: replica.snapshot(name, user_created=False, created=created),
                members=members,
            )
            _check_alive(member)
            if old is not None and old in replicas.members:
                replicas.remove(old)
            replicas.add(member)
            progress.dirty = volume.dirty.take(address)  # from here on, writes reach it
            progress.snapshot = snapshot_disk(name)
    except BaseException as exc:  # whatever it was, the volume must not stay busy
        volume.operation.end()
        volume.dirty.forget(address)
        volume.links.fail(member, f"could not start the rebuild: {exc}")
        if snapshotted and isinstance(exc, Exception):
            volume.nursery.start_soon(purge_after_rebuild, volume)
        if isinstance(exc, _RebuildError):
            raise StorageError(f"could not start the rebuild of {address}: {exc}") from None
        raise
    volume.rebuild = progress
    logger.info("volume %s: rebuilding %s (WO)", volume.name, address)
    volume.nursery.start_soon(_run, volume, member, progress)
    return progress


def _check_can_rebuild(volume: Volume) -> None:
    if volume.replicas.rebuilding:
        raise ConflictError(f"volume {volume.name} is rebuilding a replica already")
    if not volume.replicas.readers:
        raise StorageError(
            f"volume {volume.name} is faulted: no RW replica to rebuild from (lhtrio ctl salvage)"
        )


def _check_size(volume: Volume, address: str, size: int) -> None:
    if size != volume.size:
        raise InvalidArgumentError(
            f"replica {address} is {format_size(size)} ({size} bytes), volume {volume.name} is "
            f"{format_size(volume.size)} ({volume.size} bytes): create the replica with the "
            "volume's size"
        )


def _check_alive(member: Member) -> None:
    if member.mode is Mode.ERR:
        raise _RebuildError(member.error)


def _client(volume: Volume, member: Member) -> ReplicaClient:
    client = volume.links.control(member)
    if client is None:
        raise _RebuildError(member.error or "not connected")
    return client


async def _control(volume: Volume, call: Awaitable[R]) -> R:
    """``call``'s result, within the time a replica may take for a control call."""
    with trio.fail_after(2 * volume.replicas.short_timeout):
        return await call


def _graph(info: ReplicaInfo) -> dict[str, str]:
    """Snapshot disk → parent, plus the head's parent under the key ``""``."""
    graph = {name: disk.parent for name, disk in info.disks.items() if name != info.head}
    graph[""] = info.parent
    return graph


def _planned(info: ReplicaInfo) -> dict[str, PlannedArgs]:
    """The snapshot disks of ``info`` as a rebuild's target adopts them."""
    return {
        name: PlannedArgs(
            parent=disk.parent,
            removed=disk.removed,
            user_created=disk.user_created,
            created=format_time(disk.created),
            labels=disk.labels,
            size=disk.size,
        )
        for name, disk in info.disks.items()
        if name != info.head
    }


async def _run(volume: Volume, member: Member, progress: RebuildTracker) -> None:
    try:
        await _rebuild(volume, member, progress)
    except Exception as exc:  # whatever went wrong, the volume keeps serving
        why = str(exc) or type(exc).__name__
        if isinstance(exc, (LhtrioError, _RebuildError, trio.TooSlowError)):
            logger.warning("volume %s: rebuild of %s failed: %s", volume.name, member.address, why)
        else:
            logger.exception("volume %s: rebuild of %s crashed", volume.name, member.address)
        progress.update(state=RebuildState.FAILED, error=why)
        client = volume.links.control(member)
        if client is not None:
            with trio.move_on_after(1), contextlib.suppress(LhtrioError):
                await client.sync_cancel()
        volume.links.fail(member, f"rebuild failed: {why}")
    finally:
        if volume.operation.state is VolumeOperation.REBUILD:
            volume.operation.end()
    await purge_after_rebuild(volume)  # its system snapshot is not needed any more


async def _rebuild(volume: Volume, member: Member, progress: RebuildTracker) -> None:
    target = _client(volume, member)
    readers = volume.replicas.readers
    if not readers:
        raise _RebuildError("no RW replica left to rebuild from")
    source = readers[0]
    progress.update(source=source.address)
    async with volume.quiesced():
        info = await _control(volume, _client(volume, source).info())
        disks = _planned(info)
        existing = await _control(volume, target.adopt(disks))
    status = await _control(
        volume,
        target.sync_start(
            source.address,
            sorted(disks),
            existing,
            dirty=progress.dirty,
            dirty_file=progress.snapshot,
        ),
    )
    progress.update(state=RebuildState.SYNCING)
    while True:
        progress.update(counters=status)
        if status.state is not SyncState.SYNCING:
            break
        if member.mode is not Mode.WO:
            raise _RebuildError(member.error or "the target failed")
        if source.mode is not Mode.RW:
            raise _RebuildError(f"the source {source.address} failed: {source.error}")
        status = await _control(volume, target.sync_status(wait=POLL))
    if status.state is not SyncState.DONE:
        raise _RebuildError(f"transfer {status.state.value}: {status.error}")
    progress.update(state=RebuildState.VERIFYING)
    async with volume.quiesced():
        await volume.flush_quiesced()
        if member.mode is not Mode.WO or source.mode is not Mode.RW:
            raise _RebuildError(member.error or source.error or "a replica failed")
        rebuilt = await _control(volume, target.reload())
        info = await _control(volume, _client(volume, source).info())
        if _graph(rebuilt) != _graph(info):
            raise _RebuildError(
                f"the rebuilt chain differs from the source's: {sorted(_graph(rebuilt).items())} "
                f"!= {sorted(_graph(info).items())}"
            )
        await _control(volume, target.set_revision_counter(info.revision_counter))
        await _control(volume, target.set_rebuilding(False))
        volume.replicas.promote(member)
    progress.update(state=RebuildState.DONE)
    logger.info(
        "volume %s: %s rebuilt from %s, now RW (%d bytes sent of %d)",
        volume.name,
        member.address,
        source.address,
        progress.counters.sent_bytes,
        progress.counters.total_bytes,
    )
