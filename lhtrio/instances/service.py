"""The node's control endpoint: the instance-manager API as protocol v1 ``Call`` handlers.

``lhtrio im`` is its operator client; the manager (later) is the other. The wire protocol rather
than HTTP: it is what engines and replicas already speak (identity in the hello, strict argument
checking, one error tree), and long polls (``instance_watch``, ``instance_log`` with ``wait``)
replace streams. The calls, their arguments and results are declared in
:mod:`lhtrio.wire.calls.node`; :class:`lhtrio.clients.node.NodeClient` calls them.
"""

from __future__ import annotations

from lhtrio.instances.disks import disk_status
from lhtrio.instances.supervisor import InstanceSpec, Supervisor
from lhtrio.instances.watch import WatchAnswers
from lhtrio.models.instance import (
    DiskStatus,
    Instance,
    InstanceWatch,
    LogLines,
    NodeInfo,
)
from lhtrio.wire.calls import node as calls
from lhtrio.wire.calls.node import MAX_WAIT, CreateArgs, DataArgs, LogArgs, WatchArgs
from lhtrio.wire.control import Dispatcher, NameArgs, NoArgs

__all__ = ["NodeService"]


class NodeService(Dispatcher):
    """``handler(request)`` for the node's control endpoint."""

    def __init__(self, name: str, supervisor: Supervisor, *, address: str = "") -> None:
        super().__init__(calls.CALLS)
        self.name = name
        self.supervisor = supervisor
        self.address = address
        self._answers = WatchAnswers()
        self.bind(calls.NODE_INFO, self._node_info)
        self.bind(calls.DISK_LIST, self._disk_list)
        self.bind(calls.INSTANCE_CREATE, self._create)
        self.bind(calls.INSTANCE_DELETE, self._delete)
        self.bind(calls.INSTANCE_GET, self._get)
        self.bind(calls.INSTANCE_LIST, self._list)
        self.bind(calls.INSTANCE_WATCH, self._watch)
        self.bind(calls.INSTANCE_LOG, self._log)
        self.bind(calls.REPLICA_DATA_REMOVE, self._remove_data)
        self.check()

    def disks(self) -> list[DiskStatus]:
        return [
            disk_status(disk, self.supervisor.scheduled(disk)) for disk in self.supervisor.ctx.disks
        ]

    async def _node_info(self, _: NoArgs) -> NodeInfo:
        ctx = self.supervisor.ctx
        return NodeInfo(
            name=self.name,
            address=self.address,
            nbd=str(ctx.nbd),
            port_range=f"{ctx.ports.low}-{ctx.ports.high}",
            ports_in_use=sorted(ctx.ports.used),
            instances=len(self.supervisor.list()),
            disks=self.disks(),
        )

    async def _disk_list(self, _: NoArgs) -> list[DiskStatus]:
        return self.disks()

    async def _create(self, args: CreateArgs) -> Instance:
        spec = InstanceSpec(
            name=args.name,
            kind=args.type,
            volume=args.volume,
            size=args.size,
            replicas=tuple(args.replicas),
            disk=args.disk,
            salvage=args.salvage,
            replica_timeout=args.replica_timeout,
        )
        instance = await self.supervisor.create(spec)
        return instance.record()

    async def _delete(self, args: NameArgs) -> Instance:
        return (await self.supervisor.delete(args.name)).record()

    async def _get(self, args: NameArgs) -> Instance:
        return self.supervisor.get(args.name).record()

    async def _list(self, _: NoArgs) -> list[Instance]:
        return [i.record() for i in self.supervisor.list()]

    async def _watch(self, args: WatchArgs) -> InstanceWatch:
        version = await self.supervisor.watch(args.version, min(max(args.wait, 0.0), MAX_WAIT))
        return self._answers.answer(version, await self._list(NoArgs()), args.since)

    async def _remove_data(self, args: DataArgs) -> bool:
        return await self.supervisor.remove_replica_data(args.name, args.disk)

    async def _log(self, args: LogArgs) -> LogLines:
        self.supervisor.get(args.name)  # NotFoundError for an unknown instance
        logs = self.supervisor.ctx.logs
        limit = args.limit if args.limit > 0 else None
        if args.wait > 0:
            lines = await logs.wait(args.name, args.after, min(args.wait, MAX_WAIT))
            lines = lines[-limit:] if limit else lines
        else:
            lines = logs.lines(args.name, after=args.after, limit=limit)
        return LogLines(lines=list(lines))
