"""``/v1/volumes``: create, list, get, delete, and the actions on one volume.

``POST /v1/volumes/NAME?action=ACTION`` takes Longhorn's action names
(:mod:`lhtrio.api.action_bodies`): ``attach``/``detach`` write attachment tickets
(:mod:`lhtrio.manager.tickets`; the attachment reconciler moves the volume), the snapshot
actions, ``expand`` and ``salvage`` are the manager's operations (:mod:`lhtrio.manager.operations`:
a snapshot of a detached volume attaches it for the length of the call, under an interruptible
ticket), ``updateReplicaCount``, ``updateDataLocality`` and ``updateLabels`` change the volume's
desired state (:mod:`lhtrio.manager.volume_update`).

``If-Match``: the changes of the volume object itself (its deletion, replica count, data locality,
labels) are written on condition of that version; the other actions check it when they start.
``GET /v1/volumes`` filters by ``?labelSelector=``, ``?state=`` and ``?robustness=``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api import action_bodies as bodies
from lhtrio.api.bodies import parse_create_volume
from lhtrio.api.listing import Rendered
from lhtrio.api.query import collection_filter
from lhtrio.api.responses import (
    accepted,
    action_of,
    checked_name,
    collection,
    json_response,
    read_body,
    version,
)
from lhtrio.manager import operations, tickets, versions, volume_update
from lhtrio.manager.objects import Objects
from lhtrio.manager.settings import read_settings
from lhtrio.manager.store.codec import to_document
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import ObjectMeta, Volume
from lhtrio.models.cluster.setting import SETTINGS, parse_int
from lhtrio.models.cluster.volume import VolumeSpec
from lhtrio.models.engine import Snapshot
from lhtrio.models.names import validate_volume_name
from lhtrio.models.times import format_time

__all__ = ["ACTIONS", "add_volume_routes", "snapshot_document"]

#: The client name the API's engine connections say hello with.
CALLER: Final = "lhtrio-api"

#: An action: (objects, volume name, body, If-Match version) -> the answer.
Action = Callable[[Objects, str, dict[str, object], "int | None"], Awaitable[Response]]


def snapshot_document(snapshot: Snapshot) -> dict[str, object]:
    """A snapshot as the API shows it (Longhorn's keys; the size in bytes, as a string)."""
    return {
        "name": snapshot.name,
        "parent": snapshot.parent,
        "children": sorted(snapshot.children),
        "created": format_time(snapshot.created),
        "size": str(snapshot.size),
        "userCreated": snapshot.user_created,
        "removed": snapshot.removed,
        "labels": dict(snapshot.labels),
    }


async def _volume(objects: Objects, name: str) -> Response:
    return json_response(to_document(await objects.get(Volume, name)))


async def _at(objects: Objects, name: str, at: int | None) -> None:
    await versions.check_version(objects, Volume, name, at)


async def _attach(objects: Objects, name: str, body: dict[str, object], at: int | None) -> Response:
    asked = bodies.parse_attach(body)
    await _at(objects, name, at)
    await tickets.add_ticket(objects, name, asked.node, ticket_id=asked.ticket)
    return await _volume(objects, name)


async def _detach(objects: Objects, name: str, body: dict[str, object], at: int | None) -> Response:
    asked = bodies.parse_detach(body)
    await _at(objects, name, at)
    await tickets.remove_ticket(
        objects, name, ticket_id=asked.ticket, node=asked.node, every=asked.every
    )
    return await _volume(objects, name)


async def _snapshot_create(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    asked = bodies.parse_snapshot_create(body)
    await _at(objects, name, at)
    taken = await operations.snapshot_create(objects, name, asked.name, asked.labels, caller=CALLER)
    return json_response(snapshot_document(taken))


async def _snapshot_list(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    bodies.parse_no_fields(body, "snapshotList")
    await _at(objects, name, at)
    listed_ = await operations.snapshot_list(objects, name, caller=CALLER)
    return collection([snapshot_document(s) for s in listed_])


async def _snapshot_delete(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    snapshot = bodies.parse_snapshot_name(body, "snapshotDelete")
    await _at(objects, name, at)
    await operations.snapshot_delete(objects, name, snapshot, caller=CALLER)
    return await _volume(objects, name)


async def _snapshot_revert(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    snapshot = bodies.parse_snapshot_name(body, "snapshotRevert")
    await _at(objects, name, at)
    await operations.snapshot_revert(objects, name, snapshot, caller=CALLER)
    return await _volume(objects, name)


async def _snapshot_purge(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    bodies.parse_no_fields(body, "snapshotPurge")
    await _at(objects, name, at)
    await operations.snapshot_purge(objects, name, caller=CALLER)
    return await _volume(objects, name)


async def _expand(objects: Objects, name: str, body: dict[str, object], at: int | None) -> Response:
    size = bodies.parse_expand(body)
    await _at(objects, name, at)
    return json_response(to_document(await operations.expand(objects, name, size, caller=CALLER)))


async def _replica_count(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    count = bodies.parse_replica_count(body)
    changed = await operations.set_replica_count(objects, name, count, version=at)
    return json_response(to_document(changed))


async def _salvage(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    names = bodies.parse_salvage(body)
    await _at(objects, name, at)
    await operations.salvage(objects, name, names)
    return await _volume(objects, name)


async def _data_locality(
    objects: Objects, name: str, body: dict[str, object], at: int | None
) -> Response:
    locality = bodies.parse_data_locality(body)
    changed = await volume_update.update_data_locality(objects, name, locality, version=at)
    return json_response(to_document(changed))


async def _labels(objects: Objects, name: str, body: dict[str, object], at: int | None) -> Response:
    labels = bodies.parse_labels(body)
    changed = await volume_update.update_labels(objects, name, labels, version=at)
    return json_response(to_document(changed))


#: ``?action=`` -> its handler (the bodies: :data:`lhtrio.api.action_bodies.BODIES`).
ACTIONS: Final[dict[str, Action]] = {
    "attach": _attach,
    "detach": _detach,
    "snapshotCreate": _snapshot_create,
    "snapshotList": _snapshot_list,
    "snapshotDelete": _snapshot_delete,
    "snapshotRevert": _snapshot_revert,
    "snapshotPurge": _snapshot_purge,
    "expand": _expand,
    "updateReplicaCount": _replica_count,
    "salvage": _salvage,
    "updateDataLocality": _data_locality,
    "updateLabels": _labels,
}


def add_volume_routes(app: QuartTrio, objects: Objects, rendered: Rendered) -> None:
    @app.get("/v1/volumes")
    async def list_volumes() -> Response:
        return await rendered.answer(Volume, collection_filter(request.path, request.args))

    @app.post("/v1/volumes")
    async def create_volume() -> Response:
        asked = parse_create_volume(await read_body())
        replicas = asked.replicas
        if replicas is None:
            name = "default-replica-count"
            stored = await read_settings(objects)
            replicas = parse_int(name, stored.get(name, SETTINGS[name].default))
        volume = Volume(
            meta=ObjectMeta(name=asked.name, finalizers=(FINALIZER,)),
            spec=VolumeSpec(size=asked.size, number_of_replicas=replicas),
        )
        created = await objects.create(volume)
        return json_response(to_document(created), 201)

    @app.get("/v1/volumes/<path:name>")
    async def get_volume(name: str) -> Response:
        checked_name(validate_volume_name, name)
        return await _volume(objects, name)

    @app.delete("/v1/volumes/<path:name>")
    async def delete_volume(name: str) -> Response:
        checked_name(validate_volume_name, name)
        return accepted(await versions.delete(objects, Volume, name, version=version()))

    @app.post("/v1/volumes/<path:name>")
    async def volume_action(name: str) -> Response:
        checked_name(validate_volume_name, name)
        action = action_of(ACTIONS, "/v1/volumes/NAME")
        at = version()
        body = await read_body(empty_ok=bodies.BODIES[action].optional)
        return await ACTIONS[action](objects, name, body, at)
