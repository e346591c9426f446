"""``/v1/volumes``: create, list, get, delete, and the actions on one volume.

``POST /v1/volumes/NAME?action=ACTION`` takes Longhorn's action names
(:mod:`lhtrio.api.action_bodies`): ``attach``/``detach`` write attachment tickets
(:mod:`lhtrio.manager.tickets`; the attachment reconciler moves the volume), the snapshot
actions, ``expand``, ``updateReplicaCount`` and ``salvage`` are the manager's operations
(:mod:`lhtrio.manager.operations`): a snapshot of a detached volume attaches it for the length
of the call, under an interruptible ticket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api import action_bodies as bodies
from lhtrio.api.bodies import parse_create_volume
from lhtrio.api.problems import FieldError
from lhtrio.api.responses import checked_name, collection, json_response, read_body
from lhtrio.errors import ConflictError, NotFoundError
from lhtrio.manager import operations, tickets
from lhtrio.manager.objects import MAX_ATTEMPTS, Objects
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

Action = Callable[[Objects, str, dict[str, object]], Awaitable[Response]]


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


async def _attach(objects: Objects, name: str, body: dict[str, object]) -> Response:
    asked = bodies.parse_attach(body)
    await tickets.add_ticket(objects, name, asked.node, ticket_id=asked.ticket)
    return await _volume(objects, name)


async def _detach(objects: Objects, name: str, body: dict[str, object]) -> Response:
    asked = bodies.parse_detach(body)
    await tickets.remove_ticket(
        objects, name, ticket_id=asked.ticket, node=asked.node, every=asked.every
    )
    return await _volume(objects, name)


async def _snapshot_create(objects: Objects, name: str, body: dict[str, object]) -> Response:
    asked = bodies.parse_snapshot_create(body)
    taken = await operations.snapshot_create(objects, name, asked.name, asked.labels, caller=CALLER)
    return json_response(snapshot_document(taken))


async def _snapshot_list(objects: Objects, name: str, body: dict[str, object]) -> Response:
    bodies.parse_no_fields(body, "snapshotList")
    listed = await operations.snapshot_list(objects, name, caller=CALLER)
    return collection([snapshot_document(s) for s in listed])


async def _snapshot_delete(objects: Objects, name: str, body: dict[str, object]) -> Response:
    snapshot = bodies.parse_snapshot_name(body, "snapshotDelete")
    await operations.snapshot_delete(objects, name, snapshot, caller=CALLER)
    return await _volume(objects, name)


async def _snapshot_revert(objects: Objects, name: str, body: dict[str, object]) -> Response:
    snapshot = bodies.parse_snapshot_name(body, "snapshotRevert")
    await operations.snapshot_revert(objects, name, snapshot, caller=CALLER)
    return await _volume(objects, name)


async def _snapshot_purge(objects: Objects, name: str, body: dict[str, object]) -> Response:
    bodies.parse_no_fields(body, "snapshotPurge")
    await operations.snapshot_purge(objects, name, caller=CALLER)
    return await _volume(objects, name)


async def _expand(objects: Objects, name: str, body: dict[str, object]) -> Response:
    size = bodies.parse_expand(body)
    return json_response(to_document(await operations.expand(objects, name, size, caller=CALLER)))


async def _replica_count(objects: Objects, name: str, body: dict[str, object]) -> Response:
    count = bodies.parse_replica_count(body)
    return json_response(to_document(await operations.set_replica_count(objects, name, count)))


async def _salvage(objects: Objects, name: str, body: dict[str, object]) -> Response:
    names = bodies.parse_salvage(body)
    await operations.salvage(objects, name, names)
    return await _volume(objects, name)


#: ``?action=`` -> its handler.
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
}
_EMPTY_OK: Final = frozenset({"detach", "snapshotCreate", "snapshotList", "snapshotPurge"})


def add_volume_routes(app: QuartTrio, objects: Objects) -> None:
    @app.get("/v1/volumes")
    async def list_volumes() -> Response:
        volumes, _ = await objects.list(Volume)
        return collection([to_document(v) for v in volumes])

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
        for _ in range(MAX_ATTEMPTS):
            try:
                await objects.delete(await objects.get(Volume, name))
                break
            except ConflictError:
                continue  # changed between the read and the delete: read it again
        else:
            raise ConflictError(f"volume {name!r} kept changing: it could not be deleted")
        try:
            return json_response(to_document(await objects.get(Volume, name)), 202)
        except NotFoundError:
            return json_response({}, 202)  # no finalizer held it: gone at once

    @app.post("/v1/volumes/<path:name>")
    async def volume_action(name: str) -> Response:
        checked_name(validate_volume_name, name)
        action = request.args.get("action")
        handler = ACTIONS.get(action or "")
        if action is None or handler is None:
            raise FieldError(
                "action",
                f"POST /v1/volumes/NAME needs ?action= one of {', '.join(ACTIONS)}"
                + (f", not {action!r}" if action is not None else ""),
            )
        body = await read_body(empty_ok=action in _EMPTY_OK)
        return await handler(objects, name, body)
