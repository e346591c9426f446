"""What an engine reports of its replicas, told as events: a replica failed, a rebuild started or
finished.

These come from the engine, not from the volume's plan: a replica whose instance dies and comes
back at once is rebuilt without the store ever holding it failed (the engine marks it ERR, lets it
go, takes the new instance as WO, rebuilds it), and the plan, which looks at the volume now and
then, sees only the robustness move. Every change of an engine's replica modes reaches the
store's watch, so :func:`follow_engine_events` compares each engine's modes with the ones before:

* a replica becomes ``ERR`` → ``ReplicaFailed`` (Warning), "the engine reported it ERR";
* a replica becomes ``WO`` → ``Rebuilding`` (Normal); after ``ReplicaFailed`` if it was ``RW``
  (lost and taken back between two of the engine's reports: its ERR never reached the store; a
  replica that left the map, its instance restarted on another port, keeps its last mode);
* a ``WO`` replica becomes ``RW`` → ``Rebuilt`` (Normal).

The node an engine runs on records its events (each change once, in order); an engine first seen
after a (re)list has no past to compare with. The events are about the engine's volume.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from lhtrio.errors import CorruptMetadataError, GoneError, LhtrioError, NotFoundError
from lhtrio.manager import events
from lhtrio.manager.objects import Objects
from lhtrio.manager.runner import RELIST_PAUSE
from lhtrio.manager.store.api import EventType as ChangeType
from lhtrio.manager.store.codec import from_document
from lhtrio.models.cluster import Engine, Replica, Volume
from lhtrio.models.cluster.event import EventType, ObjectReference, Occurrence
from lhtrio.models.times import wall_now
from lhtrio.models.volume import Mode

__all__ = ["follow_engine_events", "mode_events"]

logger = logging.getLogger(__name__)


def mode_events(
    before: Mapping[str, Mode], after: Mapping[str, Mode], where: Mapping[str, str], volume: str
) -> tuple[Occurrence, ...]:
    """The events of an engine's replica modes going from ``before`` to ``after`` (replica name
    -> mode); ``where``: each replica's node."""
    found = []
    for replica, mode in sorted(after.items()):
        was = before.get(replica)
        if mode is was:
            continue
        what = f"replica {replica} on node {where.get(replica, '?')} of volume {volume}"
        if mode is Mode.ERR:
            found.append(
                Occurrence(
                    reason="ReplicaFailed",
                    message=f"{what} failed: the engine reported it ERR",
                    type=EventType.WARNING,
                )
            )
        elif mode is Mode.WO:
            if was is Mode.RW:  # lost and back between two looks: failed all the same
                found.append(
                    Occurrence(
                        reason="ReplicaFailed",
                        message=f"{what} failed: the engine lost it (it is back, to be rebuilt)",
                        type=EventType.WARNING,
                    )
                )
            found.append(Occurrence(reason="Rebuilding", message=f"rebuilding {what}"))
        elif was is Mode.WO:
            found.append(Occurrence(reason="Rebuilt", message=f"{what} is rebuilt (RW)"))
    return tuple(found)


async def follow_engine_events(objects: Objects, node: str) -> None:
    """Record the events of the replica modes of the engines on ``node``, until cancelled."""
    store = objects.store
    while True:
        try:
            listing = await store.list(Engine.KIND)
            seen = {}
            for document in listing.documents:
                engine = _engine(document)
                if engine is not None:
                    seen[engine.meta.name] = engine.status.replica_mode_map
            async with store.watch(Engine.KIND, listing.revision) as changes:
                async for change in changes:
                    engine = _engine(change.document)
                    if engine is None:
                        continue
                    if change.type is ChangeType.DELETED:
                        seen.pop(engine.meta.name, None)
                        continue
                    modes = engine.status.replica_mode_map
                    before = seen.get(engine.meta.name)
                    # a replica keeps its last mode while it is out of the map (its instance
                    # restarted on another port: dropped, then back as WO)
                    seen[engine.meta.name] = {**(before or {}), **modes}
                    changed = before is not None and any(
                        before.get(r) is not m for r, m in modes.items()
                    )
                    if changed and before is not None and engine.spec.node_id == node:
                        await _record(objects, engine, before, node)
        except GoneError:
            continue
        except LhtrioError as exc:
            logger.warning("following engines failed: %s; again in %.0f s", exc, RELIST_PAUSE)
            await trio.sleep(RELIST_PAUSE)


def _engine(document: object) -> Engine | None:
    try:
        return from_document(Engine, document)
    except CorruptMetadataError as exc:
        logger.warning("ignoring an engine: %s", exc)
        return None


async def _record(objects: Objects, engine: Engine, before: Mapping[str, Mode], node: str) -> None:
    name, after = engine.spec.volume_name, engine.status.replica_mode_map
    where = {}
    for replica in [r for r, mode in after.items() if before.get(r) is not mode]:
        try:
            where[replica] = (await objects.get(Replica, replica)).spec.node_id
        except NotFoundError:
            continue
    found = mode_events(before, after, where, name)
    if not found:
        return
    try:
        uid = (await objects.get(Volume, name)).meta.uid
    except NotFoundError:
        return  # the volume is gone, and its events with it
    involved = ObjectReference(kind=Volume.KIND, name=name, uid=uid)
    now = wall_now()
    for occurrence in found:
        await events.record(objects, involved, occurrence, node=node, now=now)
