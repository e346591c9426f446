"""A node whose instances cost nothing: the instance-manager API answered from a table.

For the control plane at scale (:mod:`lhtrio.sim.scale`) the data path does not matter, only
what the manager sees of it. :class:`StubNodeService` serves the node's call table
(:mod:`lhtrio.wire.calls.node`, the one :class:`~lhtrio.clients.node.NodeClient` calls) over
the simulated network, like :class:`lhtrio.instances.service.NodeService`, with the same refusals
(a live instance created twice, an unknown one read or deleted, data removed under a live
replica), but an instance is a record, not a task: it runs as soon as it is created, a replica
at ``tcp://NODE:PORT``, an engine with each of its replicas ``RW`` unless that replica's host is
down in the simulated network (then ``ERR``, for good, as an engine fails a replica it lost).
An engine answers the engine calls the manager makes (:class:`StubEngineService`, at its own
address): ``replica_ls``, ``replica_rm``, and ``replica_add``, whose rebuild is done at once.
:class:`StubDisks` is the node's one disk, as the node agent asks for it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from lhtrio.errors import AlreadyExistsError, ConflictError, NotFoundError, NotSupportedError
from lhtrio.instances.watch import WatchAnswers
from lhtrio.manager.node_agent import DiskFacts
from lhtrio.models.engine import (
    FrontendInfo,
    RebuildProgress,
    RebuildState,
    ReplicaLink,
    VolumeInfo,
)
from lhtrio.models.instance import (
    DiskStatus,
    Instance,
    InstanceKind,
    InstanceState,
    InstanceWatch,
    LogLines,
    NodeInfo,
)
from lhtrio.models.volume import FrontendState, Health, Mode
from lhtrio.net import parse_address, serve_rpc
from lhtrio.sim.network import SimNetwork
from lhtrio.wire import Identity, Role
from lhtrio.wire.calls import engine as engine_calls
from lhtrio.wire.calls import node as calls
from lhtrio.wire.calls.engine import AddressArgs
from lhtrio.wire.calls.node import MAX_WAIT, CreateArgs, DataArgs, LogArgs, WatchArgs
from lhtrio.wire.control import Dispatcher, NameArgs, NoArgs

__all__ = ["DISK_SIZE", "StubDisks", "StubEngineService", "StubNodeService"]

#: The one disk of a simulated node (bytes): room for every replica of the largest run.
DISK_SIZE = 1 << 50


@attrs.frozen
class StubDisks:
    """The node agent's view of a simulated node's disks (:class:`~lhtrio.manager.node_agent.
    DiskHost`): one disk, always there, never filling up."""

    node: str

    @property
    def given(self) -> Sequence[str]:
        return (f"/sim/{self.node}",)

    async def disks(self, paths: Sequence[str]) -> Sequence[DiskFacts]:
        await trio.lowlevel.checkpoint()
        return [
            DiskFacts(path=p, uuid=f"disk-{self.node}", maximum=DISK_SIZE, available=DISK_SIZE)
            for p in paths
        ]


class StubNodeService(Dispatcher):
    """``handler(request)`` for a simulated node's control endpoint (see the module)."""

    def __init__(self, name: str, net: SimNetwork, nursery: trio.Nursery) -> None:
        super().__init__(calls.CALLS)
        self.name, self.net, self.nursery = name, net, nursery
        self.instances: dict[str, Instance] = {}
        self.modes: dict[str, dict[str, Mode]] = {}  # engine -> its replicas' modes
        self.scopes: dict[str, trio.CancelScope] = {}  # engine -> its control endpoint's scope
        self.version = 0
        self._changed = trio.Event()
        self._answers = WatchAnswers(base=1)  # (the simulation's clock is not the wall's)
        self._ports = itertools.count(10000)
        self.calls = 0
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

    def poke(self) -> None:
        """Something outside changed (a host went down): engines may report other modes."""
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    def _record(self, instance: Instance) -> Instance:
        if instance.type is not InstanceKind.ENGINE:
            return instance
        modes = self.modes[instance.name]
        for address in modes:
            if parse_address(address).host in self.net.down:
                modes[address] = Mode.ERR
        healthy = all(m is Mode.RW for m in modes.values())
        return attrs.evolve(
            instance, replica_modes=dict(modes), health="healthy" if healthy else "degraded"
        )

    def _disk(self) -> DiskStatus:
        replicas = {i.name: "" for i in self.instances.values() if i.type is InstanceKind.REPLICA}
        return DiskStatus(
            uuid=f"disk-{self.name}",
            path=f"/sim/{self.name}",
            capacity=DISK_SIZE,
            available=DISK_SIZE,
            scheduled=sum(i.size for i in self.instances.values() if i.directory),
            replicas=replicas,
        )

    async def _node_info(self, _: NoArgs) -> NodeInfo:
        self.calls += 1
        return NodeInfo(
            name=self.name,
            address=f"tcp://{self.name}:9",
            nbd=f"tcp://{self.name}:10809",
            port_range="10000-65535",
            ports_in_use=sorted(i.port for i in self.instances.values()),
            instances=len(self.instances),
            disks=[self._disk()],
        )

    async def _disk_list(self, _: NoArgs) -> list[DiskStatus]:
        self.calls += 1
        return [self._disk()]

    async def _create(self, args: CreateArgs) -> Instance:
        self.calls += 1
        if args.name in self.instances:
            raise AlreadyExistsError(f"instance {args.name} is running already")
        port = next(self._ports)
        engine = args.type is InstanceKind.ENGINE
        instance = Instance(
            name=args.name,
            type=args.type,
            volume=args.volume,
            size=args.size,
            state=InstanceState.RUNNING,
            port=port,
            address=f"tcp://{self.name}:{port}",
            started=trio.current_time(),
            replicas=list(args.replicas) if engine else None,
            frontend=f"nbd://{self.name}:10809/{args.volume}" if engine else None,
            directory=None if engine else f"/sim/{self.name}/replicas/{args.name}",
            current_size=args.size if engine else 0,
        )
        self.instances[args.name] = instance
        if engine:
            self.modes[args.name] = dict.fromkeys(args.replicas, Mode.RW)
            service = StubEngineService(self, args.name)
            identity = Identity(volume=args.volume, instance=args.name, role=Role.ENGINE)
            scope = self.scopes[args.name] = trio.CancelScope()
            serve = functools.partial(serve_rpc, service, self.name, port, identity=identity)
            await self.nursery.start(_within, scope, serve)
        self.poke()
        return self._record(instance)

    async def _delete(self, args: NameArgs) -> Instance:
        self.calls += 1
        instance = self._known(args.name)
        del self.instances[args.name]
        self.modes.pop(args.name, None)
        scope = self.scopes.pop(args.name, None)
        if scope is not None:
            scope.cancel()
        self.poke()
        return attrs.evolve(instance, state=InstanceState.STOPPED)

    def _known(self, name: str) -> Instance:
        instance = self.instances.get(name)
        if instance is None:
            raise NotFoundError(f"no instance {name!r} on this node")
        return instance

    async def _get(self, args: NameArgs) -> Instance:
        self.calls += 1
        return self._record(self._known(args.name))

    async def _list(self, _: NoArgs) -> list[Instance]:
        self.calls += 1
        return [self._record(self.instances[n]) for n in sorted(self.instances)]

    async def _watch(self, args: WatchArgs) -> InstanceWatch:
        if self.version <= args.version:
            with trio.move_on_after(min(max(args.wait, 0.0), MAX_WAIT)):
                await self._changed.wait()
        return self._answers.answer(self.version, await self._list(NoArgs()), args.since)

    async def _remove_data(self, args: DataArgs) -> bool:
        self.calls += 1
        if args.name in self.instances:
            raise ConflictError(f"replica {args.name} is running: stop it first")
        return False

    async def _log(self, args: LogArgs) -> LogLines:
        self._known(args.name)
        return LogLines(lines=[])


async def _within(
    scope: trio.CancelScope,
    serve: Callable[..., Awaitable[Any]],
    *,
    task_status: trio.TaskStatus[Any],
) -> None:
    with scope:
        await serve(task_status=task_status)


class StubEngineService(Dispatcher):
    """The engine calls of one stub engine (see the module): its replicas' modes are its node's
    table; the calls the manager does not make are refused."""

    def __init__(self, node: StubNodeService, name: str) -> None:
        super().__init__(engine_calls.CALLS)
        self.node, self.name = node, name
        self.bind(engine_calls.REPLICA_LS, self._replica_ls)
        self.bind(engine_calls.REPLICA_RM, self._replica_rm)
        self.bind(engine_calls.REPLICA_ADD, self._replica_add)
        self.bind(engine_calls.REBUILD_STATUS, self._rebuild_status)
        for spec in engine_calls.CALLS:
            if spec.name not in ("replica_ls", "replica_rm", "replica_add", "rebuild_status"):
                self.bind(spec, self._refuse)
        self.check()

    @property
    def _modes(self) -> dict[str, Mode]:
        return self.node.modes[self.name]

    async def _replica_ls(self, _: NoArgs) -> list[ReplicaLink]:
        self.node.calls += 1
        self.node._record(self.node.instances[self.name])
        return [ReplicaLink(address=a, mode=m) for a, m in sorted(self._modes.items())]

    async def _replica_rm(self, args: AddressArgs) -> VolumeInfo:
        self.node.calls += 1
        self._modes.pop(args.address, None)
        self.node.poke()
        instance = self.node.instances[self.name]
        links = await self._replica_ls(NoArgs())
        healthy = all(link.mode is Mode.RW for link in links)
        return VolumeInfo(
            volume=instance.volume,
            size=instance.size,
            state=Health.HEALTHY if healthy else Health.DEGRADED,
            frontend=FrontendInfo(state=FrontendState.RUNNING, address=instance.frontend or ""),
            replicas=links,
        )

    async def _replica_add(self, args: AddressArgs) -> RebuildProgress:
        self.node.calls += 1
        if parse_address(args.address).host in self.node.net.down:
            raise ConflictError(f"cannot connect to {args.address} (simulated: its host is down)")
        self._modes[args.address] = Mode.RW  # (rebuilt at once)
        self.node.poke()
        return RebuildProgress(address=args.address, state=RebuildState.DONE)

    async def _rebuild_status(self, _: Any) -> RebuildProgress | None:
        return None

    async def _refuse(self, _: Any) -> Any:
        raise NotSupportedError("a simulated engine does not do that")
