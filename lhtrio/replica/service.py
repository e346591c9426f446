"""The replica's wire handler: protocol v1 requests mapped onto a :class:`Replica`.

Data requests, ``Flush`` and the gate that control operations hold are the base class's,
:class:`~lhtrio.replica.gate.Gate` (what runs where is explained there). Quick control calls
(``info``, ``allocation``, starting a purge or a sync) run inline on the event loop, beside the
data path: they only read, or start a task; the others run in a worker thread, one at a time,
with the gate held.

Control calls (``Call`` messages) and their arguments, validated by one cattrs converter (every
call, ``info`` included: unknown keys, missing keys and wrong types are refused); names, labels,
times and addresses are then checked by the rules of :mod:`lhtrio.models` before the call takes
the gate. An unknown name is ``UNKNOWN_CALL``, bad arguments are ``INVALID_ARGUMENT``, and no
argument, however hostile, fails the replica or surfaces as ``INTERNAL``:

=====================  ==========================================================  ============
call                   arguments                                                   result
=====================  ==========================================================  ============
info                                                                               replica info
allocation             offset; length                                              [[len, data]]
snapshot               name; user_created=true; created (RFC 3339)=now; labels={}  info
mark_removed           name                                                        info
prepare_remove         name                                                        actions
remove_action          kind (remove/coalesce/replace/prune); source; target=""     info
remove                 name (mark removed, then run its removal actions)           info
purge                  (starts a purge in the background)                          status
purge_status           wait=false (true: return when the purge has ended)           status
revert                 name; created=now                                           info
expand                 size                                                        info
checksum               name; force=false                                           checksum
set_rebuilding         rebuilding                                                  info
set_revision_counter   value                                                       info
*rebuild source*
file_info              name (a snapshot file)                                      file info
file_map               name; offset=0; limit=16384 (at most; ask again from the    [[off, len]]
                       end of the last extent until empty)
file_diff              name; groups ([[[off, len]...]...]); digests (bytes)        [index]
file_read              name; ranges ([[off, len]...])                              ``Data``
*rebuild target*
adopt                  disks ({file: {parent, removed, user_created, created,      existing
                       labels, size}})                                             files
sync_start             source (address); files; existing; dirty=nil; dirty_file=""  status
                       (an away log: byte ranges of dirty_file that may differ;
                       the other existing files are known equal)
sync_status            wait=0 (seconds to wait for a change)                       status
sync_cancel                                                                        status
reload                                                                             info
*write intents* (:mod:`lhtrio.replica.intent`)
intent_regions                                                                     [[off, len]]
intent_rotate          (a new generation; no data request runs meanwhile)
intent_clear           everything=false (unmark what the last two generations did  regions
                       not write; true: all, when nothing is in flight)            still marked
=====================  ==========================================================  ============

The rebuild calls are explained in :mod:`lhtrio.replica.transfer` (source),
:mod:`lhtrio.replica.adopt` (``adopt``, ``reload``) and :mod:`lhtrio.replica.sync` (the transfer).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
import trio

from lhtrio.errors import ConflictError, InvalidArgumentError, LhtrioError, UnknownCallError
from lhtrio.models.names import validate_labels, validate_snapshot_name
from lhtrio.replica import meta as metalib
from lhtrio.replica import transfer
from lhtrio.replica.calls import (
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
    plan,
    source_address,
)
from lhtrio.replica.chain import Action, ActionKind
from lhtrio.replica.gate import Gate
from lhtrio.replica.store import Replica
from lhtrio.replica.sync import SyncStatus, pull
from lhtrio.wire import Call, Data, Reply, Result
from lhtrio.wire.control import NameArgs, NoArgs, SizeArgs, converter, structure_args

__all__ = ["ReplicaService", "PurgeStatus"]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class PurgeStatus:
    purging: bool = False
    done: int = 0
    total: int = 0
    error: str = ""


# --- the handler ---------------------------------------------------------------------------------


class ReplicaService(Gate):
    """``handler(request)`` for :func:`lhtrio.net.serve_rpc`, serving one open replica.

    Background work (a purge) runs in ``nursery``; the caller owns it and closes the replica after
    the nursery is done.
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
        self._calls: dict[str, Callable[[Call], Awaitable[Reply] | Reply]] = {
            "info": self._info_call,
            "purge_status": self._purge_status,
            "allocation": self._allocation,
            "snapshot": self._snapshot,
            "mark_removed": self._mark_removed,
            "prepare_remove": self._prepare_remove,
            "remove_action": self._remove_action,
            "remove": self._remove,
            "purge": self._start_purge,
            "revert": self._revert,
            "expand": self._expand,
            "checksum": self._checksum,
            "set_rebuilding": self._set_rebuilding,
            "set_revision_counter": self._set_revision_counter,
            "file_info": self._file_info,
            "file_map": self._file_map,
            "file_diff": self._file_diff,
            "file_read": self._file_read,
            "adopt": self._adopt,
            "sync_start": self._sync_start,
            "sync_status": self._sync_status,
            "sync_cancel": self._sync_cancel,
            "reload": self._reload,
            "intent_regions": self._intent_regions,
            "intent_rotate": self._intent_rotate,
            "intent_clear": self._intent_clear,
        }
        self._sync = SyncStatus()
        self._sync_changed = trio.Event()
        self._sync_scope: trio.CancelScope | None = None

    def _call(self, call: Call) -> Reply | Awaitable[Reply]:
        handler = self._calls.get(call.name)
        if handler is None:
            raise UnknownCallError(
                f"replica {self.replica.instance} has no control call {call.name!r}"
            )
        return handler(call)

    async def _run(self, what: str, fn: Callable[[], object]) -> Reply:
        async with self._exclusive(what):
            await trio.to_thread.run_sync(fn, limiter=self._limiter)
        return self._info()

    # --- control calls ---------------------------------------------------------------------------

    def _info(self) -> Reply:
        return Result(converter.unstructure(self.replica.info()))

    def _info_call(self, call: Call) -> Reply:
        structure_args(NoArgs, call)
        return self._info()

    async def _snapshot(self, call: Call) -> Reply:
        args: SnapshotArgs = structure_args(SnapshotArgs, call)
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

    async def _mark_removed(self, call: Call) -> Reply:
        args: NameArgs = structure_args(NameArgs, call)
        return await self._run("mark_removed", lambda: self.replica.mark_removed(args.name))

    def _allocation(self, call: Call) -> Reply:
        args: RangeArgs = structure_args(RangeArgs, call)
        extents = self.replica.allocation(args.offset, args.length)
        return Result([[size, allocated] for size, allocated in extents])

    def _prepare_remove(self, call: Call) -> Reply:
        args: NameArgs = structure_args(NameArgs, call)
        return Result(converter.unstructure(self.replica.prepare_remove(args.name)))

    async def _remove_action(self, call: Call) -> Reply:
        args: ActionArgs = structure_args(ActionArgs, call)
        try:
            kind = ActionKind(args.kind)
        except ValueError:
            raise InvalidArgumentError(f"unknown removal action {args.kind!r}") from None
        action = Action(kind=kind, source=args.source, target=args.target)
        return await self._run(f"{kind.value} {args.source}", lambda: self.replica.apply(action))

    async def _remove(self, call: Call) -> Reply:
        args: NameArgs = structure_args(NameArgs, call)

        def remove() -> None:
            self.replica.mark_removed(args.name)
            for action in self.replica.prepare_remove(args.name):
                self.replica.apply(action)

        return await self._run(f"remove {args.name}", remove)

    def _not_receiving(self, what: str) -> None:
        """Structural changes wait until a rebuild's transfer into this replica has ended."""
        if self._sync.state == "syncing":
            raise ConflictError(
                f"replica {self.replica.instance} is receiving a rebuild: {what} refused"
            )

    def _start_purge(self, call: Call) -> Reply:
        structure_args(NoArgs, call)
        self._not_receiving("purge")
        if self._purge.purging:
            raise ConflictError(f"replica {self.replica.instance} is already purging")
        self._purge = PurgeStatus(purging=True)
        self._purge_done = trio.Event()
        self._nursery.start_soon(self._purge_task)
        return Result(converter.unstructure(self._purge))

    async def _purge_status(self, call: Call) -> Reply:
        args: WaitArgs = structure_args(WaitArgs, call)
        if args.wait:
            await self._purge_done.wait()
        return Result(converter.unstructure(self._purge))

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

    async def _revert(self, call: Call) -> Reply:
        args: RevertArgs = structure_args(RevertArgs, call)
        metalib.creation_time(args.created)
        self._not_receiving("revert")
        return await self._run(
            f"revert to {args.name}", lambda: self.replica.revert(args.name, created=args.created)
        )

    async def _expand(self, call: Call) -> Reply:
        args: SizeArgs = structure_args(SizeArgs, call)
        self._not_receiving("expand")
        return await self._run(f"expand to {args.size}", lambda: self.replica.expand(args.size))

    async def _checksum(self, call: Call) -> Reply:
        args: ChecksumArgs = structure_args(ChecksumArgs, call)
        info = await trio.to_thread.run_sync(
            lambda: self.replica.checksum(args.name, force=args.force), limiter=self._limiter
        )
        return Result(converter.unstructure(info))

    async def _set_rebuilding(self, call: Call) -> Reply:
        args: RebuildingArgs = structure_args(RebuildingArgs, call)
        return await self._run(
            "set_rebuilding", lambda: self.replica.set_rebuilding(args.rebuilding)
        )

    async def _set_revision_counter(self, call: Call) -> Reply:
        args: CounterArgs = structure_args(CounterArgs, call)
        return await self._run(
            "set_revision_counter", lambda: self.replica.set_revision_counter(args.value)
        )

    # --- rebuild: source side --------------------------------------------------------------------

    async def _file_info(self, call: Call) -> Reply:
        args: NameArgs = structure_args(NameArgs, call)
        info = await trio.to_thread.run_sync(
            transfer.file_info, self.replica.layers, args.name, limiter=self._limiter
        )
        return Result(converter.unstructure(info))

    async def _file_map(self, call: Call) -> Reply:
        args: MapArgs = structure_args(MapArgs, call)
        extents = await trio.to_thread.run_sync(
            transfer.file_map,
            self.replica.layers,
            args.name,
            args.offset,
            min(args.limit, transfer.MAP_EXTENTS),
            limiter=self._limiter,
        )
        return Result([[offset, length] for offset, length in extents])

    async def _file_diff(self, call: Call) -> Reply:
        args: DiffArgs = structure_args(DiffArgs, call)
        differ = await trio.to_thread.run_sync(
            transfer.diff,
            self.replica.layers,
            args.name,
            args.groups,
            args.digests,
            limiter=self._limiter,
        )
        return Result(differ)

    async def _file_read(self, call: Call) -> Reply:
        args: RangesArgs = structure_args(RangesArgs, call)
        data = await trio.to_thread.run_sync(
            transfer.read_ranges, self.replica.layers, args.name, args.ranges, limiter=self._limiter
        )
        return Data(data)

    # --- rebuild: target side --------------------------------------------------------------------

    async def _adopt(self, call: Call) -> Reply:
        planned = plan(structure_args(AdoptArgs, call))
        if self._sync.state == "syncing":
            raise ConflictError(f"replica {self.replica.instance} is receiving files already")
        existing: list[str] = []

        def adopt() -> None:
            existing.extend(self.replica.adopt(planned))

        await self._run("adopt", adopt)
        return Result(existing)

    def _sync_start(self, call: Call) -> Reply:
        args: SyncArgs = structure_args(SyncArgs, call)
        source_address(args.source)
        if self._sync.state == "syncing":
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
        self._report(SyncStatus(state="syncing", source=args.source, files=len(args.files)))
        self._sync_scope = trio.CancelScope()
        self._nursery.start_soon(self._sync_task, args, self._sync_scope)
        return Result(converter.unstructure(self._sync))

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
                self._report(attrs.evolve(self._sync, state="failed", error=error))
        if scope.cancelled_caught:
            self._report(attrs.evolve(self._sync, state="cancelled", error="cancelled"))
        if self._sync_scope is scope:
            self._sync_scope = None

    def _report(self, status: SyncStatus) -> None:
        self._sync = status
        self._sync_changed.set()
        self._sync_changed = trio.Event()

    async def _sync_status(self, call: Call) -> Reply:
        args: StatusArgs = structure_args(StatusArgs, call)
        if args.wait > 0 and self._sync.state == "syncing":
            with trio.move_on_after(min(args.wait, 60.0)):
                await self._sync_changed.wait()
        return Result(converter.unstructure(self._sync))

    def _sync_cancel(self, call: Call) -> Reply:
        structure_args(NoArgs, call)
        if self._sync_scope is not None:
            self._sync_scope.cancel()
        return Result(converter.unstructure(self._sync))

    async def _reload(self, call: Call) -> Reply:
        structure_args(NoArgs, call)
        if self._sync.state == "syncing":
            raise ConflictError(f"replica {self.replica.instance} is still receiving files")
        return await self._run("reload", self.replica.reload)

    # --- write intents (lhtrio.replica.intent; the engine's consistency sweep) ------------------

    def _intent_regions(self, call: Call) -> Reply:
        structure_args(NoArgs, call)
        return Result([[offset, length] for offset, length in self.replica.intent_runs()])

    async def _intent_rotate(self, call: Call) -> Reply:
        structure_args(NoArgs, call)
        await self._lock_data()  # not beside a data request (a connection's thread may run one)
        try:
            self.replica.intent_rotate()
        finally:
            self._data_lock.release()
        return Result(None)

    async def _intent_clear(self, call: Call) -> Reply:
        args: ClearArgs = structure_args(ClearArgs, call)
        await self._lock_data()
        try:
            left = self.replica.intent_clear(everything=args.everything)
        finally:
            self._data_lock.release()
        return Result(left)
