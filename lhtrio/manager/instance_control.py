"""Replica and Engine objects made real on their node: the instance reconcilers.

The manager of node N reconciles the ``Replica`` and ``Engine`` objects placed on N
(``spec.node_id``): it makes N's instance manager run them or not (``spec.desire_state``) and
writes what it sees into their status (state, address; an engine's endpoint and its view of each
replica's mode). It reaches the instances only through the instance manager's client
(:class:`lhtrio.clients.node.NodeClient`), never by importing the engine or the replica.

An engine's replica modes come in its instance record (``replica_modes``), and the node's
instance watch (:mod:`lhtrio.manager.manager`) nudges the reconciler when they change: a
replica failed or rebuilt reaches the store without anyone asking the engine. The engine itself
is called (:class:`~lhtrio.clients.engine.EngineClient`) only to change its replicas: when the
ones it links differ from ``spec.replica_address_map`` or one of those failed (add it again:
a rebuild); and while a replica is rebuilt, every second, to read the rebuild's progress into
``status.rebuildStatus`` (its end included). A salvage asked for (``spec.salvage_requested``)
(re)starts the engine with salvage, then records ``status.salvage_executed``.

Each reconcile is level-triggered (it compares the object with the instance as it is now) and
writes status with :meth:`~lhtrio.manager.objects.Objects.change`, so it never overwrites a change
of the spec it did not see, and only while the object asks what it asked when read (its spec;
an engine's ``salvage_executed`` too): a change meanwhile brings a reconcile of its own, and what
was seen of the instance before may be of one that is gone. An instance whose object is gone is
stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

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

__all__ = ["InstanceControl", "modes_by_name"]

logger = logging.getLogger(__name__)

_STATES = {state: ObjectState(state.value) for state in InstanceState}
_Instanced = TypeVar("_Instanced", Replica, Engine)


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
        await self.objects.change(
            Replica,
            name,
            _if_still_asked(replica, lambda r: _replica_status(r, instance, self.node)),
        )
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
        salvage = wanted and _salvage_pending(engine)
        if salvage and _restart_to_salvage(instance):
            logger.info("engine %s: restarting it to salvage its volume", name)
            await self.instances.delete(name)
            instance = None
        if not wanted:
            if instance is not None:
                instance = await self.instances.delete(name)
        elif (instance is None or instance.state not in _ALIVE) and addresses:
            instance = await self.instances.create(
                name,
                InstanceKind.ENGINE,
                volume=engine.spec.volume_name,
                size=engine.spec.volume_size,
                replicas=[_url(a) for a in addresses],
                salvage=salvage,
            )  # (never without replicas: it would have nothing to serve from)
        synced = await self._sync_members(engine, instance)
        if synced is not None:
            instance = await self._instance(name)  # what the engine links now
        salvaged = salvage and instance is not None and instance.state is InstanceState.RUNNING
        rebuilds = await self._rebuilds(engine, instance)
        await self.objects.change(
            Engine,
            name,
            _if_still_asked(
                engine,
                lambda e: _engine_status(
                    e, instance, self.node, salvaged=salvaged, rebuilds=rebuilds
                ),
            ),
        )
        # The engine's replica modes come with the node's instance watch (manager.py), which
        # nudges this reconciler: nothing to look at again, unless changing its replicas failed
        # or a rebuild runs (its progress is read from the engine every REBUILD_POLL seconds).
        modes = (instance.replica_modes or {}) if instance is not None else {}
        if Mode.WO in modes.values() or any(r.is_rebuilding for r in (rebuilds or {}).values()):
            return REBUILD_POLL
        return SYNC_RETRY if synced is False else None

    async def _rebuilds(
        self, engine: Engine, instance: Instance | None
    ) -> dict[str, RebuildStatus] | None:
        """Each replica's rebuild as the engine tells it (running, or its last), by replica
        name, read while one runs or the status still shows one running (its end is read
        once); None when the engine was not asked (the status keeps what it has), ``{}`` while
        the engine does not run."""
        if instance is None or instance.state is not InstanceState.RUNNING or not instance.address:
            return {}
        shown = engine.status.rebuild_status
        rebuilding = Mode.WO in (instance.replica_modes or {}).values()
        if not rebuilding and not any(r.is_rebuilding for r in shown.values()):
            return None
        names = {_url(a): n for n, a in engine.spec.replica_address_map.items()}
        try:
            async with open_rpc_client(
                instance.address, client=f"manager-{self.node}", role=Role.ENGINE
            ) as rpc:
                links = await EngineClient(rpc).replica_ls()
        except LhtrioError as exc:
            logger.info("engine %s: its rebuild was not read: %s", engine.meta.name, exc)
            return None
        return {
            names[link.address]: _rebuild_status(link.rebuild)
            for link in links
            if link.rebuild is not None and link.address in names
        }

    async def _sync_members(self, engine: Engine, instance: Instance | None) -> bool | None:
        """Bring a running engine's replicas in line with ``spec.replica_address_map``: remove
        those no longer in it, add (rebuild) one missing or failed. Only then is the engine
        called (its modes are in ``instance``): None if it was not, else whether every change
        it was asked for was made."""
        if instance is None or instance.state is not InstanceState.RUNNING or not instance.address:
            return None
        modes = instance.replica_modes or {}
        wanted = {_url(a) for a in engine.spec.replica_address_map.values()}
        if set(modes) == wanted and not _to_add(modes, wanted):
            return None
        try:
            async with open_rpc_client(
                instance.address, client=f"manager-{self.node}", role=Role.ENGINE
            ) as rpc:
                return await _sync(engine.meta.name, EngineClient(rpc), wanted)
        except LhtrioError as exc:
            logger.info("engine %s: its replicas were not changed: %s", engine.meta.name, exc)
            return False


def _rebuild_status(rebuild: RebuildProgress) -> RebuildStatus:
    total, done = rebuild.total_bytes, min(rebuild.done_bytes, rebuild.total_bytes)
    finished = rebuild.state is RebuildState.DONE
    return RebuildStatus(
        is_rebuilding=rebuild.running,
        progress=100 if finished else (100 * done // total if total else 0),
        state=rebuild.state.value,
        error=rebuild.error,
        from_replica_address=rebuild.source,
        done_bytes=total if finished else done,
        total_bytes=total,
    )


def _url(address: str) -> str:
    return address if "://" in address else f"tcp://{address}"


def _salvage_pending(engine: Engine) -> bool:
    """A salvage was asked for (every replica failed), not done yet, and there are replicas to
    choose from."""
    return (
        engine.spec.salvage_requested
        and not engine.status.salvage_executed
        and bool(engine.spec.replica_address_map)
    )


def _restart_to_salvage(instance: Instance | None) -> bool:
    """A salvage is pending and ``instance`` runs without one: started without salvage, or
    salvaged before and faulted again since (only a start with salvage chooses a replica)."""
    return (
        instance is not None
        and instance.state in _ALIVE
        and (not instance.salvage or instance.health == "faulted")
    )


def _to_add(modes: Mapping[str, Mode], wanted: set[str]) -> list[str]:
    """The wanted replicas the engine lacks or has failed, unless one is being rebuilt (one
    rebuild at a time)."""
    if Mode.WO in modes.values():
        return []
    return sorted(a for a in wanted if modes.get(a, Mode.ERR) is Mode.ERR)


async def _sync(name: str, client: EngineClient, wanted: set[str]) -> bool:
    """Remove the replicas ``wanted`` lacks; add one missing (or failed) replica at a time (a
    rebuild: it returns once the replica is WO; the engine finishes it in the background).
    False if an addition failed (a removal refused stays refused: the last RW replica)."""
    modes = {link.address: link.mode for link in await client.replica_ls()}
    for address in sorted(set(modes) - wanted):
        try:
            await client.replica_rm(address)
        except LhtrioError as exc:  # e.g. the last RW replica: never removed
            logger.info("engine %s keeps %s: %s", name, address, exc)
    missing = _to_add(modes, wanted)
    if missing:
        try:
            await client.replica_add(missing[0])
        except LhtrioError as exc:
            logger.info("engine %s: adding %s failed: %s", name, missing[0], exc)
            return False
    return True


_ALIVE = (InstanceState.STARTING, InstanceState.RUNNING)
#: When an engine's replicas could not be changed (a replica could not be added), it is tried
#: again after this long (seconds); otherwise nothing polls an engine (Longhorn's engine monitor
#: reads each one every 5 s): its changes are pushed, and the runner's resync is the net.
SYNC_RETRY = 5.0
#: How often a running rebuild's progress is read from its engine (seconds).
REBUILD_POLL = 1.0


def _if_still_asked(
    read: _Instanced, apply: Callable[[_Instanced], _Instanced]
) -> Callable[[_Instanced], _Instanced]:
    """``apply`` (a status seen for the object as ``read``), but only to an object that still
    asks what it asked then (:func:`_asked`). One that changed meanwhile (a replica un-failed, a
    salvage asked again) comes with a reconcile of its own that reads the instance anew; writing
    what was seen before would tell of an instance that may be gone (a salvage would link a dead
    address, or count as done before it ran)."""

    def guarded(current: _Instanced) -> _Instanced:
        return apply(current) if _asked(current) == _asked(read) else current

    return guarded


def _asked(obj: Replica | Engine) -> object:
    """What ``obj`` asks of its node: its spec; for an engine, also whether the salvage asked for
    was done (the plan clears ``salvage_executed`` to ask for another)."""
    if isinstance(obj, Engine):
        return obj.spec, obj.status.salvage_executed
    return obj.spec


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


def modes_by_name(engine: Engine, modes: Mapping[str, Mode]) -> dict[str, Mode]:
    """The engine's replica ``modes`` (by address) by replica name. A replica whose instance
    restarted on another port is in the spec at its new address; the engine may still hold it
    only at its old one (ERR: it was lost): that old address, from the map the engine was last
    seen with, still names it, so its failure is not lost in the move."""
    wanted = {_url(a): n for n, a in engine.spec.replica_address_map.items()}
    before = {_url(a): n for n, a in engine.status.current_replica_address_map.items()}
    named = {wanted[a]: m for a, m in modes.items() if a in wanted}
    for address, mode in sorted(modes.items()):
        name = before.get(address)
        if address not in wanted and name is not None and name not in named:
            named[name] = mode
    return named


def _engine_status(
    engine: Engine,
    instance: Instance | None,
    node: str,
    *,
    salvaged: bool = False,
    rebuilds: dict[str, RebuildStatus] | None = None,
) -> Engine:
    """``engine`` with what its instance shows; ``salvaged``: it runs, started with salvage;
    ``rebuilds``: its replicas' rebuilds (None: as the status has them)."""
    host, port = _address(instance) if instance is not None else ("", 0)
    state = _STATES[instance.state] if instance is not None else ObjectState.STOPPED
    running = state is ObjectState.RUNNING and instance is not None
    modes = (instance.replica_modes if running and instance is not None else None) or {}
    size = (instance.current_size if instance is not None else 0) or engine.spec.volume_size
    status = attrs.evolve(
        engine.status,
        owner_id=node,
        current_state=state,
        ip=host,
        port=port,
        started=running,
        endpoint=(instance.frontend or "") if running and instance is not None else "",
        current_size=size if running else engine.status.current_size,
        current_replica_address_map=dict(engine.spec.replica_address_map) if running else {},
        replica_mode_map=modes_by_name(engine, modes),
        rebuild_status=engine.status.rebuild_status if rebuilds is None else rebuilds,
        salvage_executed=engine.status.salvage_executed or salvaged,
    )
    return attrs.evolve(engine, status=status)
