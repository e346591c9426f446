"""``/v1/nodes``: the nodes, and Longhorn's node actions ``nodeUpdate`` and ``diskUpdate``.

The bodies are :mod:`lhtrio.api.node_bodies`; the rules and the writes
:mod:`lhtrio.manager.node_update` (on condition of the ``If-Match`` version, if one is given).
``GET /v1/nodes`` filters by ``?labelSelector=``.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api import node_bodies
from lhtrio.api.listing import Rendered
from lhtrio.api.query import collection_filter
from lhtrio.api.responses import (
    action_of,
    checked_name,
    json_response,
    read_body,
    version,
)
from lhtrio.manager import node_update
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import Node
from lhtrio.models.names import validate_instance_name

__all__ = ["add_node_routes"]


def add_node_routes(app: QuartTrio, objects: Objects, rendered: Rendered) -> None:
    @app.get("/v1/nodes")
    async def list_nodes() -> Response:
        return await rendered.answer(Node, collection_filter(request.path, request.args))

    @app.get("/v1/nodes/<path:name>")
    async def get_node(name: str) -> Response:
        checked_name(validate_instance_name, name, what="node")
        return json_response(to_document(await objects.get(Node, name)))

    @app.post("/v1/nodes/<path:name>")
    async def node_action(name: str) -> Response:
        checked_name(validate_instance_name, name, what="node")
        action = action_of(node_bodies.BODIES, "/v1/nodes/NAME")
        at = version()
        body = await read_body()
        if action == "nodeUpdate":
            update = node_bodies.parse_node_update(body)
            node = await node_update.update_node(objects, name, update, version=at)
        else:
            disks = node_bodies.parse_disk_update(body)
            node = await node_update.update_disks(objects, name, disks, version=at)
        return json_response(to_document(node))
