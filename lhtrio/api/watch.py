"""Watch streams: ``GET /v1/watch?kind=KIND`` and ``?watch=true`` on every collection.

What a stream says is :mod:`lhtrio.api.sse`'s; this module runs it.

**Who owns what.** A stream's response body is an async generator that quart iterates in the
request's task; it cannot wait on the store's watch itself (cancelling a wait inside an async
generator ends the generator, and the keep-alive needs exactly such a timeout). So each stream
has a *feeder*: a task that tells the objects listed, watches the store and sends each message
into a small memory channel; the body only receives from the channel, with a timeout for the
keep-alive. Feeders belong to the :class:`WatchHub`, whose nursery
:func:`~lhtrio.api.server.serve_api` runs beside hypercorn, never to a request.

**Starting.** The request lists the kind (or checks the revision it resumes from) before it
answers, so a store that fails is a 503 and a bad filter or revision a 400, as for a list; the
feeder watches from the listing's revision. A collection's watch keeps what its list keeps
(:func:`lhtrio.api.query.collection_filter`, each document read into its object to be tested;
an unfiltered watch reads nothing), told as :class:`lhtrio.api.sse.View` says. The listing is
held until the body starts.

**Endings.** A feeder starts when quart starts sending the body, so a client gone before that
leaves nothing behind. The client goes away: quart cancels the body, whose ``finally`` cancels
its feeder. The feeder ends (an ``ERROR``: the revision is gone, the store failed): it closes
the channel and the body ends the response. The server stops gracefully:
:meth:`WatchHub.close` cancels every feeder, so every stream ends at once and hypercorn's
graceful stop does not wait for them; a watch asked for after that is refused (503). A slow
client holds its feeder back (the channel is bounded), and a feeder that falls behind the
store's kept changes tells the client 410.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final

import trio
from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api import sse
from lhtrio.api.problems import FieldError, HttpError, Problem
from lhtrio.api.query import collection_filter
from lhtrio.errors import GoneError, LhtrioError
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Document, Listing, Store
from lhtrio.manager.store.codec import KINDS, from_document

__all__ = ["WatchHub", "add_watch_routes"]

logger = logging.getLogger(__name__)

#: Messages a feeder may be ahead of its client.
BACKLOG: Final = 64

#: Where a feeder starts: the objects listed (told first), or the revision a client resumes from.
Start = Listing | int


class WatchHub:
    """The feeders of the open watch streams (see the module docstring): they run in
    :meth:`run`'s nursery."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self.closed = False

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the feeders until :meth:`close` (or cancellation); started at once."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def close(self) -> None:
        """End every stream now, and refuse new ones."""
        self.closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def check_open(self) -> None:
        """Refuse (503) while the hub does not run."""
        if self.closed or self._nursery is None:
            raise HttpError(
                Problem(
                    status=503,
                    code="ShuttingDown",
                    message="the API is not serving watches now (shutting down): "
                    "watch another node, or again later",
                )
            )

    async def open(
        self, store: Store, kind: str, start: Start, view: sse.View
    ) -> tuple[trio.MemoryReceiveChannel[bytes], trio.CancelScope]:
        """A started feeder of ``kind`` from ``start``, telling what ``view`` says: its
        messages, and the scope that stops it."""
        self.check_open()
        assert self._nursery is not None
        send, receive = trio.open_memory_channel[bytes](BACKLOG)
        scope: trio.CancelScope = await self._nursery.start(
            functools.partial(_feed, store, kind, start=start, view=view, send=send)
        )
        return receive, scope


async def _feed(
    store: Store,
    kind: str,
    *,
    start: Start,
    view: sse.View,
    send: trio.MemorySendChannel[bytes],
    task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope() as scope:
        task_status.started(scope)
        async with send:
            try:
                await _relay(store, kind, start, view, send)
            except trio.BrokenResourceError:
                pass  # the client went away
            except GoneError as exc:
                await _last(send, sse.error_message(410, "Gone", exc.message))
            except LhtrioError as exc:
                await _last(send, sse.error_message(503, "StoreUnavailable", exc.message))
            except Exception as exc:
                logger.exception("the watch of %s failed", kind)
                await _last(send, sse.error_message(500, "Internal", f"the watch failed: {exc!r}"))


async def _last(send: trio.MemorySendChannel[bytes], data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError):  # the client went away
        await send.send(data)


async def _relay(
    store: Store, kind: str, start: Start, view: sse.View, send: trio.MemorySendChannel[bytes]
) -> None:
    if isinstance(start, int):
        since = start
    else:
        for document in start.documents:
            if (data := view.listed(document)) is not None:
                await send.send(data)
        since = start.revision
    async with store.watch(kind, since) as events:
        await send.send(sse.bookmark(kind, since))
        async for event in events:
            data = view.change(event.type.value, event.document, event.revision)
            if data is not None:
                await send.send(data)


async def _body(
    hub: WatchHub, store: Store, kind: str, start: Start, view: sse.View
) -> AsyncIterator[bytes]:
    """The response's body: its feeder starts when quart starts sending it (a client gone before
    that leaves nothing behind), and stops when the body does, however it does."""
    if hub.closed:
        return  # stopped since the request was checked: an empty stream
    receive, feeder = await hub.open(store, kind, start, view)
    try:
        async with receive:
            while True:
                with trio.move_on_after(sse.KEEPALIVE) as idle:
                    try:
                        data = await receive.receive()
                    except trio.EndOfChannel:
                        return
                if idle.cancelled_caught:
                    yield sse.KEEPALIVE_LINE
                else:
                    yield data
    finally:
        feeder.cancel()


def _since(args: Mapping[str, str]) -> tuple[int | None, str]:
    """Where the client resumes, and what said so: ``Last-Event-ID`` (the newest it saw), else
    ``?resourceVersion=``, else nowhere (list first)."""
    last = request.headers.get("Last-Event-ID")
    if last:
        return sse.parse_revision(last.strip(), field="Last-Event-ID"), "Last-Event-ID"
    given = args.get("resourceVersion")
    if given is not None:
        return sse.parse_revision(given, field="resourceVersion"), "resourceVersion"
    return None, ""


def _document_filter(path: str, kind: str) -> Callable[[Document], bool] | None:
    """The filter of collection ``path``'s watch (its list's, by the request's parameters), on
    documents of ``kind``; None without one."""
    keep = collection_filter(path, request.args)
    if keep is None:
        return None
    held = KINDS[kind]
    return lambda document: keep(from_document(held, document))


def add_watch_routes(app: QuartTrio, objects: Objects, hub: WatchHub | None) -> None:
    """``GET /v1/watch`` and ``?watch=true`` on the collections, fed by ``hub`` (None: every
    watch is refused with 503)."""

    async def stream(kind: str, keep: Callable[[Document], bool] | None) -> Response:
        since, field = _since(request.args)
        listing = await objects.store.list(kind)  # a store that fails: 503, as for a list
        if since is not None and since > listing.revision:
            raise FieldError(
                field,
                f"{field} {since} is newer than the store's revision ({listing.revision}): "
                "watch from a revision the API gave you",
            )
        if hub is None:
            raise HttpError(
                Problem(status=503, code="Unavailable", message="this API serves no watches")
            )
        hub.check_open()
        start: Start = listing if since is None else since
        view = sse.View(keep, resumed=since is not None)
        response = Response(
            _body(hub, objects.store, kind, start, view),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        response.timeout = None  # a stream lasts as long as its client wants it
        return response

    @app.get("/v1/watch")
    async def watch() -> Response:
        kind = request.args.get("kind")
        if kind is None or kind not in KINDS:
            raise FieldError(
                "kind", f"kind must be one of {', '.join(sorted(KINDS))}, not {kind!r}"
            )
        return await stream(kind, None)

    @app.before_request
    async def watch_collection() -> Response | None:
        flag = request.args.get("watch")
        if request.method != "GET" or flag is None or request.path not in sse.COLLECTIONS:
            return None
        if flag in ("false", "0"):
            return None
        if flag not in ("true", "1", ""):
            raise FieldError("watch", f"watch must be true or false, not {flag!r}")
        kind = sse.COLLECTIONS[request.path]
        return await stream(kind, _document_filter(request.path, kind))
