"""The manager nursery of one node: the reconcilers it runs, composed.

``run_manager(store, node, control)`` runs, until cancelled, the reconcilers of the objects this
node is responsible for: the volumes it owns (:mod:`lhtrio.manager.volume_control`, nudged when
one of their replicas or engines changes, when a node goes down or comes back, and when a
setting or a node's spec changes: :mod:`lhtrio.manager.nudges`); their
tickets (:mod:`lhtrio.manager.attachment_control`, nudged when the volume changes); the
``Replica`` and ``Engine`` objects placed on it (:mod:`lhtrio.manager.instance_control`), through
its own instance manager at ``control``. A watch of that instance manager (``instance_watch``)
nudges the reconciler of any instance that changed (an engine that stopped, a replica that
failed, an engine's replica modes: a replica it failed or rebuilt), so the store learns of it
without waiting for the periodic resync, and without the manager polling the engines.
"""

from __future__ import annotations

import functools
import logging

import trio

from lhtrio.clients.node import NodeClient
from lhtrio.errors import LhtrioError
from lhtrio.manager import events
from lhtrio.manager.attachment_control import AttachmentControl, follow_volumes
from lhtrio.manager.instance_control import InstanceControl
from lhtrio.manager.nudges import follow_availability, follow_operator
from lhtrio.manager.objects import Objects
from lhtrio.manager.runner import run_reconciler
from lhtrio.manager.scope import Borrowed, OnNode, Responsible
from lhtrio.manager.store.api import Store
from lhtrio.manager.volume_control import VolumeControl, follow_members
from lhtrio.manager.watched import Watched
from lhtrio.models.cluster import Engine, Replica, Volume, VolumeAttachment
from lhtrio.models.instance import Instance, InstanceKind
from lhtrio.models.volume import Mode
from lhtrio.net import open_rpc_client
from lhtrio.wire import Role

__all__ = ["run_manager"]

logger = logging.getLogger(__name__)

#: How long one ``instance_watch`` long poll waits (seconds).
WATCH_WAIT = 30.0


async def run_manager(
    store: Store,
    node: str,
    control: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run node ``node``'s reconcilers until cancelled; started once they have listed."""
    async with open_rpc_client(control, client=f"manager-{node}", role=Role.NODE) as rpc:
        instances = NodeClient(rpc)
        objects = Objects(store)
        watched = Watched()
        availability = watched.availability
        control_ = InstanceControl(objects, node, instances)
        volumes = VolumeControl(objects, node, watched)
        attachments = AttachmentControl(objects, node, availability)
        replicas_in, replicas_out = trio.open_memory_channel[str](256)
        engines_in, engines_out = trio.open_memory_channel[str](256)
        volumes_in, volumes_out = trio.open_memory_channel[str](256)
        attachments_in, attachments_out = trio.open_memory_channel[str](256)
        responsible = Responsible(node, availability)
        async with trio.open_nursery() as nursery:
            await nursery.start(follow_availability, store, volumes_in.clone(), availability)
            for kind, reconcile, nudges, scope in (
                (Replica.KIND, control_.reconcile_replica, replicas_out, OnNode(node)),
                (Engine.KIND, control_.reconcile_engine, engines_out, OnNode(node)),
                (Volume.KIND, volumes.reconcile_volume, volumes_out, responsible),
                (
                    VolumeAttachment.KIND,
                    attachments.reconcile_attachment,
                    attachments_out,
                    Borrowed(responsible),
                ),
            ):
                await nursery.start(
                    functools.partial(
                        run_reconciler, store, kind, reconcile, nudges=nudges, scope=scope
                    )
                )
            nursery.start_soon(follow_members, store, volumes_in.clone(), watched.space)
            nursery.start_soon(
                functools.partial(follow_operator, nodes=watched.nodes, settings=watched.settings),
                store,
                volumes_in,
            )
            nursery.start_soon(follow_volumes, store, attachments_in, responsible)
            nursery.start_soon(events.keep_bounded, objects)
            nursery.start_soon(
                _watch_instances,
                instances,
                {InstanceKind.REPLICA: replicas_in, InstanceKind.ENGINE: engines_in},
            )
            task_status.started()


async def _watch_instances(
    instances: NodeClient, nudge: dict[InstanceKind, trio.MemorySendChannel[str]]
) -> None:
    """Nudge the reconciler of every instance whose state, address, error, endpoint or (an
    engine's) replica modes or size changed. After its first answer the node is asked only for
    what changed since the last (:mod:`lhtrio.instances.watch`)."""
    seen: dict[str, _Seen] = {}
    kinds: dict[str, InstanceKind] = {}
    version = since = 0
    while True:
        try:
            watched = await instances.watch(version, WATCH_WAIT, since=since)
        except LhtrioError as exc:
            logger.warning("instance watch failed: %s", exc)
            await trio.sleep(1.0)
            continue
        version, since = watched.version, watched.answer
        now = {i.name: _seen(i) for i in watched.instances}
        kinds.update((i.name, i.type) for i in watched.instances)
        gone = set(seen) - set(now) if watched.complete else set(watched.removed) & set(seen)
        for name in sorted(set(now) | gone):
            if now.get(name) != seen.get(name):
                await nudge[kinds[name]].send(name)
        for name in gone:
            del seen[name], kinds[name]
        seen.update(now)


_Seen = tuple[str, str, str, str, tuple[tuple[str, Mode], ...], int]


def _seen(instance: Instance) -> _Seen:
    """What of an instance its reconciler writes to the store."""
    modes = tuple(sorted((instance.replica_modes or {}).items()))
    return (
        instance.state.value,
        instance.address,
        instance.error,
        instance.frontend or "",
        modes,
        instance.current_size,
    )
