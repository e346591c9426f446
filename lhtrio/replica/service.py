"""The replica's wire handler: protocol v1 requests mapped onto a :class:`Replica`.

Data requests, ``Flush`` and the gate that control operations hold are the base class's,
:class:`~lhtrio.replica.gate.Gate` (what runs where is explained there); the data path does not
pass through this module. Control calls (``Call`` messages) are the calls of the replica's table,
:mod:`lhtrio.wire.calls.replica` (name, argument class, result record), dispatched by a
:class:`~lhtrio.wire.control.Dispatcher`: an unknown name is ``UNKNOWN_CALL``, and arguments are
structured strictly (every call, ``info`` included: unknown keys, missing keys and wrong types are
``INVALID_ARGUMENT``). Names, labels, times and addresses are then checked by the rules of
:mod:`lhtrio.models` (and :mod:`lhtrio.replica.calls`) before a call takes the gate, and no
argument, however hostile, fails the replica or surfaces as ``INTERNAL``.

Every control call runs as a task on the event loop (the RPC server starts one for a handler that
is not answered at once). The quick ones (``info``, ``allocation``, ``prepare_remove``, starting
a purge or a sync, the intent calls) only read, start a task or take the data lock for a moment;
the others run their operation in a worker thread, one at a time, with the gate held. What the
calls do beyond their table's line:

* ``remove``: mark removed, then run its removal actions; ``purge`` starts a purge in the
  background (:meth:`ReplicaService._purge_task`), ``purge_status(wait=true)`` returns when it
  has ended;
* ``file_map`` answers at most :data:`~lhtrio.replica.transfer.MAP_EXTENTS` extents (ask again
  from the end of the last one until a page is empty); ``file_read`` is answered with ``Data``;
* ``sync_start(dirty, dirty_file)``: an away log, byte ranges of ``dirty_file`` that may differ
  (the other existing files are known equal); ``sync_status(wait)`` waits up to that many seconds
  for a change;
* ``intent_rotate`` starts a new generation while no data request runs; ``intent_clear`` unmarks
  what the last two generations did not write (``everything``: all, when nothing is in flight) and
  answers how many regions are still marked;
* ``members`` and ``set_members`` read and write the replica set the engine records
  (:mod:`lhtrio.replica.members`) in a worker thread, beside the data path, without the gate: a
  record is written before the engine answers a flush, and must not wait for one.

The rebuild calls are explained in :mod:`lhtrio.replica.transfer` (source),
:mod:`lhtrio.replica.adopt` (``adopt``, ``reload``) and :mod:`lhtrio.replica.sync` (the transfer).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
import trio

from lhtrio.errors import ConflictError, InvalidArgumentError, LhtrioError
from lhtrio.models.names import validate_labels, validate_snapshot_name
from lhtrio.models.replica import (
    ActionKind,
    Checksum,
    FileInfo,
    MemberRecord,
    PurgeStatus,
    RemovalAction,
    ReplicaInfo,
    SyncState,
    SyncStatus,
)
from lhtrio.replica import meta as metalib
from lhtrio.replica import transfer
from lhtrio.replica.calls import plan, source_address
from lhtrio.replica.gate import Gate
from lhtrio.replica.store import Replica
from lhtrio.replica.sync import pull
from lhtrio.wire import Call, Data, Reply
from lhtrio.wire.calls import replica as calls
from lhtrio.wire.calls.replica import (
    ActionArgs,
    AdoptArgs,
    ChecksumArgs,
    ClearArgs,
    CounterArgs,
    DiffArgs,
    MapArgs,
    RangeArgs,
    RangesArgs,
    RebuildingArgs,
    RevertArgs,
    SnapshotArgs,
    StatusArgs,
    SyncArgs,
    WaitArgs,
)
from lhtrio.wire.control import Dispatcher, NameArgs, NoArgs, SizeArgs

__all__ = ["ReplicaService"]

logger = logging.getLogger(__name__)

Extents = list[tuple[int, int]]


class ReplicaService(Gate):
    """``handler(request)`` for :func:`lhtrio.net.serve_rpc`, serving one open replica.

    Background work (a purge, a rebuild's transfer) runs in ``nursery``; the caller owns it and
    closes the replica after the nursery is done.
    """

    def __init__(
        self,
        replica: Replica,
        nursery: trio.Nursery,
        *,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        super().__init__(replica, limiter=limiter)
        self._nursery = nursery
        self._purge = PurgeStatus()
        self._purge_done = trio.Event()
        self._purge_done.set()
        self._sync = SyncStatus()
        self._sync_changed = trio.Event()
        self._sync_scope: trio.CancelScope | None = None
        self.calls = self._dispatcher()

    def _dispatcher(self) -> Dispatcher:
        d = Dispatcher(calls.CALLS, what=f"replica {self.replica.instance}")
        d.bind(calls.INFO, self._info)
        d.bind(calls.ALLOCATION, self._allocation)
        d.bind(calls.SNAPSHOT, self._snapshot)
        d.bind(calls.MARK_REMOVED, self._mark_removed)
        d.bind(calls.PREPARE_REMOVE, self._prepare_remove)
        d.bind(calls.REMOVE_ACTION, self._remove_action)
        d.bind(calls.REMOVE, self._remove)
        d.bind(calls.PURGE, self._start_purge)
        d.bind(calls.PURGE_STATUS, self._purge_status)
        d.bind(calls.REVERT, self._revert)
        d.bind(calls.EXPAND, self._expand)
        d.bind(calls.CHECKSUM, self._checksum)
        d.bind(calls.SET_REBUILDING, self._set_rebuilding)
        d.bind(calls.SET_REVISION_COUNTER, self._set_revision_counter)
        d.bind(calls.MEMBERS, self._members)
        d.bind(calls.SET_MEMBERS, self._set_members)
        d.bind(calls.FILE_INFO, self._file_info)
        d.bind(calls.FILE_MAP, self._file_map)
        d.bind(calls.FILE_DIFF, self._file_diff)
        d.bind(calls.FILE_READ, self._file_read)
        d.bind(calls.ADOPT, self._adopt)
        d.bind(calls.SYNC_START, self._sync_start)
        d.bind(calls.SYNC_STATUS, self._sync_status)
        d.bind(calls.SYNC_CANCEL, self._sync_cancel)
        d.bind(calls.RELOAD, self._reload)
        d.bind(calls.INTENT_REGIONS, self._intent_regions)
        d.bind(calls.INTENT_ROTATE, self._intent_rotate)
        d.bind(calls.INTENT_CLEAR, self._intent_clear)
        d.check()
        return d

    def _call(self, call: Call) -> Awaitable[Reply]:
        return self.calls(call)

    async def _run(self, what: str, fn: Callable[[], object]) -> ReplicaInfo:
        """Run ``fn`` in a worker thread with the gate held; the replica's info afterwards."""
        async with self._exclusive(what):
            await trio.to_thread.run_sync(fn, limiter=self._limiter)
        return self.replica.info()

    # --- control calls ---------------------------------------------------------------------------

    async def _info(self, _: NoArgs) -> ReplicaInfo:
        return self.replica.info()

    async def _allocation(self, args: RangeArgs) -> list[tuple[int, bool]]:
        return self.replica.allocation(args.offset, args.length)

    async def _snapshot(self, args: SnapshotArgs) -> ReplicaInfo:
        validate_snapshot_name(args.name)
        if args.labels is not None:
            validate_labels(args.labels)
        metalib.creation_time(args.created)
        return await self._run(
            "snapshot",
            lambda: self.replica.snapshot(
                args.name, user_created=args.user_created, created=args.created, labels=args.labels
            ),
        )

    async def _mark_removed(self, args: NameArgs) -> ReplicaInfo:
        return await self._run("mark_removed", lambda: self.replica.mark_removed(args.name))

    async def _prepare_remove(self, args: NameArgs) -> list[RemovalAction]:
        return self.replica.prepare_remove(args.name)

    async def _remove_action(self, args: ActionArgs) -> ReplicaInfo:
        action = RemovalAction(kind=args.kind, source=args.source, target=args.target)
        return await self._run(
            f"{action.kind.value} {action.source}", lambda: self.replica.apply(action)
        )

    async def _remove(self, args: NameArgs) -> ReplicaInfo:
        def remove() -> None:
            self.replica.mark_removed(args.name)
            for action in self.replica.prepare_remove(args.name):
                self.replica.apply(action)

        return await self._run(f"remove {args.name}", remove)

    def _receiving(self) -> bool:
        return self._sync.state is SyncState.SYNCING

    def _not_receiving(self, what: str) -> None:
        """Structural changes wait until a rebuild's transfer into this replica has ended."""
        if self._receiving():
            raise ConflictError(
                f"replica {self.replica.instance} is receiving a rebuild: {what} refused"
            )

    async def _start_purge(self, _: NoArgs) -> PurgeStatus:
        # No await before the purge is marked started: two purges cannot both pass the check.
        self._not_receiving("purge")
        if self._purge.purging:
            raise ConflictError(f"replica {self.replica.instance} is already purging")
        self._purge = PurgeStatus(purging=True)
        self._purge_done = trio.Event()
        self._nursery.start_soon(self._purge_task)
        return self._purge

    async def _purge_status(self, args: WaitArgs) -> PurgeStatus:
        if args.wait:
            await self._purge_done.wait()
        return self._purge

    async def _purge_task(self) -> None:
        """Purge step by step: coalesce runs beside the data path (the store allows it; it can copy
        gigabytes), while marking, replace, prune and remove hold the gate (they change what the
        data path reads, and take milliseconds: prune only punches holes)."""
        replica, limiter = self.replica, self._limiter
        error = ""
        try:
            async with self._control:
                async with self._gate_held():
                    order = await trio.to_thread.run_sync(replica.start_purge, limiter=limiter)
                self._purge = PurgeStatus(purging=True, done=0, total=len(order))
                for done, disk in enumerate(order, 1):
                    if replica.is_removed(disk):
                        for action in replica.prepare_remove(disk):
                            if action.kind is ActionKind.COALESCE:
                                await trio.to_thread.run_sync(
                                    replica.apply, action, limiter=limiter
                                )
                            else:
                                async with self._gate_held():
                                    await trio.to_thread.run_sync(
                                        replica.apply, action, limiter=limiter
                                    )
                    self._purge = PurgeStatus(purging=True, done=done, total=len(order))
        except LhtrioError as exc:
            logger.warning("replica %s: purge failed: %s", self.replica.instance, exc)
            error = str(exc)
        finally:
            self._purge = attrs.evolve(self._purge, purging=False, error=error)
            self._purge_done.set()

    async def _revert(self, args: RevertArgs) -> ReplicaInfo:
        metalib.creation_time(args.created)
        self._not_receiving("revert")
        return await self._run(
            f"revert to {args.name}", lambda: self.replica.revert(args.name, created=args.created)
        )

    async def _expand(self, args: SizeArgs) -> ReplicaInfo:
        self._not_receiving("expand")
        return await self._run(f"expand to {args.size}", lambda: self.replica.expand(args.size))

    async def _checksum(self, args: ChecksumArgs) -> Checksum:
        return await trio.to_thread.run_sync(
            lambda: self.replica.checksum(args.name, force=args.force), limiter=self._limiter
        )

    async def _set_rebuilding(self, args: RebuildingArgs) -> ReplicaInfo:
        return await self._run(
            "set_rebuilding", lambda: self.replica.set_rebuilding(args.rebuilding)
        )

    async def _set_revision_counter(self, args: CounterArgs) -> ReplicaInfo:
        return await self._run(
            "set_revision_counter", lambda: self.replica.set_revision_counter(args.value)
        )

    async def _members(self, _: NoArgs) -> MemberRecord:
        return await trio.to_thread.run_sync(self.replica.members, limiter=self._limiter)

    async def _set_members(self, args: MemberRecord) -> MemberRecord:
        return await trio.to_thread.run_sync(self.replica.set_members, args, limiter=self._limiter)

    # --- rebuild: source side --------------------------------------------------------------------

    async def _file_info(self, args: NameArgs) -> FileInfo:
        return await trio.to_thread.run_sync(
            transfer.file_info, self.replica.layers, args.name, limiter=self._limiter
        )

    async def _file_map(self, args: MapArgs) -> Extents:
        return await trio.to_thread.run_sync(
            transfer.file_map,
            self.replica.layers,
            args.name,
            args.offset,
            min(args.limit, transfer.MAP_EXTENTS),
            limiter=self._limiter,
        )

    async def _file_diff(self, args: DiffArgs) -> list[int]:
        return await trio.to_thread.run_sync(
            transfer.diff,
            self.replica.layers,
            args.name,
            args.groups,
            args.digests,
            limiter=self._limiter,
        )

    async def _file_read(self, args: RangesArgs) -> Data:
        data = await trio.to_thread.run_sync(
            transfer.read_ranges, self.replica.layers, args.name, args.ranges, limiter=self._limiter
        )
        return Data(data)

    # --- rebuild: target side --------------------------------------------------------------------

    async def _adopt(self, args: AdoptArgs) -> list[str]:
        planned = plan(args)
        if self._receiving():
            raise ConflictError(f"replica {self.replica.instance} is receiving files already")
        existing: list[str] = []

        def adopt() -> None:
            existing.extend(self.replica.adopt(planned))

        await self._run("adopt", adopt)
        return existing

    async def _sync_start(self, args: SyncArgs) -> SyncStatus:
        # No await before the transfer is marked started: two cannot both pass the checks.
        source_address(args.source)
        if self._receiving():
            raise ConflictError(f"replica {self.replica.instance} is receiving files already")
        pos = 0
        for offset, length in args.dirty or ():
            if offset < pos or length <= 0:
                raise InvalidArgumentError(
                    "sync_start: dirty ranges must be in order, apart, and not empty"
                )
            pos = offset + length
        if not self.replica.rebuilding:
            raise ConflictError(
                f"replica {self.replica.instance} is not marked rebuilding: refusing to receive"
            )
        self._report(SyncStatus(state=SyncState.SYNCING, source=args.source, files=len(args.files)))
        self._sync_scope = trio.CancelScope()
        self._nursery.start_soon(self._sync_task, args, self._sync_scope)
        return self._sync

    async def _sync_task(self, args: SyncArgs, scope: trio.CancelScope) -> None:
        with scope:
            try:
                await pull(
                    self.replica,
                    args.source,
                    args.files,
                    args.existing,
                    dirty=args.dirty,
                    dirty_file=args.dirty_file,
                    limiter=self._limiter,
                    report=self._report,
                )
            except* (LhtrioError, OSError) as group:
                # The transfer runs several windows at once: their failures arrive as a group
                # (several ConnectionLostErrors when the source dies). Report the first one.
                exc: BaseException = group
                while isinstance(exc, BaseExceptionGroup):
                    exc = exc.exceptions[0]
                logger.warning(
                    "replica %s: rebuild transfer failed: %s", self.replica.instance, exc
                )
                error = f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
                self._report(attrs.evolve(self._sync, state=SyncState.FAILED, error=error))
        if scope.cancelled_caught:
            self._report(attrs.evolve(self._sync, state=SyncState.CANCELLED, error="cancelled"))
        if self._sync_scope is scope:
            self._sync_scope = None

    def _report(self, status: SyncStatus) -> None:
        self._sync = status
        self._sync_changed.set()
        self._sync_changed = trio.Event()

    async def _sync_status(self, args: StatusArgs) -> SyncStatus:
        if args.wait > 0 and self._receiving():
            with trio.move_on_after(min(args.wait, 60.0)):
                await self._sync_changed.wait()
        return self._sync

    async def _sync_cancel(self, _: NoArgs) -> SyncStatus:
        if self._sync_scope is not None:
            self._sync_scope.cancel()
        return self._sync

    async def _reload(self, _: NoArgs) -> ReplicaInfo:
        if self._receiving():
            raise ConflictError(f"replica {self.replica.instance} is still receiving files")
        return await self._run("reload", self.replica.reload)

    # --- write intents (lhtrio.replica.intent; the engine's consistency sweep) ------------------

    async def _intent_regions(self, _: NoArgs) -> Extents:
        return self.replica.intent_runs()

    async def _intent_rotate(self, _: NoArgs) -> None:
        await self._lock_data()  # not beside a data request (a connection's thread may run one)
        try:
            self.replica.intent_rotate()
        finally:
            self._data_lock.release()

    async def _intent_clear(self, args: ClearArgs) -> int:
        await self._lock_data()
        try:
            return self.replica.intent_clear(everything=args.everything)
        finally:
            self._data_lock.release()
