"""A replica's control calls, typed (the engine, a rebuild target's sync, tools)."""

from __future__ import annotations

from lhtrio.clients.base import invoke
from lhtrio.models.replica import (
    ActionKind,
    Checksum,
    FileInfo,
    MemberRecord,
    PurgeStatus,
    RemovalAction,
    ReplicaInfo,
    SyncStatus,
)
from lhtrio.net import RpcClient
from lhtrio.wire.calls import replica as calls
from lhtrio.wire.control import NameArgs, NoArgs, SizeArgs
from lhtrio.wire.messages import Data

__all__ = ["ReplicaClient"]

Extents = list[tuple[int, int]]


class ReplicaClient:
    """The calls of :mod:`lhtrio.wire.calls.replica` on an open connection to a replica."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def info(self) -> ReplicaInfo:
        return await invoke(self.rpc, calls.INFO, NoArgs())

    async def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]:
        args = calls.RangeArgs(offset=offset, length=length)
        return await invoke(self.rpc, calls.ALLOCATION, args)

    async def snapshot(
        self,
        name: str,
        *,
        user_created: bool = True,
        created: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> ReplicaInfo:
        args = calls.SnapshotArgs(
            name=name, user_created=user_created, created=created, labels=labels
        )
        return await invoke(self.rpc, calls.SNAPSHOT, args)

    async def mark_removed(self, name: str) -> ReplicaInfo:
        return await invoke(self.rpc, calls.MARK_REMOVED, NameArgs(name=name))

    async def prepare_remove(self, name: str) -> list[RemovalAction]:
        return await invoke(self.rpc, calls.PREPARE_REMOVE, NameArgs(name=name))

    async def remove_action(self, kind: ActionKind, source: str, target: str = "") -> ReplicaInfo:
        args = calls.ActionArgs(kind=kind, source=source, target=target)
        return await invoke(self.rpc, calls.REMOVE_ACTION, args)

    async def remove(self, name: str) -> ReplicaInfo:
        return await invoke(self.rpc, calls.REMOVE, NameArgs(name=name))

    async def purge(self) -> PurgeStatus:
        return await invoke(self.rpc, calls.PURGE, NoArgs())

    async def purge_status(self, *, wait: bool = False) -> PurgeStatus:
        return await invoke(self.rpc, calls.PURGE_STATUS, calls.WaitArgs(wait=wait))

    async def revert(self, name: str, *, created: str | None = None) -> ReplicaInfo:
        args = calls.RevertArgs(name=name, created=created)
        return await invoke(self.rpc, calls.REVERT, args)

    async def expand(self, size: int) -> ReplicaInfo:
        return await invoke(self.rpc, calls.EXPAND, SizeArgs(size=size))

    async def checksum(self, name: str, *, force: bool = False) -> Checksum:
        args = calls.ChecksumArgs(name=name, force=force)
        return await invoke(self.rpc, calls.CHECKSUM, args)

    async def set_rebuilding(self, rebuilding: bool) -> ReplicaInfo:
        args = calls.RebuildingArgs(rebuilding=rebuilding)
        return await invoke(self.rpc, calls.SET_REBUILDING, args)

    async def set_revision_counter(self, value: int) -> ReplicaInfo:
        args = calls.CounterArgs(value=value)
        return await invoke(self.rpc, calls.SET_REVISION_COUNTER, args)

    async def members(self) -> MemberRecord:
        """The replica set the volume's engine last recorded here."""
        return await invoke(self.rpc, calls.MEMBERS, NoArgs())

    async def set_members(self, record: MemberRecord) -> MemberRecord:
        """Record ``record`` durably unless the replica holds a newer one; what it holds."""
        return await invoke(self.rpc, calls.SET_MEMBERS, record)

    # --- a rebuild's source ----------------------------------------------------------------------

    async def file_info(self, name: str) -> FileInfo:
        return await invoke(self.rpc, calls.FILE_INFO, NameArgs(name=name))

    async def file_map(
        self, name: str, *, offset: int = 0, limit: int = calls.MAP_EXTENTS
    ) -> Extents:
        args = calls.MapArgs(name=name, offset=offset, limit=limit)
        return await invoke(self.rpc, calls.FILE_MAP, args)

    async def file_diff(
        self, name: str, groups: list[list[tuple[int, int]]], digests: bytes
    ) -> list[int]:
        args = calls.DiffArgs(name=name, groups=groups, digests=digests)
        return await invoke(self.rpc, calls.FILE_DIFF, args)

    async def file_read(self, name: str, ranges: Extents) -> Data:
        args = calls.RangesArgs(name=name, ranges=ranges)
        return await invoke(self.rpc, calls.FILE_READ, args)

    # --- a rebuild's target ----------------------------------------------------------------------

    async def adopt(self, disks: dict[str, calls.PlannedArgs]) -> list[str]:
        return await invoke(self.rpc, calls.ADOPT, calls.AdoptArgs(disks=disks))

    async def sync_start(
        self,
        source: str,
        files: list[str],
        existing: list[str],
        *,
        dirty: Extents | None = None,
        dirty_file: str = "",
    ) -> SyncStatus:
        args = calls.SyncArgs(
            source=source, files=files, existing=existing, dirty=dirty, dirty_file=dirty_file
        )
        return await invoke(self.rpc, calls.SYNC_START, args)

    async def sync_status(self, *, wait: float = 0.0) -> SyncStatus:
        return await invoke(self.rpc, calls.SYNC_STATUS, calls.StatusArgs(wait=wait))

    async def sync_cancel(self) -> SyncStatus:
        return await invoke(self.rpc, calls.SYNC_CANCEL, NoArgs())

    async def reload(self) -> ReplicaInfo:
        return await invoke(self.rpc, calls.RELOAD, NoArgs())

    # --- write intents ---------------------------------------------------------------------------

    async def intent_regions(self) -> Extents:
        return await invoke(self.rpc, calls.INTENT_REGIONS, NoArgs())

    async def intent_rotate(self) -> None:
        await invoke(self.rpc, calls.INTENT_ROTATE, NoArgs())

    async def intent_clear(self, *, everything: bool = False) -> int:
        args = calls.ClearArgs(everything=everything)
        return await invoke(self.rpc, calls.INTENT_CLEAR, args)
