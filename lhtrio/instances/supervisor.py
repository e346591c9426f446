"""The instance manager: engines and replicas as tasks of one process, each in its own cancel scope.

Longhorn's instance manager starts an OS process per engine and replica (``longhorn-facts.md``
§6.5); the node runs the same code (:func:`~lhtrio.replica.server.serve_replica`,
:func:`~lhtrio.engine.server.serve_engine`) as tasks under one supervisor nursery:

* **Start.** :meth:`Supervisor.create` takes a port from the node's range (a port some other
  program holds is skipped) and starts the instance with ``nursery.start``: the instance is
  ``starting`` until it listens, then ``running``. A failure before that is the caller's error
  (the instance is recorded in ``error`` with the reason) and frees the port.
* **Isolation.** Each instance runs in its own *shielded* cancel scope: an exception in it puts
  that instance in ``error`` (logged once, with the traceback) and nothing else notices; the
  node's own cancellation does not reach it either, so the node can stop instances in order.
* **Stop.** :meth:`Supervisor.delete` stops an instance (``stopping``) and forgets it once it is
  ``stopped`` (its port free again). An engine is asked to stop (its ``stop`` event): its
  frontend drains (no new requests, those in flight finished and answered), it flushes its
  replicas and closes its links; only an engine that outlives its own deadline is cancelled. A
  replica is cancelled: it flushes and records ``Dirty=false``. :meth:`Supervisor.shutdown` does
  that for every instance, engines first (so their final flushes reach the replicas), within a
  grace period.
* **NBD.** Engines do not open listeners of their own: their frontend publishes the volume in the
  node's :class:`~lhtrio.frontend.nbd.server.ExportRegistry`, served on the node's one NBD port.
* **Watch.** :meth:`Supervisor.watch` returns when any instance changes: its state, or an
  engine's replica modes or size (the engine's replica set calls back,
  :attr:`~lhtrio.engine.replicaset.ReplicaSet.on_change`), which its record carries
  (``replica_modes``, ``current_size``): the manager learns of a failed or rebuilt replica
  without asking the engine.

Everything an instance logs carries its name (:mod:`lhtrio.instances.logs`).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterable

import attrs
import trio

from lhtrio.engine.server import STOP_DEADLINE, serve_engine
from lhtrio.engine.volume import Volume
from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    StorageError,
)
from lhtrio.frontend.nbd.server import ExportRegistry, nbd_uri
from lhtrio.instances.disks import Disk, find_disk
from lhtrio.instances.logs import InstanceLogs, current_instance
from lhtrio.instances.ports import PortRange
from lhtrio.models.instance import Instance as InstanceRecord
from lhtrio.models.instance import InstanceKind, InstanceState
from lhtrio.net import Address
from lhtrio.replica.names import validate_name
from lhtrio.replica.server import serve_replica

__all__ = ["Kind", "State", "InstanceSpec", "Instance", "NodeContext", "Supervisor"]

logger = logging.getLogger(__name__)

#: The longest :meth:`Supervisor.delete` waits for an engine's own graceful stop.
ENGINE_STOP_DEADLINE = STOP_DEADLINE + 5


Kind = InstanceKind
State = InstanceState

_ALIVE = (State.STARTING, State.RUNNING, State.STOPPING)


@attrs.frozen(kw_only=True)
class InstanceSpec:
    """What to run. Engines use ``replicas``/``salvage``; replicas use ``disk`` (UUID or path)."""

    name: str
    kind: Kind
    volume: str
    size: int
    replicas: tuple[str, ...] = ()
    disk: str = ""
    salvage: bool = False
    replica_timeout: float = 8.0


@attrs.define(eq=False)
class Instance:
    spec: InstanceSpec
    state: State = State.STARTING
    error: str = ""
    port: int = 0
    address: str = ""
    frontend: str = ""
    directory: str = ""
    started: float = 0.0
    scope: trio.CancelScope | None = None
    stop: trio.Event = attrs.field(factory=trio.Event)  # asks an engine to stop gracefully
    stopped: trio.Event = attrs.field(factory=trio.Event)
    volume: Volume | None = None  # an engine's volume, while its frontend runs

    @property
    def name(self) -> str:
        return self.spec.name

    def record(self) -> InstanceRecord:
        """What callers read about this instance (:class:`lhtrio.models.instance.Instance`)."""
        spec = self.spec
        record = InstanceRecord(
            name=spec.name,
            type=spec.kind,
            volume=spec.volume,
            size=spec.size,
            state=self.state,
            error=self.error,
            port=self.port,
            address=self.address,
            started=self.started,
        )
        if spec.kind is not Kind.ENGINE:
            return attrs.evolve(record, directory=self.directory)
        volume = self.volume
        error = self.error
        if volume is not None and not volume.replicas.readers and not error:
            error = "volume faulted: " + "; ".join(
                f"{m.address}: {m.error}" for m in volume.replicas.members
            )
        return attrs.evolve(
            record,
            error=error,
            replicas=list(spec.replicas),
            frontend=self.frontend,
            health=volume.replicas.health.value if volume is not None else "",
            replica_modes=(
                {m.address: m.mode for m in volume.replicas.members} if volume is not None else None
            ),
            current_size=volume.size if volume is not None else 0,
            salvage=spec.salvage,
        )


@attrs.frozen(kw_only=True)
class NodeContext:
    """What instances share: where they listen, the node's NBD exports, disks and logs."""

    host: str
    ports: PortRange
    registry: ExportRegistry
    nbd: Address
    disks: list[Disk]
    logs: InstanceLogs


def _describe(exc: BaseException) -> str:
    """One line for an instance's error: the leaf exceptions of a group, joined."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = exc.message if isinstance(exc, LhtrioError) else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _in_use(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_in_use(e) for e in exc.exceptions)
    if isinstance(exc, LhtrioError):  # open_listeners says so, keeping the OSError as the cause
        return exc.__cause__ is not None and _in_use(exc.__cause__)
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE


def _remove_tree(directory: str) -> bool:
    """Remove ``directory`` and what it holds; False if it was not there."""
    if not os.path.lexists(directory):
        return False
    shutil.rmtree(directory)
    return True


def _port_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound now (as trio's listeners bind: with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class Supervisor:
    """Creates, stops and reports the node's instances. ``nursery`` runs them."""

    def __init__(self, ctx: NodeContext, nursery: trio.Nursery) -> None:
        self.ctx = ctx
        self._nursery = nursery
        self._instances: dict[str, Instance] = {}
        self.version = 0
        self._changed = trio.Event()

    # --- queries ---------------------------------------------------------------------------------

    def get(self, name: str) -> Instance:
        instance = self._instances.get(name)
        if instance is None:
            raise NotFoundError(f"no instance {name!r} on this node")
        return instance

    def list(self) -> list[Instance]:
        return [self._instances[name] for name in sorted(self._instances)]

    def scheduled(self, disk: Disk) -> dict[str, int]:
        """Replica instance name -> volume size, for the replicas on ``disk``."""
        return {
            i.name: i.spec.size
            for i in self._instances.values()
            if i.spec.kind is Kind.REPLICA and i.directory.startswith(disk.path + "/")
        }

    async def watch(self, version: int, patience: float) -> int:
        """Wait up to ``patience`` seconds for a change after ``version``; the current version."""
        if self.version <= version:
            with trio.move_on_after(patience):
                await self._changed.wait()
        return self.version

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    # --- create ----------------------------------------------------------------------------------

    def _check(self, spec: InstanceSpec) -> None:
        validate_name(spec.name, what="instance")
        validate_name(spec.volume, what="volume")
        if spec.size <= 0 or spec.size % 4096:
            raise InvalidArgumentError(f"size must be a positive multiple of 4096, not {spec.size}")
        existing = self._instances.get(spec.name)
        if existing is not None and existing.state in _ALIVE:
            raise AlreadyExistsError(f"instance {spec.name} is {existing.state.value} already")
        if spec.kind is Kind.ENGINE:
            if not spec.replicas:
                raise InvalidArgumentError(f"engine {spec.name} needs at least one replica")
            for other in self._instances.values():
                if (
                    other.spec.kind is Kind.ENGINE
                    and other.spec.volume == spec.volume
                    and other.state in _ALIVE
                ):
                    raise AlreadyExistsError(
                        f"volume {spec.volume} already has engine {other.name} on this node"
                    )

    async def create(self, spec: InstanceSpec) -> Instance:
        """Start an instance; returns it running. Its failure to start is raised (and recorded)."""
        self._check(spec)
        instance = Instance(spec)
        if spec.kind is Kind.REPLICA:
            instance.directory = find_disk(self.ctx.disks, spec.disk).replica_dir(spec.name)
        self._instances[spec.name] = instance
        self._notify()
        ports = self.ctx.ports
        try:
            for port in ports.candidates():
                if not _port_free(self.ctx.host, port):
                    ports.skip(port)
                    continue
                ports.take(port)
                instance.port = port
                try:
                    instance.address = await self._nursery.start(self._run, instance)
                except BaseException as exc:
                    ports.release(port)
                    if _in_use(exc):  # lost a race for the port: try the next one
                        ports.skip(port)
                        continue
                    raise
                break
        except Exception as exc:
            instance.state = State.ERROR
            instance.error = _describe(exc)
            instance.stopped.set()
            self._notify()
            logger.warning("instance %s did not start: %s", spec.name, instance.error)
            if isinstance(exc, LhtrioError):
                raise
            raise StorageError(f"instance {spec.name} did not start: {instance.error}") from None
        if instance.state is State.STARTING:  # (it may have failed already)
            instance.state = State.RUNNING
        instance.started = time.time()
        self._notify()
        logger.info("instance %s (%s) running on %s", spec.name, spec.kind.value, instance.address)
        return instance

    async def _run(self, instance: Instance, task_status: trio.TaskStatus[str]) -> None:
        current_instance.set(instance.name)
        started = False
        try:
            with trio.CancelScope(shield=True) as scope:
                instance.scope = scope
                try:
                    async with trio.open_nursery() as nursery:
                        address = await nursery.start(self._serve, instance)
                        started = True
                        task_status.started(address)
                except Exception as exc:
                    if not started:
                        raise  # nursery.start raises it in create()
                    instance.state = State.ERROR
                    instance.error = _describe(exc)
                    logger.exception("instance %s failed: %s", instance.name, instance.error)
        finally:
            if instance.volume is not None:
                instance.volume.replicas.on_change = None
            self.ctx.ports.release(instance.port)
            if instance.state is not State.ERROR and started:
                instance.state = State.STOPPED
            instance.stopped.set()
            if started:
                self._notify()
                logger.info("instance %s %s", instance.name, instance.state.value)

    async def _serve(self, instance: Instance, task_status: trio.TaskStatus[str]) -> None:
        spec, host = instance.spec, self.ctx.host
        if spec.kind is Kind.REPLICA:
            await serve_replica(
                instance.directory,
                size=spec.size,
                volume=spec.volume,
                instance=spec.name,
                listen=Address(host=host, port=instance.port),
                task_status=task_status,
            )
        else:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(
                    functools.partial(
                        serve_engine,
                        spec.volume,
                        spec.size,
                        spec.replicas,
                        host=host,
                        port=instance.port,
                        frontend=functools.partial(self._nbd_frontend, instance),
                        short_timeout=spec.replica_timeout,
                        salvage=spec.salvage,
                        stop=instance.stop,
                    )
                )
                task_status.started(f"tcp://{bound[0]}:{bound[1]}")

    async def _nbd_frontend(
        self,
        instance: Instance,
        volume: Volume,
        *,
        shutdown: trio.Event,
        task_status: trio.TaskStatus[str],
    ) -> None:
        """An engine's frontend on the node: its volume in the node's NBD exports until
        ``shutdown``; leaving the export's block normally drains its connections."""
        instance.volume = volume
        volume.replicas.on_change = self._notify  # a mode changed: the watch tells the manager
        try:
            async with self.ctx.registry.export(volume):
                instance.frontend = nbd_uri(self.ctx.nbd, volume.name)
                task_status.started(instance.frontend)
                await shutdown.wait()
        finally:
            instance.frontend = ""

    # --- stop ------------------------------------------------------------------------------------

    async def delete(self, name: str) -> Instance:
        """Stop ``name`` (its own clean shutdown runs) and forget it; its port is free again."""
        instance = self.get(name)
        if instance.state is State.STARTING:
            raise ConflictError(f"instance {name} is still starting; try again")
        await self._stop([instance])
        if self._instances.get(name) is instance:
            del self._instances[name]
            self.ctx.logs.forget(name)
        self._notify()
        return instance

    async def remove_replica_data(self, name: str, disk: str) -> bool:
        """Delete replica ``name``'s directory on ``disk`` (its data, for good); False if there
        was none. Refused (CONFLICT) while an instance of that name is alive."""
        existing = self._instances.get(name)
        if existing is not None and existing.state in _ALIVE:
            raise ConflictError(f"replica {name} is {existing.state.value}: stop it first")
        directory = find_disk(self.ctx.disks, disk).replica_dir(name)
        removed = await trio.to_thread.run_sync(_remove_tree, directory)
        if removed:
            logger.info("replica %s: data removed (%s)", name, directory)
        return removed

    async def _stop(self, instances: Iterable[Instance]) -> None:
        """Stop ``instances`` and wait until they have: engines gracefully (their deadline is
        their own, see :func:`~lhtrio.engine.server.serve_engine`), replicas by cancellation."""
        waiting = []
        for instance in instances:
            if instance.scope is not None and not instance.stopped.is_set():
                if instance.state is not State.ERROR:
                    instance.state = State.STOPPING
                if instance.spec.kind is Kind.ENGINE and instance.state is not State.ERROR:
                    instance.stop.set()
                else:
                    instance.scope.cancel()
                waiting.append(instance)
        if waiting:
            self._notify()
        for instance in waiting:
            with trio.move_on_after(ENGINE_STOP_DEADLINE):
                await instance.stopped.wait()
            if instance.scope is not None and not instance.stopped.is_set():
                logger.warning("instance %s did not stop in time; cancelling it", instance.name)
                instance.scope.cancel()
                await instance.stopped.wait()

    async def shutdown(self, grace: float) -> None:
        """Stop every instance: engines first, then replicas; force what outlives ``grace``."""
        with trio.move_on_after(grace):
            await self._stop(i for i in self.list() if i.spec.kind is Kind.ENGINE)
            await self._stop(self.list())
        for instance in self.list():
            if instance.scope is not None and not instance.stopped.is_set():
                logger.warning("instance %s did not stop within %g s", instance.name, grace)
                instance.scope.cancel()
