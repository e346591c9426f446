"""The OpenAPI 3.1 document of the admin API, made from its declared surface; served at
``GET /v1/openapi.json`` (no token needed).

Nothing here is written by hand twice: the operations are :data:`lhtrio.api.surface.OPERATIONS`,
the request bodies the parsers' own tables (:class:`lhtrio.api.fields.Body`), the documents'
schemas the store format's (:mod:`lhtrio.manager.store.schema`, from the models). An operation
taking ``?action=`` lists its actions as the ``action`` parameter's enum and takes any of their
bodies (``anyOf``; ``x-lhtrio-action-bodies`` says which is whose): OpenAPI cannot tell operations
apart by a query parameter. A collection that can be watched answers its 200 as JSON or, with
``?watch=true``, as ``text/event-stream`` (both media types under the one response: the document
cannot tie a media type to a parameter's value either). The document is built once
(:func:`openapi_document`) and served as bytes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Final

from quart import Response
from quart_trio import QuartTrio

from lhtrio.api.fields import Body
from lhtrio.api.query import IF_MATCH
from lhtrio.api.surface import ERRORS, HTTP_ERRORS, OPERATIONS, Operation, parameters
from lhtrio.manager.store.schema import NAME_PATTERN, component_schemas
from lhtrio.models.cluster.setting import SETTINGS
from lhtrio.models.names import MAX_INSTANCE_NAME, MAX_VOLUME_NAME

__all__ = ["OPENAPI_PATH", "STREAM_MEDIA", "add_openapi_route", "openapi_document"]

OPENAPI_PATH: Final = "/v1/openapi.json"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


_PROBLEM: Final[Schema] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "a word a program may test"},
        "message": {"type": "string", "description": "what happened to what, what to do"},
        "details": {"type": "object", "description": "field, limit, resourceVersion..."},
    },
    "required": ["code", "message", "details"],
    "additionalProperties": False,
}

_SNAPSHOT: Final[Schema] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "parent": {"type": "string"},
        "children": {"type": "array", "items": {"type": "string"}},
        "created": {"type": "string", "format": "date-time"},
        "size": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,18})$"},
        "userCreated": {"type": "boolean"},
        "removed": {"type": "boolean"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": [
        "name", "parent", "children", "created", "size", "userCreated", "removed", "labels"
    ],
    "additionalProperties": False,
}  # fmt: skip


def _name_parameter(what: str) -> Schema:
    if what == "setting":
        schema: Schema = {"type": "string", "enum": sorted(SETTINGS)}
    else:
        limit = MAX_VOLUME_NAME if what == "volume" else MAX_INSTANCE_NAME
        schema = {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NAME_PATTERN}
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": f"the {what}'s name",
        "schema": schema,
    }


_IF_MATCH: Final[Schema] = {
    "name": IF_MATCH,
    "in": "header",
    "required": False,
    "description": 'change only if the object is at this resourceVersion: "42" or 42 ("" for '
    "an object not stored yet); 409 with details.resourceVersion otherwise",
    "schema": {"type": "string", "pattern": '^("(|0|[1-9][0-9]{0,18})"|0|[1-9][0-9]{0,18}|\\*)$'},
}


#: The media type of a watch stream.
STREAM_MEDIA: Final = "text/event-stream"

_WATCH_STREAM: Final[Schema] = {
    "type": "string",
    "description": "with ?watch=true: server-sent events of the collection's objects, as GET "
    "/v1/watch says",
}


def _body_name(operation: Operation, action: str | None = None) -> str:
    return _capital(operation.id) + (_capital(action) if action else "") + "Body"


def _bodies(operation: Operation) -> dict[str, Body]:
    """Component name -> body, of ``operation``."""
    if operation.body is None:
        return {}
    if isinstance(operation.body, Body):
        return {_body_name(operation): operation.body}
    return {_body_name(operation, action): body for action, body in operation.body.items()}


def _request_body(operation: Operation) -> Schema | None:
    if operation.body is None:
        return None
    if isinstance(operation.body, Body):
        schema = _ref(_body_name(operation))
        required = not operation.body.optional
    else:
        actions: Mapping[str, Body] = operation.body
        schema = {
            "anyOf": [_ref(_body_name(operation, a)) for a in actions],
            "x-lhtrio-action-bodies": {a: _ref(_body_name(operation, a))["$ref"] for a in actions},
        }
        required = not all(body.optional for body in actions.values())
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _parameters(operation: Operation) -> list[Schema]:
    out: list[Schema] = []
    if operation.name is not None:
        out.append(_name_parameter(operation.name))
    if isinstance(operation.body, Mapping):
        out.append(
            {
                "name": "action",
                "in": "query",
                "required": True,
                "description": "the action; its body is the one x-lhtrio-action-bodies names",
                "schema": {"type": "string", "enum": list(operation.body)},
            }
        )
    out.extend(
        {
            "name": parameter.name,
            "in": parameter.where,
            "required": parameter.required,
            "description": parameter.description,
            "schema": parameter.schema,
        }
        for parameter in parameters(operation)
    )
    if operation.conditional:
        out.append(_IF_MATCH)
    return out


def _operation(operation: Operation) -> Schema:
    content: Schema = {operation.media: {"schema": operation.answer}}
    if operation.watch:
        content[STREAM_MEDIA] = {"schema": _WATCH_STREAM}
    responses: Schema = {
        str(operation.status): {"description": operation.summary, "content": content}
    }
    for status in (*operation.errors, *HTTP_ERRORS):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    responses.update({str(status): answer for status, answer in operation.responses.items()})
    out: Schema = {
        "operationId": operation.id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "responses": responses,
    }
    if operation.description:
        out["description"] = operation.description
    parameters = _parameters(operation)
    if parameters:
        out["parameters"] = parameters
    body = _request_body(operation)
    if body is not None:
        out["requestBody"] = body
    if operation.public:
        out["security"] = []
    return out


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once; do not change what it returns)."""
    schemas: Schema = dict(component_schemas(_ref))
    schemas["Problem"] = _PROBLEM
    schemas["Snapshot"] = _SNAPSHOT
    paths: Schema = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
        for name, body in _bodies(operation).items():
            schemas[name] = body.schema()
    responses = {
        str(status): {
            "description": text,
            "content": {"application/json": {"schema": _ref("Problem")}},
        }
        for status, text in ERRORS.items()
    }
    responses.update({str(status): {"description": text} for status, text in HTTP_ERRORS.items()})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lhtrio admin API",
            "version": "v1",
            "description": "The control plane's objects over HTTP (docs/api.md). Answers are "
            "the store's documents; errors {code, message, details}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@functools.cache
def _served() -> bytes:
    return json.dumps(openapi_document(), separators=(",", ":")).encode()


def add_openapi_route(app: QuartTrio) -> None:
    @app.get(OPENAPI_PATH)
    async def get_openapi() -> Response:
        return Response(_served(), content_type="application/json")
