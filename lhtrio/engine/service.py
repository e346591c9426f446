"""The engine's control endpoint: the calls of :mod:`lhtrio.wire.calls.engine`, dispatched.

``lhtrio ctl`` (through :class:`~lhtrio.clients.engine.EngineClient`), the node and, later, the
manager call them. The table there lists every call with its arguments and result; each result is
a record of :mod:`lhtrio.models.engine`. The :class:`~lhtrio.wire.control.Dispatcher` refuses
unknown calls and malformed arguments before a handler runs; the handlers check what needs more
than a type (snapshot names, labels, whether a snapshot exists) before any I/O pauses.

Adding a replica is in :mod:`lhtrio.engine.replica_add`, snapshots, expansion, revert and salvage
in :mod:`lhtrio.engine.operations`, the rule between long operations in
:mod:`lhtrio.engine.operation_gate`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from lhtrio.engine import operations
from lhtrio.engine.purge import purge
from lhtrio.engine.replica_add import add_replica
from lhtrio.errors import AlreadyExistsError, ConflictError, NotFoundError
from lhtrio.models.engine import (
    FrontendInfo,
    RebuildProgress,
    ReplicaLink,
    SalvageResult,
    Snapshot,
    VolumeInfo,
)
from lhtrio.models.names import validate_labels, validate_snapshot_name
from lhtrio.models.replica import DiskInfo, ReplicaInfo, snapshot_of
from lhtrio.wire.calls import engine as calls
from lhtrio.wire.calls.engine import MAX_WAIT, AddressArgs, CreateSnapshotArgs, WaitArgs
from lhtrio.wire.control import Dispatcher, NameArgs, NoArgs, SizeArgs

if TYPE_CHECKING:
    from lhtrio.engine.consistency import Resync
    from lhtrio.engine.frontend import FrontendControl
    from lhtrio.engine.volume import Volume

__all__ = ["EngineService"]


class EngineService(Dispatcher):
    """``handler(request)`` for the engine's control endpoint."""

    def __init__(
        self, volume: Volume, frontend: FrontendControl, *, resync: Resync | None = None
    ) -> None:
        super().__init__(calls.CALLS, what="engine")
        self.volume = volume
        self.frontend = frontend
        self.resync = resync
        self.bind(calls.INFO, self._info)
        self.bind(calls.SNAPSHOT_CREATE, self._snapshot_create)
        self.bind(calls.SNAPSHOT_LS, self._snapshot_ls)
        self.bind(calls.SNAPSHOT_RM, self._snapshot_rm)
        self.bind(calls.SNAPSHOT_PURGE, self._snapshot_purge)
        self.bind(calls.SNAPSHOT_REVERT, self._snapshot_revert)
        self.bind(calls.FRONTEND_STOP, self._frontend_stop)
        self.bind(calls.FRONTEND_START, self._frontend_start)
        self.bind(calls.EXPAND, self._expand)
        self.bind(calls.REPLICA_LS, self._replica_ls)
        self.bind(calls.REPLICA_RM, self._replica_rm)
        self.bind(calls.REPLICA_ADD, self._replica_add)
        self.bind(calls.REBUILD_STATUS, self._rebuild_status)
        self.bind(calls.SALVAGE, self._salvage)
        self.check()

    def info(self) -> VolumeInfo:
        volume = self.volume
        return VolumeInfo(
            volume=volume.name,
            size=volume.size,
            state=volume.replicas.health,
            frontend=FrontendInfo(state=self.frontend.state, address=self.frontend.address),
            replicas=self._replicas(),
            resync=None if self.resync is None else self.resync.record(),
        )

    def _replicas(self) -> list[ReplicaLink]:
        rebuild = self.volume.rebuild
        links = self.volume.links
        return [
            ReplicaLink(
                address=m.address,
                mode=m.mode,
                error=m.error,
                link="" if (client := links.client(m)) is None else _link(m.address, client.via),
                rebuild=(
                    rebuild.record()
                    if rebuild is not None and rebuild.address == m.address
                    else None
                ),
            )
            for m in self.volume.replicas.members
        ]

    async def _info(self, _: NoArgs) -> VolumeInfo:
        return self.info()

    async def _snapshot_create(self, args: CreateSnapshotArgs) -> str:
        # Checked here, before I/O pauses: a request that is invalid never reaches a replica.
        name = validate_snapshot_name(args.name) if args.name else str(uuid.uuid4())
        labels = validate_labels(args.labels)
        info = await self.volume.control.info_of_one()
        if info.snapshot(name) is not None:
            raise AlreadyExistsError(f"volume {self.volume.name} has a snapshot {name!r} already")
        await operations.snapshot(self.volume, name, labels=labels, user_created=True)
        return name

    async def _snapshot_ls(self, _: NoArgs) -> list[Snapshot]:
        info = await self.volume.control.info_of_one()
        snapshots = [
            _snapshot(name, disk, info)
            for disk in info.disks.values()
            if (name := snapshot_of(disk.name)) is not None
        ]
        return sorted(snapshots, key=lambda s: (s.created, s.name))

    async def _snapshot_rm(self, args: NameArgs) -> None:
        validate_snapshot_name(args.name)
        await self._require_snapshot(args.name)
        async with self.volume.quiesced():  # not between a rebuild's look at the graph and adopt
            await self.volume.control.all(
                "mark_removed", lambda replica: replica.mark_removed(args.name)
            )

    async def _snapshot_purge(self, _: NoArgs) -> None:
        await purge(self.volume)

    async def _snapshot_revert(self, args: NameArgs) -> None:
        validate_snapshot_name(args.name)
        if self.frontend.running:
            raise ConflictError(
                f"volume {self.volume.name}: stop the frontend before reverting "
                "(lhtrio ctl frontend stop)"
            )
        await self._require_snapshot(args.name)
        await operations.revert(self.volume, args.name)

    async def _require_snapshot(self, name: str) -> None:
        info = await self.volume.control.info_of_one()
        if info.snapshot(name) is None:
            raise NotFoundError(f"volume {self.volume.name} has no snapshot {name!r}")

    async def _frontend_stop(self, _: NoArgs) -> VolumeInfo:
        await self.frontend.stop()
        return self.info()

    async def _frontend_start(self, _: NoArgs) -> VolumeInfo:
        await self.frontend.start()
        return self.info()

    async def _expand(self, args: SizeArgs) -> VolumeInfo:
        await operations.expand(self.volume, args.size)
        return self.info()

    async def _replica_ls(self, _: NoArgs) -> list[ReplicaLink]:
        return self._replicas()

    async def _replica_rm(self, args: AddressArgs) -> VolumeInfo:
        operations.remove_replica(self.volume, args.address)
        return self.info()

    async def _replica_add(self, args: AddressArgs) -> RebuildProgress:
        return (await add_replica(self.volume, args.address)).record()

    async def _rebuild_status(self, args: WaitArgs) -> RebuildProgress | None:
        rebuild = self.volume.rebuild
        if rebuild is None:
            return None
        await rebuild.wait_changed(min(max(args.wait, 0.0), MAX_WAIT))
        return rebuild.record()

    async def _salvage(self, _: NoArgs) -> SalvageResult:
        address, why = await operations.salvage(self.volume)
        return SalvageResult(address=address, reason=why, info=self.info())


def _snapshot(name: str, disk: DiskInfo, info: ReplicaInfo) -> Snapshot:
    """Snapshot ``name`` (on ``disk``) as a volume's snapshot; its relatives by snapshot name
    (a child that is the head keeps its disk name)."""
    return Snapshot(
        name=name,
        parent=snapshot_of(disk.parent) or disk.parent,
        children=[snapshot_of(child) or child for child in disk.children],
        created=disk.created,
        user_created=disk.user_created,
        removed=disk.removed,
        size=disk.allocated,
        labels=disk.labels or {},
        in_chain=disk.name in info.chain,
    )


def _link(address: str, via: str) -> str:
    """How the engine reaches a replica: ``unix`` (a Unix socket, given or same-host) or ``tcp``."""
    return "unix" if via or address.startswith("unix:") else "tcp"
