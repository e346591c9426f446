"""The node's control endpoint: the instance-manager API as protocol v1 ``Call`` handlers.

``lhtrio im`` is its operator client; the manager (later) is the other. The wire protocol rather
than HTTP: it is what engines and replicas already speak (identity in the hello, strict argument
checking, one error tree), and long polls (``instance_watch``, ``instance_log`` with ``wait``)
replace streams.

================  ====================================================  =========================
call              arguments                                             result
================  ====================================================  =========================
node_info                                                               name, addresses, disks,
                                                                        instance count
disk_list                                                               disks: uuid, path,
                                                                        capacity, available,
                                                                        scheduled, replicas
instance_create   name; type (engine|replica); volume; size;            instance
                  replicas=[] (engine); disk="" (replica: UUID or
                  path); salvage=false; replica_timeout=8
instance_delete   name                                                  instance (stopped)
instance_get      name                                                  instance
instance_list                                                           [instance]
instance_watch    version=0; wait=0 (seconds)                           version, instances
instance_log      name; after=0; wait=0; limit=0                        lines: [[seq, text]]
================  ====================================================  =========================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from lhtrio.errors import InvalidArgumentError, UnknownCallError
from lhtrio.node.disks import disk_status
from lhtrio.node.instances import InstanceSpec, Kind, Supervisor
from lhtrio.wire import Call, Reply, Request, Result
from lhtrio.wire.control import NameArgs, NoArgs, structure_args

__all__ = ["NodeService"]

MAX_WAIT = 60.0


@attrs.frozen(kw_only=True)
class _Create:
    name: str
    type: str
    volume: str
    size: int
    replicas: list[str] = attrs.field(factory=list)
    disk: str = ""
    salvage: bool = False
    replica_timeout: float = 8.0


@attrs.frozen(kw_only=True)
class _Watch:
    version: int = 0
    wait: float = 0.0


@attrs.frozen(kw_only=True)
class _Log:
    name: str
    after: int = 0
    wait: float = 0.0
    limit: int = 0


class NodeService:
    """``handler(request)`` for the node's control endpoint."""

    def __init__(self, name: str, supervisor: Supervisor, *, address: str = "") -> None:
        self.name = name
        self.supervisor = supervisor
        self.address = address
        self._calls: dict[str, Callable[[Call], Awaitable[Any]]] = {
            "node_info": self._node_info,
            "disk_list": self._disk_list,
            "instance_create": self._create,
            "instance_delete": self._delete,
            "instance_get": self._get,
            "instance_list": self._list,
            "instance_watch": self._watch,
            "instance_log": self._log,
        }

    def __call__(self, request: Request) -> Awaitable[Reply]:
        if not isinstance(request, Call):
            raise UnknownCallError(
                f"the node control endpoint takes control calls, not {type(request).__name__}"
            )
        handler = self._calls.get(request.name)
        if handler is None:
            raise UnknownCallError(f"the node has no control call {request.name!r}")
        return self._result(handler, request)

    async def _result(self, handler: Callable[[Call], Awaitable[Any]], call: Call) -> Reply:
        return Result(await handler(call))

    def disks(self) -> list[dict[str, object]]:
        return [
            disk_status(disk, self.supervisor.scheduled(disk)) for disk in self.supervisor.ctx.disks
        ]

    async def _node_info(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        ctx = self.supervisor.ctx
        return {
            "name": self.name,
            "address": self.address,
            "nbd": str(ctx.nbd),
            "port_range": f"{ctx.ports.low}-{ctx.ports.high}",
            "ports_in_use": sorted(ctx.ports.used),
            "instances": len(self.supervisor.list()),
            "disks": self.disks(),
        }

    async def _disk_list(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        return self.disks()

    async def _create(self, call: Call) -> Any:
        args: _Create = structure_args(_Create, call)
        try:
            kind = Kind(args.type)
        except ValueError:
            raise InvalidArgumentError(
                f"instance type must be engine or replica, not {args.type!r}"
            ) from None
        spec = InstanceSpec(
            name=args.name,
            kind=kind,
            volume=args.volume,
            size=args.size,
            replicas=tuple(args.replicas),
            disk=args.disk,
            salvage=args.salvage,
            replica_timeout=args.replica_timeout,
        )
        instance = await self.supervisor.create(spec)
        return instance.as_dict()

    async def _delete(self, call: Call) -> Any:
        args: NameArgs = structure_args(NameArgs, call)
        return (await self.supervisor.delete(args.name)).as_dict()

    async def _get(self, call: Call) -> Any:
        args: NameArgs = structure_args(NameArgs, call)
        return self.supervisor.get(args.name).as_dict()

    async def _list(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        return [i.as_dict() for i in self.supervisor.list()]

    async def _watch(self, call: Call) -> Any:
        args: _Watch = structure_args(_Watch, call)
        version = await self.supervisor.watch(args.version, min(max(args.wait, 0.0), MAX_WAIT))
        return {"version": version, "instances": [i.as_dict() for i in self.supervisor.list()]}

    async def _log(self, call: Call) -> Any:
        args: _Log = structure_args(_Log, call)
        self.supervisor.get(args.name)  # NotFoundError for an unknown instance
        logs = self.supervisor.ctx.logs
        limit = args.limit if args.limit > 0 else None
        if args.wait > 0:
            lines = await logs.wait(args.name, args.after, min(args.wait, MAX_WAIT))
            lines = lines[-limit:] if limit else lines
        else:
            lines = logs.lines(args.name, after=args.after, limit=limit)
        return {"lines": [[seq, text] for seq, text in lines]}
