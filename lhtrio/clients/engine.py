"""An engine's control calls, typed (``lhtrio ctl``, the node, later the manager)."""

from __future__ import annotations

from lhtrio.clients.base import invoke
from lhtrio.models.engine import (
    RebuildProgress,
    ReplicaLink,
    SalvageResult,
    Snapshot,
    VolumeInfo,
)
from lhtrio.net import RpcClient
from lhtrio.wire.calls import engine as calls
from lhtrio.wire.control import NameArgs, NoArgs, SizeArgs

__all__ = ["EngineClient"]


class EngineClient:
    """The calls of :mod:`lhtrio.wire.calls.engine` on an open connection to an engine."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def info(self) -> VolumeInfo:
        return await invoke(self.rpc, calls.INFO, NoArgs())

    async def snapshot_create(self, name: str = "", labels: dict[str, str] | None = None) -> str:
        args = calls.CreateSnapshotArgs(name=name, labels=dict(labels or {}))
        return await invoke(self.rpc, calls.SNAPSHOT_CREATE, args)

    async def snapshot_ls(self) -> list[Snapshot]:
        return await invoke(self.rpc, calls.SNAPSHOT_LS, NoArgs())

    async def snapshot_rm(self, name: str) -> None:
        await invoke(self.rpc, calls.SNAPSHOT_RM, NameArgs(name=name))

    async def snapshot_purge(self) -> None:
        await invoke(self.rpc, calls.SNAPSHOT_PURGE, NoArgs())

    async def snapshot_revert(self, name: str) -> None:
        await invoke(self.rpc, calls.SNAPSHOT_REVERT, NameArgs(name=name))

    async def frontend_stop(self) -> VolumeInfo:
        return await invoke(self.rpc, calls.FRONTEND_STOP, NoArgs())

    async def frontend_start(self) -> VolumeInfo:
        return await invoke(self.rpc, calls.FRONTEND_START, NoArgs())

    async def expand(self, size: int) -> VolumeInfo:
        return await invoke(self.rpc, calls.EXPAND, SizeArgs(size=size))

    async def replica_ls(self) -> list[ReplicaLink]:
        return await invoke(self.rpc, calls.REPLICA_LS, NoArgs())

    async def replica_rm(self, address: str) -> VolumeInfo:
        return await invoke(self.rpc, calls.REPLICA_RM, calls.AddressArgs(address=address))

    async def replica_add(self, address: str) -> RebuildProgress:
        return await invoke(self.rpc, calls.REPLICA_ADD, calls.AddressArgs(address=address))

    async def rebuild_status(self, *, wait: float = 0.0) -> RebuildProgress | None:
        return await invoke(self.rpc, calls.REBUILD_STATUS, calls.WaitArgs(wait=wait))

    async def salvage(self) -> SalvageResult:
        return await invoke(self.rpc, calls.SALVAGE, NoArgs())
