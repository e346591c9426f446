"""An auditing proxy in front of the Kubernetes API double: it forwards every byte both ways and
notes each request's verb on each resource, as the API server's RBAC sees it (``get``, ``list``,
``watch``, ``create``, ``update``, ``patch``, ``delete``, ``deletecollection`` on
``(group, resource)``, a subresource as ``resource/status``). The end-to-end scenario runs every
lhtrio process through it, so the test can hold what they used against deploy/rbac.yaml's Role.

Requests are read with h11 (the client's half of each connection only: one h11 connection per
request, the bytes after one request starting the next).
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio

from tests.manager.tcp_proxy import pipe

__all__ = ["Audit", "open_audit", "verb_of"]

Use = tuple[str, str, str]  # (group, resource, verb)


def verb_of(method: str, target: str) -> Use | None:
    """What ``method target`` asks of which resource; None for what is no resource
    (discovery, /version, OpenAPI)."""
    url = urllib.parse.urlsplit(target)
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if not rest:
        return None
    resource, name, sub = rest[0], rest[1:2], rest[2:3]
    if sub:
        resource = f"{resource}/{sub[0]}"
    query = urllib.parse.parse_qs(url.query)
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") == ["true"] else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return group, resource, verb


class Audit:
    """What went through (:attr:`used`), and the proxy's address."""

    def __init__(self, nursery: trio.Nursery, target: tuple[str, int]) -> None:
        self._nursery = nursery
        self._target = target
        self.used: set[Use] = set()
        self.unreadable = 0  # connections whose requests h11 could not read
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._forward, listeners)

    async def _forward(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self._target)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as pair:
            pair.start_soon(functools.partial(self._requests, client, upstream, pair))
            pair.start_soon(functools.partial(pipe, upstream, client, pair))

    async def _requests(
        self, source: trio.SocketStream, sink: trio.SocketStream, pair: trio.Nursery
    ) -> None:
        http: h11.Connection | None = h11.Connection(h11.SERVER)
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
                if http is not None:
                    http.receive_data(data)
                    try:
                        http = self._note(http)
                    except h11.ProtocolError:
                        self.unreadable += 1
                        http = None  # forwarded still, no longer read
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pair.cancel_scope.cancel()

    def _note(self, http: h11.Connection) -> h11.Connection:
        """Every request complete in ``http``'s buffer noted; the connection to go on with."""
        while True:
            event = http.next_event()
            if isinstance(event, h11.Request):
                use = verb_of(event.method.decode(), event.target.decode())
                if use is not None:
                    self.used.add(use)
            elif isinstance(event, h11.EndOfMessage):
                after = h11.Connection(h11.SERVER)
                if http.trailing_data[0]:  # (receiving b"" would say the connection ended)
                    after.receive_data(http.trailing_data[0])
                http = after
            elif (
                event is h11.NEED_DATA
                or event is h11.PAUSED
                or isinstance(event, h11.ConnectionClosed)
            ):
                return http


@asynccontextmanager
async def open_audit(target: tuple[str, int]) -> AsyncIterator[Audit]:
    """An auditing proxy to ``target``, serving until the block ends."""
    async with trio.open_nursery() as nursery:
        audit = Audit(nursery, target)
        await nursery.start(audit.serve)
        yield audit
        nursery.cancel_scope.cancel()
