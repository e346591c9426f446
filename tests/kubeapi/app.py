"""The double as an ASGI app of its own (no framework: Kubernetes paths are a small grammar of
their own, and watches are long chunked answers): the router, request bodies, answers, and the
one place where a :class:`~.status.KubeError` becomes a Status answer.

Paths, after ``/api/v1`` or ``/apis/GROUP/VERSION``::

    PLURAL                                  collection (cluster-wide, or every namespace)
    PLURAL/NAME[/status]                    a cluster-scoped object
    namespaces/NS/PLURAL                    a namespace's collection
    namespaces/NS/PLURAL/NAME[/status]      a namespaced object

and, beside them, discovery (:mod:`.discovery`), ``/openapi/v3`` (:mod:`.openapi`), and
``/healthz``, ``/livez``, ``/readyz``. Bodies are capped at :data:`MAX_BODY` (413).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import aclosing
from typing import Any, Final
from urllib.parse import parse_qsl

import trio

from lhtrio.errors import StorageError
from tests.kubeapi import discovery, openapi
from tests.kubeapi.handlers import Answer, Call, Handlers, positive_int
from tests.kubeapi.resources import Catalog
from tests.kubeapi.status import KubeError, Obj
from tests.kubeapi.table import wants_table
from tests.kubeapi.watch import heartbeats, start_revision, watch_events

__all__ = ["MAX_BODY", "KubeApp"]

logger = logging.getLogger(__name__)

#: The largest request body read (bytes), as the real server's limit.
MAX_BODY: Final = 3 << 20
#: A body past MAX_BODY is read and dropped up to this many bytes before the 413.
MAX_DRAINED: Final = 64 << 20

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _not_found() -> KubeError:
    return KubeError(404, "NotFound", "the server could not find the requested resource")


def _method_not_allowed(method: str) -> KubeError:
    return KubeError(405, "MethodNotAllowed", f"the server does not allow the method {method} here")


class KubeApp:
    """The ASGI app (``await app(scope, receive, send)``)."""

    def __init__(self, handlers: Handlers, *, bookmark_interval: float) -> None:
        self.handlers = handlers
        self.bookmark_interval = bookmark_interval

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            body = await _read_body(receive)
            await self._route(scope, body, receive, send)
        except _ClientGoneError:
            return
        except KubeError as exc:
            await _answer(send, exc.code, exc.status())
        except StorageError as exc:
            logger.warning("etcd failed a request: %s", exc)
            await _answer(send, 503, KubeError(503, "ServiceUnavailable", str(exc)).status())

    async def _route(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        method = scope["method"]
        parts = [p for p in scope["path"].split("/") if p]
        query = dict(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        if parts and parts[0] in {"healthz", "livez", "readyz"}:
            await _answer(send, 200, None, text=b"ok")
            return
        if parts == ["version"]:
            await _answer(send, 200, discovery.version())
            return
        catalog = await self.handlers.catalog()
        found = self._document(catalog, parts)
        if found is not None:
            if method != "GET":
                raise _method_not_allowed(method)
            await _answer(send, 200, found)
            return
        call = self._call(catalog, parts, query, headers, body)
        if method == "GET" and call.flag("watch"):
            await self._watch(call, receive, send)
            return
        answer = await self._verb(method, call)
        await _answer(send, answer.status, answer.body, warnings=answer.warnings)

    def _document(self, catalog: Catalog, parts: list[str]) -> Obj | None:
        """A discovery or OpenAPI document, if ``parts`` names one (404 for a group or version
        that does not exist)."""
        match parts:
            case ["api"]:
                return discovery.api_versions()
            case ["apis"]:
                return discovery.api_group_list(catalog)
            case ["api", version]:
                return _or_404(discovery.resource_list(catalog, "", version))
            case ["apis", group]:
                return _or_404(discovery.api_group(catalog, group))
            case ["apis", group, version]:
                return _or_404(discovery.resource_list(catalog, group, version))
            case ["openapi", "v3"]:
                return openapi.index(catalog)
            case ["openapi", "v3", "api", version] if catalog.in_group_version("", version):
                return openapi.group_version_document(catalog, "", version)
            case ["openapi", "v3", "apis", group, version] if catalog.in_group_version(
                group, version
            ):
                return openapi.group_version_document(catalog, group, version)
            case ["openapi", *_]:
                raise _not_found()
        return None

    def _call(
        self,
        catalog: Catalog,
        parts: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Call:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _not_found()
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and catalog.find(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _not_found()
        resource = catalog.find(group, version, rest[0])
        if resource is None or (namespace is not None and not resource.namespaced):
            raise _not_found()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and (subresource != "status" or not resource.status):
            raise _not_found()
        if resource.namespaced and name is not None and namespace is None:
            raise _not_found()
        return Call(
            resource=resource,
            namespace=namespace,
            name=name,
            subresource=subresource,
            query=query,
            content_type=headers.get("content-type", "application/json"),
            user_agent=headers.get("user-agent", ""),
            as_table=wants_table(headers.get("accept", "")),
            body=body,
        )

    async def _verb(self, method: str, call: Call) -> Answer:
        handlers = self.handlers
        collection = call.name is None
        if method == "GET":
            return await (handlers.list(call) if collection else handlers.get(call))
        if method == "POST" and collection:
            if call.resource.namespaced and call.namespace is None:
                raise _method_not_allowed(method)
            return await handlers.create(call)
        if method == "PUT" and not collection:
            return await handlers.replace(call)
        if method == "PATCH" and not collection:
            return await handlers.patch(call)
        if method == "DELETE" and not collection and call.subresource is None:
            return await handlers.delete(call)
        raise _method_not_allowed(method)

    async def _watch(self, call: Call, receive: Receive, send: Send) -> None:
        """Stream the watch's events (:mod:`.watch`); every 400 is answered before the stream
        starts, later failures end it with an ERROR event."""
        after = start_revision(call)
        self.handlers.selector(call)
        timeout = positive_int(call.query, "timeoutSeconds")
        await _start(send, 200, "application/json")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
            if call.flag("allowWatchBookmarks"):
                nursery.start_soon(
                    heartbeats, self.handlers.objects, call.resource, self.bookmark_interval
                )
            with trio.move_on_after(timeout or math.inf):
                try:
                    async with aclosing(watch_events(self.handlers, call, after)) as events:
                        async for event in events:
                            await _chunk(send, event)
                            if event["type"] == "ERROR":
                                break
                except (KubeError, StorageError) as exc:
                    error = exc if isinstance(exc, KubeError) else _unavailable(exc)
                    await _chunk(send, {"type": "ERROR", "object": error.status()})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()


def _unavailable(exc: StorageError) -> KubeError:
    return KubeError(503, "ServiceUnavailable", f"etcd failed: {exc}")


async def _chunk(send: Send, event: Obj) -> None:
    line = json.dumps(event).encode() + b"\n"
    await send({"type": "http.response.body", "body": line, "more_body": True})


def _or_404(document: Obj | None) -> Obj:
    if document is None:
        raise _not_found()
    return document


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


class _ClientGoneError(Exception):
    """The client went away before its request's body was read."""


async def _read_body(receive: Receive) -> bytes:
    """The whole body; 413 past :data:`MAX_BODY`, once the rest was read and dropped (up to
    :data:`MAX_DRAINED`), so the client hears the answer after sending all it meant to."""
    body = bytearray()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            body += chunk
        if not message.get("more_body") or size > MAX_DRAINED:
            break
    if size > MAX_BODY:
        raise KubeError(413, "RequestEntityTooLarge", f"the request body is over {MAX_BODY} bytes")
    return bytes(body)


async def _start(
    send: Send, status: int, content_type: str, warnings: tuple[str, ...] = ()
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache, private")]
    for warning in warnings:  # RFC 7234: a quoted string
        text = warning.replace("\\", "\\\\").replace('"', '\\"')
        headers.append((b"warning", f'299 - "{text}"'.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _answer(
    send: Send, status: int, body: Obj | None, *, text: bytes = b"", warnings: tuple[str, ...] = ()
) -> None:
    if body is not None:
        await _start(send, status, "application/json", warnings)
        payload = json.dumps(body).encode()
    else:
        await _start(send, status, "text/plain; charset=utf-8")
        payload = text
    await send({"type": "http.response.body", "body": payload, "more_body": False})
