"""Operations on a volume through the manager: snapshots, expansion, replica count, salvage.

An operation that needs the volume's engine (a snapshot, a revert, an expansion) gets it through
:func:`open_volume_engine`: an attached volume's engine is used where it runs; a detached volume
is attached for the operation by a ticket of the operation's type (``snapshot-controller``,
``volume-expansion-controller``: :mod:`lhtrio.manager.tickets`) on a node that holds one of its
replicas, and detached again when the operation ends, whatever way it ends. A snapshot's ticket is
interruptible: a workload asking for the volume elsewhere makes it detach, and the operation
fails (503, try again) rather than holding the volume (Longhorn #10171).

The other operations only change desired state and let the reconcilers act: the replica count
(:func:`set_replica_count`; the volume plan places or removes replicas), and a salvage
(:func:`salvage`: the named failed replicas are un-failed and the engine asked to choose the best
of them when it starts).

An expansion is done by the engine first and written to ``spec.size`` after: a replica opens
only at its own size, so the spec never asks for a size the replicas do not have.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from lhtrio.clients.engine import EngineClient
from lhtrio.errors import (
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    UnavailableError,
)
from lhtrio.manager import events, volume_update
from lhtrio.manager.lease import available_nodes
from lhtrio.manager.objects import Objects
from lhtrio.manager.selection import replicas_of
from lhtrio.manager.tickets import (
    POLL,
    add_ticket,
    attached_endpoint,
    not_attached,
    remove_ticket,
    wait_satisfied,
)
from lhtrio.manager.volume_status import forget_instance
from lhtrio.models.cluster import Engine, Node, Replica, Volume
from lhtrio.models.cluster.attachment import TicketType
from lhtrio.models.cluster.engine import engine_name
from lhtrio.models.cluster.event import ObjectReference, Occurrence
from lhtrio.models.cluster.validate import MAX_REPLICAS
from lhtrio.models.engine import Snapshot
from lhtrio.models.names import validate_snapshot_name
from lhtrio.models.times import wall_now
from lhtrio.models.volume import Mode
from lhtrio.net import open_rpc_client
from lhtrio.units import format_size
from lhtrio.wire import Role

__all__ = [
    "ATTACH_TIMEOUT",
    "expand",
    "open_volume_engine",
    "salvage",
    "set_replica_count",
    "snapshot_create",
    "snapshot_delete",
    "snapshot_list",
    "snapshot_purge",
    "snapshot_revert",
]

logger = logging.getLogger(__name__)

#: How long an operation waits for a detached volume to attach for it (seconds).
ATTACH_TIMEOUT: Final = 60.0


async def _volume(objects: Objects, name: str) -> Volume:
    volume = await objects.get(Volume, name)
    if volume.meta.deleting:
        raise ConflictError(f"volume {name!r} is being deleted")
    return volume


async def _told(objects: Objects, volume: Volume, occurrence: Occurrence) -> None:
    """Record ``occurrence`` about ``volume`` (an event: best effort)."""
    involved = ObjectReference(kind=Volume.KIND, name=volume.meta.name, uid=volume.meta.uid)
    await events.record(objects, involved, occurrence, node="", now=wall_now())


async def _operation_node(objects: Objects, volume: Volume) -> str:
    """Where to attach ``volume`` for an operation: an up node holding one of its replicas that
    is not failed, else any up node that allows scheduling."""
    up = await available_nodes(objects.store)
    replicas = await replicas_of(objects, volume.meta.name)
    holders = sorted(r.spec.node_id for r in replicas if not r.failed and r.spec.node_id in up)
    if holders:
        return holders[0]
    nodes = sorted(n.meta.name for n in (await objects.list(Node))[0] if n.spec.allow_scheduling)
    for node in nodes:
        if node in up:
            return node
    raise UnavailableError(f"volume {volume.meta.name!r}: no node is up to attach it to")


@asynccontextmanager
async def _engine_at(address: str, caller: str) -> AsyncIterator[EngineClient]:
    async with open_rpc_client(address, client=caller, role=Role.ENGINE) as rpc:
        yield EngineClient(rpc)


@asynccontextmanager
async def open_volume_engine(
    objects: Objects,
    name: str,
    purpose: TicketType,
    *,
    caller: str,
    frontend_free: bool = False,
    patience: float = ATTACH_TIMEOUT,
) -> AsyncIterator[EngineClient]:
    """A client of volume ``name``'s engine for the length of the block (see the module
    docstring). ``frontend_free``: the operation needs the frontend stopped (a revert): a volume
    attached with its frontend is refused (ConflictError); one attached for the operation has its
    frontend stopped."""
    volume = await _volume(objects, name)
    found = await attached_endpoint(objects, volume)
    if found is not None:
        control, endpoint = found
        if frontend_free and endpoint:
            raise ConflictError(
                f"volume {name!r} is attached to {volume.status.current_node_id!r} and served "
                f"({endpoint}): detach it first, and lhtrio attaches it without a frontend for this"
            )
        async with _engine_at(control, caller) as engine:
            yield engine
        return
    node = await _operation_node(objects, volume)
    ticket = f"{purpose.value}-{secrets.token_hex(4)}"
    await add_ticket(objects, name, node, ticket_id=ticket, type=purpose)
    logger.info("volume %s: attaching on %s for %s", name, node, ticket)
    try:
        with trio.move_on_after(patience) as waited:
            volume = await wait_satisfied(objects, name, ticket)
        if waited.cancelled_caught:
            raise UnavailableError(await not_attached(objects, name, node, patience))
        found = await attached_endpoint(objects, volume)
        if found is None:  # pragma: no cover - wait_satisfied waits for it
            raise UnavailableError(f"volume {name!r} attached without an engine")
        async with _engine_at(found[0], caller) as engine:
            if frontend_free:
                await engine.frontend_stop()
            yield engine
    except ConflictError as exc:
        raise ConflictError(
            f"volume {name!r}: the operation was interrupted ({exc.message}); try again"
        ) from None
    finally:
        with trio.CancelScope(shield=True):
            try:
                await remove_ticket(objects, name, ticket_id=ticket)
            except LhtrioError as exc:
                logger.warning("volume %s: removing ticket %s failed: %s", name, ticket, exc)


# --- snapshots ------------------------------------------------------------------------------


async def snapshot_create(
    objects: Objects, name: str, snapshot: str, labels: dict[str, str], *, caller: str
) -> Snapshot:
    """Take a snapshot of volume ``name`` (``snapshot`` empty: the engine names it)."""
    if snapshot:
        validate_snapshot_name(snapshot)
    async with open_volume_engine(objects, name, TicketType.SNAPSHOT, caller=caller) as engine:
        taken = await engine.snapshot_create(snapshot, labels)
        for listed in await engine.snapshot_ls():
            if listed.name == taken:
                return listed
    raise UnavailableError(f"volume {name!r}: snapshot {taken!r} was taken but is not listed")


async def snapshot_list(objects: Objects, name: str, *, caller: str) -> list[Snapshot]:
    async with open_volume_engine(objects, name, TicketType.SNAPSHOT, caller=caller) as engine:
        return await engine.snapshot_ls()


async def snapshot_delete(objects: Objects, name: str, snapshot: str, *, caller: str) -> None:
    validate_snapshot_name(snapshot)
    async with open_volume_engine(objects, name, TicketType.SNAPSHOT, caller=caller) as engine:
        await engine.snapshot_rm(snapshot)


async def snapshot_purge(objects: Objects, name: str, *, caller: str) -> None:
    async with open_volume_engine(objects, name, TicketType.SNAPSHOT, caller=caller) as engine:
        await engine.snapshot_purge()


async def snapshot_revert(objects: Objects, name: str, snapshot: str, *, caller: str) -> None:
    """Revert volume ``name`` to ``snapshot``: only while nothing uses it (detached, it is
    attached without a frontend for the revert)."""
    validate_snapshot_name(snapshot)
    async with open_volume_engine(
        objects, name, TicketType.SNAPSHOT, caller=caller, frontend_free=True
    ) as engine:
        await engine.snapshot_revert(snapshot)


# --- desired state --------------------------------------------------------------------------


async def expand(
    objects: Objects, name: str, size: int, *, caller: str, patience: float = ATTACH_TIMEOUT
) -> Volume:
    """Grow volume ``name`` to ``size`` bytes; the volume as stored after.

    The engine grows every replica it links; then, the engine still running, the spec says the
    new size and the volume's plan gives it to those replicas (:func:`_sized`): a replica opens
    only at its own size, so no replica object may keep the old size once it has the new one."""
    volume = await _volume(objects, name)
    if size < volume.spec.size:
        raise FailedPreconditionError(
            f"volume {name!r} is {volume.spec.size} bytes: it cannot shrink to {size}"
        )
    if size == volume.spec.size:
        return volume
    before = volume.spec.size
    async with open_volume_engine(
        objects, name, TicketType.VOLUME_EXPANSION, caller=caller
    ) as engine:
        await engine.expand(size)

        def grown(v: Volume) -> Volume:
            spec = attrs.evolve(v.spec, size=max(v.spec.size, size))
            status = attrs.evolve(v.status, expansion_required=False)
            return attrs.evolve(v, spec=spec, status=status)

        volume = await objects.change(Volume, name, grown)
        with trio.move_on_after(patience) as waited:
            await _sized(objects, name, size)
        if waited.cancelled_caught:
            raise UnavailableError(
                f"volume {name!r} grew to {size} bytes but its replicas' objects did not follow "
                f"in {patience:g} s; look at the volume's owner node's log"
            )
    logger.info("volume %s: expanded to %d bytes", name, size)
    await _told(
        objects,
        volume,
        Occurrence(
            reason="Expanded",
            message=f"volume {name} expanded from {format_size(before)} to {format_size(size)}",
        ),
    )
    return volume


async def _sized(objects: Objects, name: str, size: int) -> None:
    """Wait until every replica the engine reports RW says it is ``size`` bytes."""
    while True:
        engine = await objects.get(Engine, engine_name(name))
        linked = {n for n, mode in engine.status.replica_mode_map.items() if mode is Mode.RW}
        replicas = await replicas_of(objects, name)
        if all(r.spec.volume_size == size for r in replicas if r.meta.name in linked):
            return
        await trio.sleep(POLL)


async def set_replica_count(
    objects: Objects, name: str, count: int, *, version: int | None = None
) -> Volume:
    """Ask for ``count`` replicas of volume ``name``; the volume's plan adds or removes them
    (:func:`lhtrio.manager.volume_update.set_replica_count`, which checks the volume's rules)."""
    if not 1 <= count <= MAX_REPLICAS:
        raise InvalidArgumentError(f"a replica count must be from 1 to {MAX_REPLICAS}, not {count}")
    return await volume_update.set_replica_count(objects, name, count, version=version)


async def salvage(objects: Objects, name: str, replicas: Sequence[str]) -> Volume:
    """Bring back volume ``name`` whose every replica failed, from the failed replicas
    ``replicas``: they are un-failed and the engine chooses the best of them when it starts."""
    volume = await _volume(objects, name)
    if not replicas:
        raise InvalidArgumentError("name at least one failed replica to salvage from")
    mine = {r.meta.name: r for r in await replicas_of(objects, name)}
    for replica in replicas:
        if replica not in mine:
            raise NotFoundError(f"volume {name!r} has no replica {replica!r}")
    working = sorted(n for n, r in mine.items() if not r.failed and not r.meta.deleting)
    if working:
        raise FailedPreconditionError(
            f"volume {name!r} has replicas that did not fail ({', '.join(working)}): "
            "there is nothing to salvage"
        )
    # The engine first: the volume's plan reads the replicas, then the engine; once it sees a
    # replica un-failed, it sees the request too, and does not fail the replica again on the
    # engine's ERRs of before the salvage.
    try:

        def requested(e: Engine) -> Engine:
            return attrs.evolve(
                e,
                spec=attrs.evolve(e.spec, salvage_requested=True),
                status=attrs.evolve(e.status, salvage_executed=False),
            )

        await objects.change(Engine, engine_name(name), requested)
    except NotFoundError:
        pass  # the engine that starts next salvages (its replicas ask for it)
    for replica in replicas:

        def unfail(r: Replica) -> Replica:
            spec = attrs.evolve(r.spec, failed_at=None, salvage_requested=True)
            return attrs.evolve(forget_instance(r), spec=spec)

        await objects.change(Replica, replica, unfail)
    logger.info("volume %s: salvage requested from %s", name, ", ".join(replicas))
    await _told(
        objects,
        volume,
        Occurrence(
            reason="SalvageRequested",
            message=f"salvage of volume {name} asked from replicas {', '.join(sorted(replicas))}",
        ),
    )
    return volume
