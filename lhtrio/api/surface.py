"""The API's surface, declared once: every operation, its parameters, body, answers and errors.

The OpenAPI document (:mod:`lhtrio.api.openapi`) is made from this table, the bodies' schemas
from the same tables the parsers use (:mod:`lhtrio.api.bodies`, :mod:`.action_bodies`,
:mod:`.node_bodies`), and the documents' schemas from the models
(:mod:`lhtrio.manager.store.schema`). ``tests/api/test_openapi.py`` fails when the app's routes
and this table differ, and schemathesis checks the served API against the document.

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
from lhtrio.models.cluster.volume import Robustness, VolumeState

__all__ = ["ERRORS", "HTTP_ERRORS", "OPERATIONS", "Operation", "Parameter"]

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
    """A query parameter."""

    name: str
    schema: Schema
    description: str
    required: bool = False


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

_KEY: Final = (
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
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
    description="Kubernetes' equality-based label selector: k=v,k2!=v2,k3,!k4 (all must hold)",
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
    ``conditional``: it takes ``If-Match``; ``public``: it needs no token."""

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
    ),
    Operation(
        method="GET", path="/v1/volumeattachments/{name}", id="getVolumeAttachment",
        tag="volumeattachments", status=200, summary="Get a volume's attachment tickets",
        answer=_ref("VolumeAttachment"), errors=(400, 401, 404, 503), name="volume",
    ),
    Operation(
        method="GET", path="/v1/nodes", id="listNodes", tag="nodes", status=200,
        summary="List nodes", answer=_list("Node"), errors=(400, 401, 503), query=(_SELECTOR,),
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
        method="GET", path="/v1/openapi.json", id="getOpenApi", tag="meta", status=200,
        summary="This document (no token needed)", answer={"type": "object"}, errors=(),
        public=True,
    ),
)  # fmt: skip
