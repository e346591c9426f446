"""The volume reconciler's I/O shell: read what a volume's plan needs, write what the plan says.

The decisions are pure (:func:`lhtrio.manager.volume_plan.plan_volume`); this module only reads
the volume, its replicas and engine, the nodes, their leases and the settings, and writes the
plan back: new and changed replicas, the engine, the volume's status (owned by this node), and at
the end of a deletion the volume's finalizer; then the plan's events (:mod:`lhtrio.manager.events`,
best effort; a deleted volume's events go with it). Any conflict or failure is raised: the runner
tries the volume again (the next plan starts from what the store holds then). A volume is
reconciled by the node responsible for it (:mod:`lhtrio.manager.ownership`: its attach node if
that one is up, else its current owner, else an agreed taker).

The volume's reconciler is nudged when one of its replicas or its engine changes
(:func:`follow_members`), so an engine's report of a failed replica reaches the volume at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import secrets
from collections.abc import Iterator

import attrs
import trio

from lhtrio.errors import NotFoundError
from lhtrio.manager import events
from lhtrio.manager.lease import nodes_up
from lhtrio.manager.objects import Objects
from lhtrio.manager.ownership import responsible
from lhtrio.manager.placement import REPLICA_DATA_FINALIZER, node_views
from lhtrio.manager.runner import follow
from lhtrio.manager.selection import replicas_of
from lhtrio.manager.settings import read_settings, setting_values
from lhtrio.manager.space import ScheduledSpace
from lhtrio.manager.store.api import Document, Store
from lhtrio.manager.store.rules import metadata
from lhtrio.manager.volume_plan import plan_volume
from lhtrio.manager.watched import Watched
from lhtrio.models.cluster import Engine, Node, Replica, Volume, VolumeAttachment
from lhtrio.models.cluster.engine import engine_name
from lhtrio.models.cluster.event import ObjectReference
from lhtrio.models.times import wall_now

__all__ = ["FINALIZER", "VolumeControl", "follow_members"]

logger = logging.getLogger(__name__)

#: Held by every volume until its engine and replicas are gone.
FINALIZER = "lhtrio.io/volume"


def _suffixes() -> Iterator[str]:
    while True:
        yield secrets.token_hex(4)


def _utcnow() -> dt.datetime:
    return wall_now()


@attrs.frozen
class VolumeControl:
    """``watched``: the nodes up, the nodes, the settings and the space scheduled on each disk
    as the manager keeps them from its watches (:mod:`lhtrio.manager.kept`; None: read them
    from the store at each reconcile)."""

    objects: Objects
    node: str
    watched: Watched | None = None

    async def reconcile_volume(self, name: str) -> float | None:
        objects = self.objects
        try:
            volume = await objects.get(Volume, name)
        except NotFoundError:
            return None  # gone: its finalizer released after its members were deleted
        watched = self.watched
        up = await nodes_up(objects.store, None if watched is None else watched.availability)
        preferred = volume.spec.node_id
        if not responsible(self.node, owner=volume.status.owner_id, preferred=preferred, up=up):
            return None
        replicas = await replicas_of(objects, name)
        try:
            engine: Engine | None = await objects.get(Engine, engine_name(name))
        except NotFoundError:
            engine = None
        if watched is None or not watched.nodes.listed.is_set():
            nodes, _ = await objects.list(Node)
        else:
            nodes = watched.nodes.values()
        if watched is None:
            views = node_views(nodes, up, (await objects.list(Replica))[0])
        else:
            views = node_views(nodes, up, placed=watched.space.placed)
        if watched is None or not watched.settings.listed.is_set():
            settings = await read_settings(objects)
        else:
            settings = setting_values(watched.settings.values())
        now = _utcnow()
        plan = plan_volume(
            volume,
            replicas,
            engine,
            nodes=views,
            up=up,
            settings=settings,
            now=now,
            suffixes=_suffixes(),
        )
        for replica in plan.create_replicas:
            created = await objects.create(replica)
            if watched is not None:
                watched.space.add(created)
        for replica in plan.update_replicas:
            await objects.update(replica)
        for replica_name in plan.delete_replicas:
            current = await objects.get(Replica, replica_name)
            await objects.delete(current)
        for replica_name in plan.abandon_replicas:
            logger.warning(
                "volume %s: replica %s is deleted while its node is down; its data stays there",
                name,
                replica_name,
            )
            await self.objects.change(Replica, replica_name, _without_data_finalizer)
        if plan.delete_engine and engine is not None:
            await objects.delete(engine)
        elif plan.engine is not None:
            if engine is None:
                await objects.create(plan.engine)
            elif plan.engine != engine:
                await objects.update(plan.engine)
        wanted = plan.volume
        if wanted.status.owner_id != self.node:
            wanted = attrs.evolve(wanted, status=attrs.evolve(wanted.status, owner_id=self.node))
        if plan.release_finalizer:
            await _delete_attachment(objects, name)
            finalizers = tuple(f for f in wanted.meta.finalizers if f != FINALIZER)
            wanted = attrs.evolve(wanted, meta=attrs.evolve(wanted.meta, finalizers=finalizers))
        if wanted != volume:
            await objects.update(wanted)
        involved = ObjectReference(kind=Volume.KIND, name=name, uid=volume.meta.uid)
        for occurrence in plan.events:
            await events.record(objects, involved, occurrence, node=self.node, now=now)
        if plan.release_finalizer:
            await events.forget(objects, Volume.KIND, name)
        return plan.again


def _without_data_finalizer(replica: Replica) -> Replica:
    finalizers = tuple(f for f in replica.meta.finalizers if f != REPLICA_DATA_FINALIZER)
    return attrs.evolve(replica, meta=attrs.evolve(replica.meta, finalizers=finalizers))


async def _delete_attachment(objects: Objects, name: str) -> None:
    """The volume's tickets go with it."""
    with contextlib.suppress(NotFoundError):
        await objects.delete(await objects.get(VolumeAttachment, name))


def _volume_of(document: Document) -> str:
    """A replica's or an engine's ``spec.volumeName`` (read raw: every node sees every change)."""
    spec = document.get("spec")
    name = spec.get("volumeName") if isinstance(spec, dict) else None
    if not isinstance(name, str):
        logger.warning("ignoring a change: %s names no volume", metadata(document).get("name"))
        return ""
    return name


async def follow_members(
    store: Store, nudge: trio.MemorySendChannel[str], space: ScheduledSpace | None = None
) -> None:
    """Nudge the volume of every replica or engine that changes; keep ``space`` from the
    replicas."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(follow, index=space), store, Replica.KIND, _volume_of, nudge
        )
        nursery.start_soon(follow, store, Engine.KIND, _volume_of, nudge)
