"""The API's surface, declared once: every operation, its parameters, body, answers and errors.

The OpenAPI document (:mod:`lhtrio.api.openapi`) is made from this table, the bodies' schemas
from the same tables the parsers use (:mod:`lhtrio.api.bodies`, :mod:`.action_bodies`,
:mod:`.node_bodies`), and the documents' schemas from the models
(:mod:`lhtrio.manager.store.schema`). ``tests/api/test_openapi.py`` fails when the app's routes
and this table differ, and schemathesis checks the served API against the document.

Besides ``/v1``'s JSON: the watch streams (``text/event-stream``: ``GET /v1/watch`` and, with
``?watch=true``, each collection, whose 200 then has that media type too — :data:`WATCHING`),
and the health probes and metrics (``text/plain``).

The statuses an operation may answer besides its success (:data:`ERRORS`): 400 (bad input: a name
in the path, a query parameter, the body, ``If-Match``), 401 (no token), 404 (no such object, or
one the body names), 409 (a conflict: a stale ``If-Match``, an object another party holds or is
deleting, a name taken), 413 (a body over 1 MiB), 422 (the object itself rules the request out),
503 (the store, or an engine the operation needs, cannot be had now). Every operation may also
be refused with 431 before the API sees it (:data:`HTTP_ERRORS`: a request line and headers over
hypercorn's 16 KiB), which is the server's, without the error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from lhtrio.api import action_bodies, node_bodies
from lhtrio.api.bodies import CREATE_VOLUME, PUT_SETTING
from lhtrio.api.fields import Body
from lhtrio.manager.store.codec import KINDS
from lhtrio.models.cluster.volume import Robustness, VolumeState

__all__ = [
    "ERRORS",
    "HTTP_ERRORS",
    "OPERATIONS",
    "WATCHING",
    "Operation",
    "Parameter",
    "parameters",
]

Schema = dict[str, Any]

#: What each error status means, for the document.
ERRORS: Final[dict[int, str]] = {
    400: "Bad input (InvalidArgument): details.field names the body field, query parameter, "
    "path name or header that is wrong. Nothing changed.",
    401: "Unauthorized: no bearer token, or not the API's. Nothing changed.",
    404: "NotFound: no such object (or path).",
    409: "Conflict: a stale If-Match (details.resourceVersion is the object's version now), an "
    "object another party holds or is deleting, a name taken (AlreadyExists). Nothing changed.",
    413: "RequestEntityTooLarge: a body over 1 MiB (details.limit). Nothing changed.",
    422: "FailedPrecondition: the object itself rules the request out as it is (shrinking, "
    "salvaging a volume whose replicas work, removing a disk that holds replicas). Nothing "
    "changed.",
    503: "StoreUnavailable, Unavailable: the store failed, or the operation needs an engine "
    "that cannot be had now. Try again.",
}

#: Statuses the HTTP server itself may answer any request with, before the API sees it: no body,
#: and the connection is closed (found by schemathesis: a query of 16 KiB).
HTTP_ERRORS: Final[dict[int, str]] = {
    431: "Request Header Fields Too Large: the request line and headers are over 16 KiB (a query "
    "too long); the HTTP server refuses the request before the API sees it, with no body, and "
    "closes the connection. Nothing changed.",
}


@attrs.frozen(kw_only=True)
class Parameter:
    """A query parameter (``where="header"``: a request header)."""

    name: str
    schema: Schema
    description: str
    required: bool = False
    where: str = "query"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(kind: str) -> Schema:
    return {
        "type": "object",
        "properties": {"data": {"type": "array", "items": _ref(kind)}},
        "required": ["data"],
        "additionalProperties": False,
    }


_GONE: Final[Schema] = {"type": "object", "maxProperties": 0, "description": "gone at once"}

#: A label key: an optional prefix (a DNS subdomain: the pattern takes up to 4 labels of up to 62
#: characters, at most 251 in all, since it cannot count to the parser's 253), then a name.
_KEY: Final = (
    r"([a-z0-9]([-a-z0-9]{0,60}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,60}[a-z0-9])?){0,3}/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_VALUE: Final = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_REQUIREMENT: Final = rf"\s*(!\s*{_KEY}|{_KEY}\s*((==?|!=)\s*{_VALUE})?)\s*"
_SELECTOR: Final = Parameter(
    name="labelSelector",
    schema={
        "type": "string",
        "maxLength": 4096,
        "pattern": rf"^(\s*|{_REQUIREMENT}(,{_REQUIREMENT})*)$",
    },
    description="Kubernetes' equality-based label selector: k=v,k2!=v2,k3,!k4 (all must hold); "
    "a key's prefix is a DNS subdomain (this pattern takes up to 4 labels of it)",
)
_VOLUME: Final = Parameter(
    name="volume",
    schema={"type": "string", "minLength": 1, "maxLength": 63,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
    description="only the given volume's",
)  # fmt: skip
_NODE: Final = Parameter(
    name="node",
    schema={"type": "string", "minLength": 1, "maxLength": 128,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
    description="only those on the given node",
)  # fmt: skip


@attrs.frozen(kw_only=True)
class Operation:
    """One operation. ``name``: what the path's ``{name}`` names (``volume``, ``node``...);
    ``body``: its body, or, for ``?action=`` operations, the body of each action; ``answer``:
    its success's body; ``errors``: the statuses it may answer besides (see :data:`ERRORS`);
    ``conditional``: it takes ``If-Match``; ``public``: it needs no token; ``media``: the
    success's media type (``answer`` is its schema); ``watch``: it takes ``?watch=true`` (then
    its success is a ``text/event-stream`` too, and it takes :data:`WATCHING`); ``responses``:
    answers of its own besides the shared errors (OpenAPI Response Objects, by status)."""

    method: str
    path: str
    id: str
    summary: str
    tag: str
    status: int
    answer: Schema
    errors: tuple[int, ...]
    name: str | None = None
    query: tuple[Parameter, ...] = ()
    body: Body | Mapping[str, Body] | None = None
    conditional: bool = False
    public: bool = False
    description: str = ""
    media: str = "application/json"
    watch: bool = False
    responses: Mapping[int, Schema] = attrs.field(factory=dict)


_REVISION: Final[Schema] = {"type": "string", "pattern": "^[0-9]{1,19}$"}

#: What a watch takes besides its filters: where it resumes (``Last-Event-ID`` wins).
_RESUME: Final = (
    Parameter(
        name="resourceVersion", schema=_REVISION,
        description="watch the changes after this store revision (a listed object's "
        "resourceVersion, or a stream's last id); 400 if newer than the store's; the stream says "
        "ERROR 410 Gone for one the store no longer keeps",
    ),
    Parameter(
        name="Last-Event-ID", where="header", schema=_REVISION,
        description="the id of the last event received (what EventSource sends when it "
        "reconnects): resume after it",
    ),
)  # fmt: skip

#: The parameters of every collection that can be watched.
WATCHING: Final = (
    Parameter(
        name="watch", schema={"type": "string", "enum": ["true", "1", "", "false", "0"]},
        description="true, 1 or empty: a text/event-stream of the collection's objects (ADDED, "
        "without id), a BOOKMARK at their revision, then every change (docs/api.md, 'Watch "
        "streams'); the list's filters apply; false or 0: the list",
    ),
    *_RESUME,
)  # fmt: skip

_STREAM: Final[Schema] = {
    "type": "string",
    "description": "server-sent events: 'id: REVISION', 'event: ADDED|MODIFIED|DELETED|BOOKMARK|"
    "ERROR', 'data: ' and one line of JSON {type: EVENT, object: DOCUMENT} (a Kubernetes Status "
    "for ERROR, then the end); ': keep-alive' comments while idle",
}

_TEXT: Final[Schema] = {"type": "string"}

_EVENT_FILTERS: Final = (
    Parameter(name="kind", schema={"type": "string", "pattern": "^[A-Z][A-Za-z0-9]{0,62}$"},
              description="only the events about objects of this kind (Volume, Node...)"),
    Parameter(name="name", schema={"type": "string", "minLength": 1, "maxLength": 128,
                                   "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
              description="only the events about objects of this name"),
)  # fmt: skip


def parameters(operation: Operation) -> tuple[Parameter, ...]:
    """Every parameter ``operation`` takes in its query or headers (but ``If-Match`` and the
    path's name)."""
    return (*operation.query, *(WATCHING if operation.watch else ()))


_VOLUME_ANSWERS: Final[Schema] = {
    "anyOf": [_ref("Volume"), _ref("Snapshot"), _list("Snapshot")],
    "description": "snapshotCreate: the snapshot; snapshotList: {data: [snapshot]}; the other "
    "actions: the volume",
}

OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="GET", path="/v1/volumes", id="listVolumes", tag="volumes", status=200,
        summary="List volumes", answer=_list("Volume"), errors=(400, 401, 503),
        query=(
            _SELECTOR,
            Parameter(name="state",
                      schema={"type": "string", "enum": [s.value for s in VolumeState]},
                      description="only volumes in this state"),
            Parameter(name="robustness",
                      schema={"type": "string", "enum": [r.value for r in Robustness]},
                      description="only volumes this robust"),
        ),
        watch=True,
    ),
    Operation(
        method="POST", path="/v1/volumes", id="createVolume", tag="volumes", status=201,
        summary="Create a volume", answer=_ref("Volume"), errors=(400, 401, 409, 413, 503),
        body=CREATE_VOLUME,
    ),
    Operation(
        method="GET", path="/v1/volumes/{name}", id="getVolume", tag="volumes", status=200,
        summary="Get a volume", answer=_ref("Volume"), errors=(400, 401, 404, 503),
        name="volume",
    ),
    Operation(
        method="DELETE", path="/v1/volumes/{name}", id="deleteVolume", tag="volumes", status=202,
        summary="Delete a volume (its engine and replicas go first)",
        answer={"anyOf": [_ref("Volume"), _GONE]}, errors=(400, 401, 404, 409, 503),
        name="volume", conditional=True,
    ),
    Operation(
        method="POST", path="/v1/volumes/{name}", id="volumeAction", tag="volumes", status=200,
        summary="An action on a volume (?action=)", answer=_VOLUME_ANSWERS,
        errors=(400, 401, 404, 409, 413, 422, 503), name="volume",
        body=action_bodies.BODIES, conditional=True,
        description="attach and detach write attachment tickets; the snapshot actions and "
        "expand need the volume's engine (a detached volume is attached for the call; 503 when "
        "no node can); updateReplicaCount, updateDataLocality and updateLabels change the "
        "volume's spec; salvage un-fails the named replicas of a volume whose replicas all "
        "failed.",
    ),
    Operation(
        method="GET", path="/v1/replicas", id="listReplicas", tag="replicas", status=200,
        summary="List replicas", answer=_list("Replica"), errors=(400, 401, 503),
        query=(_VOLUME, _NODE, _SELECTOR),
        watch=True,
    ),
    Operation(
        method="GET", path="/v1/replicas/{name}", id="getReplica", tag="replicas", status=200,
        summary="Get a replica", answer=_ref("Replica"), errors=(400, 401, 404, 503),
        name="replica",
    ),
    Operation(
        method="DELETE", path="/v1/replicas/{name}", id="deleteReplica", tag="replicas",
        status=202, summary="Delete a replica to force a rebuild (never the last healthy one)",
        answer={"anyOf": [_ref("Replica"), _GONE]}, errors=(400, 401, 404, 409, 503),
        name="replica", conditional=True,
    ),
    Operation(
        method="GET", path="/v1/engines", id="listEngines", tag="engines", status=200,
        summary="List engines", answer=_list("Engine"), errors=(400, 401, 503),
        query=(_VOLUME, _NODE, _SELECTOR),
        watch=True,
    ),
    Operation(
        method="GET", path="/v1/engines/{name}", id="getEngine", tag="engines", status=200,
        summary="Get an engine", answer=_ref("Engine"), errors=(400, 401, 404, 503),
        name="engine",
    ),
    Operation(
        method="GET", path="/v1/volumeattachments", id="listVolumeAttachments",
        tag="volumeattachments", status=200, summary="List the volumes' attachment tickets",
        answer=_list("VolumeAttachment"), errors=(400, 401, 503), query=(_SELECTOR,),
        watch=True,
    ),
    Operation(
        method="GET", path="/v1/volumeattachments/{name}", id="getVolumeAttachment",
        tag="volumeattachments", status=200, summary="Get a volume's attachment tickets",
        answer=_ref("VolumeAttachment"), errors=(400, 401, 404, 503), name="volume",
    ),
    Operation(
        method="GET", path="/v1/nodes", id="listNodes", tag="nodes", status=200,
        summary="List nodes", answer=_list("Node"), errors=(400, 401, 503), query=(_SELECTOR,),
        watch=True,
    ),
    Operation(
        method="GET", path="/v1/nodes/{name}", id="getNode", tag="nodes", status=200,
        summary="Get a node", answer=_ref("Node"), errors=(400, 401, 404, 503), name="node",
    ),
    Operation(
        method="POST", path="/v1/nodes/{name}", id="nodeAction", tag="nodes", status=200,
        summary="Update a node or its disks (?action=nodeUpdate|diskUpdate)",
        answer=_ref("Node"), errors=(400, 401, 404, 409, 413, 422, 503), name="node",
        body=node_bodies.BODIES, conditional=True,
    ),
    Operation(
        method="GET", path="/v1/settings", id="listSettings", tag="settings", status=200,
        summary="List the settings (unset ones with their default)", answer=_list("Setting"),
        errors=(400, 401, 503), query=(_SELECTOR,),
        watch=True,
    ),
    Operation(
        method="GET", path="/v1/settings/{name}", id="getSetting", tag="settings", status=200,
        summary="Get a setting", answer=_ref("Setting"), errors=(400, 401, 404, 503),
        name="setting",
    ),
    Operation(
        method="PUT", path="/v1/settings/{name}", id="putSetting", tag="settings", status=200,
        summary="Set a setting", answer=_ref("Setting"), errors=(400, 401, 404, 409, 413, 503),
        name="setting", body=PUT_SETTING, conditional=True,
    ),
    Operation(
        method="GET", path="/v1/events", id="listEvents", tag="events", status=200,
        summary="List the events kept, newest last", answer=_list("Event"),
        errors=(400, 401, 503), query=(*_EVENT_FILTERS, _SELECTOR), watch=True,
    ),
    Operation(
        method="GET", path="/v1/volumes/{name}/events", id="listVolumeEvents", tag="events",
        status=200, summary="List a volume's events, newest last", answer=_list("Event"),
        errors=(400, 401, 404, 503), name="volume",
    ),
    Operation(
        method="GET", path="/v1/watch", id="watch", tag="watch", status=200,
        summary="Watch the objects of a kind (server-sent events)", answer=_STREAM,
        media="text/event-stream", errors=(400, 401, 503),
        query=(
            Parameter(name="kind", schema={"type": "string", "enum": sorted(KINDS)},
                      description="the kind watched", required=True),
            *_RESUME,
        ),
        description="The kind's objects (ADDED, without id), a BOOKMARK at their revision, then "
        "every change with its revision as the id; from resourceVersion or Last-Event-ID: a "
        "BOOKMARK there, then every later change. The stream lasts until the client leaves, "
        "the server stops, or an ERROR event (410 Gone: list again). 503 ShuttingDown while "
        "the API stops.",
    ),
    Operation(
        method="GET", path="/healthz", id="healthz", tag="observe", status=200,
        summary="Liveness: ok while the process serves HTTP (no token needed)", answer=_TEXT,
        media="text/plain", errors=(), public=True,
    ),
    Operation(
        method="GET", path="/readyz", id="readyz", tag="observe", status=200,
        summary="Readiness: ok when the store answers and the node supervises its instances "
        "(no token needed)", answer=_TEXT, media="text/plain", errors=(), public=True,
        responses={503: {"description": "not ready: the reason (the store failed or is slow, "
                         "the node is starting or shutting down)",
                         "content": {"text/plain": {"schema": _TEXT}}}},
    ),
    Operation(
        method="GET", path="/metrics", id="metrics", tag="observe", status=200,
        summary="Prometheus metrics (text format 0.0.4; docs/metrics.md)", answer=_TEXT,
        media="text/plain", errors=(401, 503),
    ),
    Operation(
        method="GET", path="/v1/openapi.json", id="getOpenApi", tag="meta", status=200,
        summary="This document (no token needed)", answer={"type": "object"}, errors=(),
        public=True,
    ),
)  # fmt: skip
