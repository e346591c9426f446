"""The engine's control endpoint: protocol v1 ``Call`` handlers (``lhtrio ctl`` is the client).

=================  =============================================  ===============================
call               arguments                                      result
=================  =============================================  ===============================
info                                                              volume, size, state, frontend,
                                                                  replicas
snapshot_create    name=<uuid>; labels={}                         name
snapshot_ls                                                       list of snapshots
snapshot_rm        name                                           (marks it removed everywhere)
snapshot_purge                                                    (waits for every replica)
snapshot_revert    name (frontend must be stopped)
frontend_stop / frontend_start                                    info
expand             size                                           info
replica_ls                                                        list of replicas (a rebuilding
                                                                  one with its progress)
replica_rm         address                                        info
replica_add        address                                        rebuild progress (returns once
                                                                  the replica is WO)
rebuild_status     wait=0 (seconds to wait for progress)          rebuild progress, or nil
salvage                                                           chosen address and why
=================  =============================================  ===============================

Adding a replica is in :mod:`lhtrio.engine.replica_add`, snapshots, expansion, revert and salvage
in :mod:`lhtrio.engine.operations`, the rule between long operations in
:mod:`lhtrio.engine.operation_gate`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

from lhtrio.engine import operations
from lhtrio.engine.purge import purge
from lhtrio.engine.replica_add import add_replica
from lhtrio.errors import AlreadyExistsError, ConflictError, NotFoundError, UnknownCallError
from lhtrio.models.names import validate_labels, validate_snapshot_name
from lhtrio.wire import Call, Reply, Request, Result
from lhtrio.wire.control import NameArgs, NoArgs, SizeArgs, structure_args

if TYPE_CHECKING:
    from lhtrio.engine.consistency import Resync
    from lhtrio.engine.frontend import FrontendControl
    from lhtrio.engine.volume import Volume

__all__ = ["EngineService"]

SNAP_PREFIX, SNAP_SUFFIX = "volume-snap-", ".img"


@attrs.frozen(kw_only=True)
class _Create:
    name: str = ""
    labels: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class _Address:
    address: str


class EngineService:
    """``handler(request)`` for the engine's control endpoint."""

    def __init__(
        self, volume: Volume, frontend: FrontendControl, *, resync: Resync | None = None
    ) -> None:
        self.volume = volume
        self.frontend = frontend
        self.resync = resync
        self._calls: dict[str, Callable[[Call], Awaitable[Any]]] = {
            "info": self._info,
            "snapshot_create": self._snapshot_create,
            "snapshot_ls": self._snapshot_ls,
            "snapshot_rm": self._snapshot_rm,
            "snapshot_purge": self._snapshot_purge,
            "snapshot_revert": self._snapshot_revert,
            "frontend_stop": self._frontend_stop,
            "frontend_start": self._frontend_start,
            "expand": self._expand,
            "replica_ls": self._replica_ls,
            "replica_rm": self._replica_rm,
            "replica_add": self._replica_add,
            "rebuild_status": self._rebuild_status,
            "salvage": self._salvage,
        }

    def __call__(self, request: Request) -> Awaitable[Reply]:
        if not isinstance(request, Call):
            raise UnknownCallError(
                f"the engine control endpoint takes control calls, not {type(request).__name__}"
            )
        handler = self._calls.get(request.name)
        if handler is None:
            raise UnknownCallError(f"the engine has no control call {request.name!r}")
        return self._result(handler, request)

    async def _result(self, handler: Callable[[Call], Awaitable[Any]], call: Call) -> Reply:
        return Result(await handler(call))

    def info(self) -> dict[str, Any]:
        volume = self.volume
        return {
            "volume": volume.name,
            "size": volume.size,
            "state": volume.replicas.health.value,
            "frontend": {
                "state": self.frontend.state.value,
                "address": self.frontend.address,
            },
            "replicas": self._replicas(),
            "resync": self.resync.as_dict() if self.resync is not None else None,
        }

    def _replicas(self) -> list[dict[str, Any]]:
        rebuild = self.volume.rebuild
        replicas: list[dict[str, Any]] = []
        for m in self.volume.replicas.members:
            client = self.volume.links.client(m)
            replica: dict[str, Any] = {
                "address": m.address,
                "mode": m.mode.value,
                "error": m.error,
                "link": "" if client is None else _link(m.address, client.via),
            }
            if rebuild is not None and rebuild.address == m.address:
                replica["rebuild"] = rebuild.as_dict()
            replicas.append(replica)
        return replicas

    async def _info(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        return self.info()

    async def _snapshot_create(self, call: Call) -> Any:
        args: _Create = structure_args(_Create, call)
        # Checked here, before I/O pauses: a request that is invalid never reaches a replica.
        name = validate_snapshot_name(args.name) if args.name else str(uuid.uuid4())
        labels = validate_labels(args.labels)
        info = await self.volume.control.info_of_one()
        if f"{SNAP_PREFIX}{name}{SNAP_SUFFIX}" in info["disks"]:
            raise AlreadyExistsError(f"volume {self.volume.name} has a snapshot {name!r} already")
        await operations.snapshot(self.volume, name, labels=labels, user_created=True)
        return name

    async def _snapshot_ls(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        info = await self.volume.control.info_of_one()
        snapshots = []
        for disk in info["disks"].values():
            file = disk["name"]
            if not file.startswith(SNAP_PREFIX):
                continue
            snapshots.append(
                {
                    "name": _snapshot_name(file),
                    "parent": _snapshot_name(disk["parent"]),
                    "children": [_snapshot_name(c) for c in disk["children"]],
                    "created": disk["created"],
                    "user_created": disk["user_created"],
                    "removed": disk["removed"],
                    "size": disk["allocated"],
                    "labels": disk["labels"] or {},
                    "in_chain": file in info["chain"],
                }
            )
        return sorted(snapshots, key=lambda s: (s["created"], s["name"]))

    async def _snapshot_rm(self, call: Call) -> Any:
        args: NameArgs = structure_args(NameArgs, call)
        validate_snapshot_name(args.name)
        await self._require_snapshot(args.name)
        async with self.volume.quiesced():  # not between a rebuild's look at the graph and adopt
            await self.volume.control.all("mark_removed", name=args.name)
        return None

    async def _snapshot_purge(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        await purge(self.volume)
        return None

    async def _snapshot_revert(self, call: Call) -> Any:
        args: NameArgs = structure_args(NameArgs, call)
        validate_snapshot_name(args.name)
        if self.frontend.running:
            raise ConflictError(
                f"volume {self.volume.name}: stop the frontend before reverting "
                "(lhtrio ctl frontend stop)"
            )
        await self._require_snapshot(args.name)
        await operations.revert(self.volume, args.name)
        return None

    async def _require_snapshot(self, name: str) -> None:
        info = await self.volume.control.info_of_one()
        disk = info["disks"].get(f"{SNAP_PREFIX}{name}{SNAP_SUFFIX}")
        if disk is None:
            raise NotFoundError(f"volume {self.volume.name} has no snapshot {name!r}")

    async def _frontend_stop(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        await self.frontend.stop()
        return self.info()

    async def _frontend_start(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        await self.frontend.start()
        return self.info()

    async def _expand(self, call: Call) -> Any:
        args: SizeArgs = structure_args(SizeArgs, call)
        await operations.expand(self.volume, args.size)
        return self.info()

    async def _replica_ls(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        return self._replicas()

    async def _replica_rm(self, call: Call) -> Any:
        args: _Address = structure_args(_Address, call)
        operations.remove_replica(self.volume, args.address)
        return self.info()

    async def _replica_add(self, call: Call) -> Any:
        args: _Address = structure_args(_Address, call)
        progress = await add_replica(self.volume, args.address)
        return progress.as_dict()

    async def _rebuild_status(self, call: Call) -> Any:
        args: _Wait = structure_args(_Wait, call)
        rebuild = self.volume.rebuild
        if rebuild is None:
            return None
        await rebuild.wait_changed(min(max(args.wait, 0.0), 60.0))
        return rebuild.as_dict()

    async def _salvage(self, call: Call) -> Any:
        structure_args(NoArgs, call)
        address, why = await operations.salvage(self.volume)
        return {"address": address, "reason": why, "info": self.info()}


@attrs.frozen(kw_only=True)
class _Wait:
    wait: float = 0.0


def _snapshot_name(file: str) -> str:
    if file.startswith(SNAP_PREFIX) and file.endswith(SNAP_SUFFIX):
        return file[len(SNAP_PREFIX) : -len(SNAP_SUFFIX)]
    return file


def _link(address: str, via: str) -> str:
    """How the engine reaches a replica: ``unix`` (a Unix socket, given or same-host) or ``tcp``."""
    return "unix" if via or address.startswith("unix:") else "tcp"
