"""The node's instance manager, typed (``lhtrio im`` and, later, the manager)."""

from __future__ import annotations

from lhtrio.clients.base import invoke
from lhtrio.models.instance import (
    DiskStatus,
    Instance,
    InstanceKind,
    InstanceWatch,
    LogLines,
    NodeInfo,
)
from lhtrio.net import RpcClient
from lhtrio.wire.calls import node as calls
from lhtrio.wire.control import NameArgs, NoArgs

__all__ = ["NodeClient"]


class NodeClient:
    """The calls of :mod:`lhtrio.wire.calls.node` on an open connection to a node."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    async def info(self) -> NodeInfo:
        return await invoke(self.rpc, calls.NODE_INFO, NoArgs())

    async def disks(self) -> list[DiskStatus]:
        return await invoke(self.rpc, calls.DISK_LIST, NoArgs())

    async def create(
        self,
        name: str,
        kind: InstanceKind,
        *,
        volume: str,
        size: int,
        replicas: list[str] | None = None,
        disk: str = "",
        salvage: bool = False,
        replica_timeout: float = 8.0,
    ) -> Instance:
        args = calls.CreateArgs(
            name=name,
            type=kind,
            volume=volume,
            size=size,
            replicas=list(replicas or []),
            disk=disk,
            salvage=salvage,
            replica_timeout=replica_timeout,
        )
        return await invoke(self.rpc, calls.INSTANCE_CREATE, args)

    async def delete(self, name: str) -> Instance:
        return await invoke(self.rpc, calls.INSTANCE_DELETE, NameArgs(name=name))

    async def get(self, name: str) -> Instance:
        return await invoke(self.rpc, calls.INSTANCE_GET, NameArgs(name=name))

    async def instances(self) -> list[Instance]:
        return await invoke(self.rpc, calls.INSTANCE_LIST, NoArgs())

    async def watch(self, version: int = 0, wait: float = 0.0, since: int = 0) -> InstanceWatch:
        """The instances once the version is past ``version`` (or ``wait`` ran out); ``since``:
        an earlier answer's ``answer``, to get only what changed since it."""
        args = calls.WatchArgs(version=version, wait=wait, since=since)
        return await invoke(self.rpc, calls.INSTANCE_WATCH, args)

    async def log(
        self, name: str, *, after: int = 0, wait: float = 0.0, limit: int = 0
    ) -> LogLines:
        args = calls.LogArgs(name=name, after=after, wait=wait, limit=limit)
        return await invoke(self.rpc, calls.INSTANCE_LOG, args)

    async def remove_replica_data(self, name: str, *, disk: str = "") -> bool:
        """Delete replica ``name``'s directory (refused while it runs); False if none."""
        args = calls.DataArgs(name=name, disk=disk)
        return await invoke(self.rpc, calls.REPLICA_DATA_REMOVE, args)
