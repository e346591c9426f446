"""Replica and Engine objects made real on their node: the instance reconcilers.

The manager of node N reconciles the ``Replica`` and ``Engine`` objects placed on N
(``spec.node_id``): it makes N's instance manager run them or not (``spec.desire_state``) and
writes what it sees into their status (state, address; an engine's endpoint, its view of each
replica's mode and each rebuild's progress). It reaches the instances only through the instance
manager's client (:class:`lhtrio.clients.node.NodeClient`, and
:class:`~lhtrio.clients.engine.EngineClient` for an engine's replica modes and rebuilds), never by
importing the engine or the replica.

Each reconcile is level-triggered (it compares the object with the instance as it is now) and
writes status with :meth:`~lhtrio.manager.objects.Objects.change`, so it never overwrites a change
of the spec it did not see. An instance whose object is gone is stopped.
"""

from __future__ import annotations

import logging

import attrs

from lhtrio.clients.engine import EngineClient
from lhtrio.clients.node import NodeClient
from lhtrio.errors import LhtrioError, NotFoundError
from lhtrio.manager.objects import Objects
from lhtrio.manager.placement import REPLICA_DATA_FINALIZER
from lhtrio.models.cluster import Engine, Replica
from lhtrio.models.cluster.engine import RebuildStatus
from lhtrio.models.cluster.instance import DesireState
from lhtrio.models.cluster.instance import InstanceState as ObjectState
from lhtrio.models.engine import RebuildProgress, RebuildState
from lhtrio.models.instance import Instance, InstanceKind, InstanceState
from lhtrio.models.volume import Mode
from lhtrio.net import open_rpc_client, parse_address
from lhtrio.wire import Role

__all__ = ["InstanceControl"]

logger = logging.getLogger(__name__)

_STATES = {state: ObjectState(state.value) for state in InstanceState}


def _address(instance: Instance) -> tuple[str, int]:
    if not instance.address:
        return "", 0
    address = parse_address(instance.address)
    return address.host, address.port


@attrs.frozen
class InstanceControl:
    """The reconcilers of node ``node``'s replicas and engines (see the module docstring)."""

    objects: Objects
    node: str
    instances: NodeClient

    async def _instance(self, name: str) -> Instance | None:
        try:
            return await self.instances.get(name)
        except NotFoundError:
            return None

    async def _stop(self, name: str) -> None:
        instance = await self._instance(name)
        if instance is not None:
            await self.instances.delete(name)

    # --- replicas ----------------------------------------------------------------------------

    async def reconcile_replica(self, name: str) -> float | None:
        try:
            replica = await self.objects.get(Replica, name)
        except NotFoundError:
            await self._stop(name)  # its object is gone
            return None
        if replica.spec.node_id != self.node:
            return None  # another node's (taking over a down node's status is the volume's job)
        if replica.meta.deletion_requested is not None:
            await self._remove(replica)
            return None
        instance = await self._instance(name)
        wanted = replica.spec.desire_state is DesireState.RUNNING and not replica.failed
        if wanted and (instance is None or instance.state not in _ALIVE):
            instance = await self.instances.create(
                name,
                InstanceKind.REPLICA,
                volume=replica.spec.volume_name,
                size=replica.spec.volume_size,
                disk=replica.spec.disk_id,
            )
        elif not wanted and instance is not None:
            instance = await self.instances.delete(name)
        await self.objects.change(Replica, name, lambda r: _replica_status(r, instance, self.node))
        return None

    async def _remove(self, replica: Replica) -> None:
        """A replica being deleted: stop it, remove its data, then let its object go."""
        name = replica.meta.name
        await self._stop(name)
        await self.instances.remove_replica_data(name, disk=replica.spec.disk_id)

        def release(r: Replica) -> Replica:
            finalizers = tuple(f for f in r.meta.finalizers if f != REPLICA_DATA_FINALIZER)
            return attrs.evolve(r, meta=attrs.evolve(r.meta, finalizers=finalizers))

        await self.objects.change(Replica, name, release)

    # --- engines -----------------------------------------------------------------------------

    async def reconcile_engine(self, name: str) -> float | None:
        try:
            engine = await self.objects.get(Engine, name)
        except NotFoundError:
            await self._stop(name)
            return None
        if engine.spec.node_id != self.node:
            return None
        instance = await self._instance(name)
        wanted = engine.spec.desire_state is DesireState.RUNNING
        addresses = sorted(engine.spec.replica_address_map.values())
        if wanted and (instance is None or instance.state not in _ALIVE):
            instance = await self.instances.create(
                name,
                InstanceKind.ENGINE,
                volume=engine.spec.volume_name,
                size=engine.spec.volume_size,
                replicas=[f"tcp://{a}" if "://" not in a else a for a in addresses],
                salvage=engine.spec.salvage_requested,
            )
        elif not wanted and instance is not None:
            instance = await self.instances.delete(name)
        modes, rebuilds = await self._modes(engine, instance)
        await self.objects.change(
            Engine, name, lambda e: _engine_status(e, instance, self.node, modes, rebuilds)
        )
        # Nothing tells the store when an engine's view of its replicas changes (a replica lost,
        # a rebuild done): look again, often while a replica is rebuilt (Longhorn's engine
        # monitor polls every 5 s too).
        if Mode.WO.value in modes.values():
            return REBUILD_POLL
        return ENGINE_MONITOR if instance is not None and instance.state in _ALIVE else None

    async def _modes(
        self, engine: Engine, instance: Instance | None
    ) -> tuple[dict[str, str], dict[str, RebuildStatus]]:
        """Bring a running engine's replicas in line with ``spec.replica_address_map`` (remove
        the ones no longer in it, add — rebuild — the ones missing or failed), then its view of
        each replica's mode and rebuild (running or last), by replica name; empty while it does
        not run."""
        if instance is None or instance.state is not InstanceState.RUNNING or not instance.address:
            return {}, {}
        by_address = {_url(a): n for n, a in engine.spec.replica_address_map.items()}
        try:
            async with open_rpc_client(
                instance.address, client=f"manager-{self.node}", role=Role.ENGINE
            ) as rpc:
                client = EngineClient(rpc)
                await _sync_members(engine.meta.name, client, set(by_address))
                info = await client.info()
        except LhtrioError as exc:
            logger.info("engine %s: no replica modes yet: %s", engine.meta.name, exc)
            return {}, {}
        linked = [link for link in info.replicas if link.address in by_address]
        modes = {by_address[link.address]: link.mode.value for link in linked}
        rebuilds = {
            by_address[link.address]: _rebuild_status(link.rebuild)
            for link in linked
            if link.rebuild is not None
        }
        return modes, rebuilds


def _rebuild_status(rebuild: RebuildProgress) -> RebuildStatus:
    total, done = rebuild.total_bytes, min(rebuild.done_bytes, rebuild.total_bytes)
    finished = rebuild.state is RebuildState.DONE
    return RebuildStatus(
        is_rebuilding=rebuild.running,
        progress=100 if finished else (100 * done // total if total else 0),
        state=rebuild.state.value,
        error=rebuild.error,
        from_replica_address=rebuild.source,
        done_bytes=rebuild.total_bytes if finished else done,
        total_bytes=total,
    )


def _url(address: str) -> str:
    return address if "://" in address else f"tcp://{address}"


async def _sync_members(name: str, client: EngineClient, wanted: set[str]) -> None:
    """Remove the replicas ``wanted`` lacks; add one missing (or failed) replica at a time (a
    rebuild: it returns once the replica is WO; the engine finishes it in the background)."""
    links = {link.address: link for link in await client.replica_ls()}
    for address in sorted(set(links) - wanted):
        try:
            await client.replica_rm(address)
        except LhtrioError as exc:  # e.g. the last RW replica: never removed
            logger.info("engine %s keeps %s: %s", name, address, exc)
    rebuilding = any(link.mode is Mode.WO for link in links.values())
    missing = sorted(a for a in wanted if a not in links or links[a].mode is Mode.ERR)
    if missing and not rebuilding:
        try:
            await client.replica_add(missing[0])
        except LhtrioError as exc:
            logger.info("engine %s: adding %s failed: %s", name, missing[0], exc)


_ALIVE = (InstanceState.STARTING, InstanceState.RUNNING)
#: How often an engine with a replica being rebuilt is looked at again (seconds).
REBUILD_POLL = 1.0
#: How often a running engine's view of its replicas is read again (seconds).
ENGINE_MONITOR = 5.0


def _replica_status(replica: Replica, instance: Instance | None, node: str) -> Replica:
    host, port = _address(instance) if instance is not None else ("", 0)
    state = _STATES[instance.state] if instance is not None else ObjectState.STOPPED
    status = attrs.evolve(
        replica.status,
        owner_id=node,
        current_state=state,
        ip=host,
        port=port,
        started=state is ObjectState.RUNNING,
    )
    return attrs.evolve(replica, status=status)


def _engine_status(
    engine: Engine,
    instance: Instance | None,
    node: str,
    modes: dict[str, str],
    rebuilds: dict[str, RebuildStatus],
) -> Engine:
    host, port = _address(instance) if instance is not None else ("", 0)
    state = _STATES[instance.state] if instance is not None else ObjectState.STOPPED
    running = state is ObjectState.RUNNING
    status = attrs.evolve(
        engine.status,
        owner_id=node,
        current_state=state,
        ip=host,
        port=port,
        started=running,
        endpoint=(instance.frontend or "") if running and instance is not None else "",
        current_size=engine.spec.volume_size if running else engine.status.current_size,
        current_replica_address_map=dict(engine.spec.replica_address_map) if running else {},
        replica_mode_map={name: Mode(mode) for name, mode in modes.items()},
        rebuild_status=rebuilds,
    )
    return attrs.evolve(engine, status=status)
