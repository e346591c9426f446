"""``/v1/replicas``, ``/v1/engines``, ``/v1/volumeattachments``: a volume's parts and tickets.

Read-only but for one thing: ``DELETE /v1/replicas/NAME`` deletes one replica to force a rebuild
(:mod:`lhtrio.manager.replica_delete`: never the last healthy one). The lists filter by
``?volume=``, ``?node=`` (the replica's or engine's node) and ``?labelSelector=``.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api.listing import Rendered
from lhtrio.api.query import collection_filter
from lhtrio.api.responses import accepted, checked_name, json_response, version
from lhtrio.manager.objects import Objects
from lhtrio.manager.replica_delete import delete_replica
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import Engine, Replica, VolumeAttachment
from lhtrio.models.names import validate_instance_name, validate_volume_name

__all__ = ["add_member_routes"]


def add_member_routes(app: QuartTrio, objects: Objects, rendered: Rendered) -> None:
    @app.get("/v1/replicas")
    async def list_replicas() -> Response:
        return await rendered.answer(Replica, collection_filter(request.path, request.args))

    @app.get("/v1/replicas/<path:name>")
    async def get_replica(name: str) -> Response:
        checked_name(validate_instance_name, name, what="replica")
        return json_response(to_document(await objects.get(Replica, name)))

    @app.delete("/v1/replicas/<path:name>")
    async def remove_replica(name: str) -> Response:
        checked_name(validate_instance_name, name, what="replica")
        return accepted(await delete_replica(objects, name, version=version()))

    @app.get("/v1/engines")
    async def list_engines() -> Response:
        return await rendered.answer(Engine, collection_filter(request.path, request.args))

    @app.get("/v1/engines/<path:name>")
    async def get_engine(name: str) -> Response:
        checked_name(validate_instance_name, name, what="engine")
        return json_response(to_document(await objects.get(Engine, name)))

    @app.get("/v1/volumeattachments")
    async def list_attachments() -> Response:
        return await rendered.answer(
            VolumeAttachment, collection_filter(request.path, request.args)
        )

    @app.get("/v1/volumeattachments/<path:name>")
    async def get_attachment(name: str) -> Response:
        checked_name(validate_volume_name, name)
        return json_response(to_document(await objects.get(VolumeAttachment, name)))
