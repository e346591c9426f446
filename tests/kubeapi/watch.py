"""Watches: ``GET ...?watch=true`` answered as newline-delimited JSON events (``{"type":
"ADDED", "object": {...}}``), for as long as the client stays, ``timeoutSeconds`` runs, or etcd
keeps the watch.

* ``resourceVersion`` unset or ``0``: the current objects first, as ADDED, then every change
  after the revision they were read at; ``N``: every change after revision N. A revision etcd
  compacted is an ``ERROR`` event whose object is a 410 ``Expired`` Status, after which the
  stream ends (the client lists again).
* Namespaces and label/field selectors filter events; an object that starts or stops matching
  is ADDED or DELETED, as from the real server.
* ``allowWatchBookmarks=true``: a ``BOOKMARK`` event (an object holding nothing but
  ``metadata.resourceVersion``) each time a heartbeat comes through etcd (:mod:`.etcd` says why
  heartbeats); :func:`heartbeats` writes them every ``interval`` seconds while the watch lasts.
* ``Accept: ...;as=Table``: each event's object is a one-row Table (``kubectl get -w``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import trio

from tests.kubeapi.etcd import CompactedError, EtcdObjects
from tests.kubeapi.handlers import Call, Handlers, _as_version, positive_int
from tests.kubeapi.resources import Resource
from tests.kubeapi.status import Obj, bad_request, gone
from tests.kubeapi.table import table

__all__ = ["heartbeats", "start_revision", "watch_events"]


def start_revision(call: Call) -> int | None:
    """The revision to watch after (None: send the current objects first); 400 if it is not
    a revision."""
    if call.query.get("sendInitialEvents"):
        raise bad_request("sendInitialEvents is not supported by this server: list, then watch")
    text = call.query.get("resourceVersion", "")
    if text in {"", "0"}:
        return None
    if not text.isdigit():
        raise bad_request(f'invalid resourceVersion for a watch: "{text}"')
    return int(text)


async def heartbeats(objects: EtcdObjects, resource: Resource, interval: float) -> None:
    """Write the resource's heartbeat every ``interval`` seconds, until cancelled."""
    while True:
        await trio.sleep(interval)
        await objects.heartbeat(resource)


def _event(call: Call, kind: str, obj: Obj, handlers: Handlers) -> Obj:
    obj = _as_version(call.resource, obj)
    if call.as_table:
        revision = obj["metadata"].get("resourceVersion", "")
        shown: Any = table(
            call.resource,
            [obj],
            revision=revision,
            moment=handlers.clock(),
            include_object=call.query.get("includeObject", "Metadata"),
        )
    else:
        shown = obj
    return {"type": kind, "object": shown}


async def watch_events(
    handlers: Handlers, call: Call, after: int | None
) -> AsyncGenerator[Obj, None]:
    """The watch's events (see the module docstring), until etcd ends the watch."""
    matches = handlers.selector(call)
    namespace, name = call.namespace, call.name  # a name: a watch of one object by its path
    bookmarks = call.flag("allowWatchBookmarks") and not call.as_table
    positive_int(call.query, "timeoutSeconds")

    def inside(obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj["metadata"]
        return (
            namespace in {None, meta.get("namespace")}
            and name in {None, meta.get("name")}
            and matches(obj)
        )

    if after is None:
        page = await handlers.objects.page(call.resource, namespace)
        for obj in page.objects:
            if inside(obj):
                yield _event(call, "ADDED", obj, handlers)
        after = page.revision
    try:
        async with contextlib.aclosing(handlers.objects.watch(call.resource, after)) as events:
            async for event in events:
                if event.type == "BOOKMARK":
                    if bookmarks:
                        yield {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": call.resource.kind,
                                "apiVersion": call.resource.api_version,
                                "metadata": {"resourceVersion": str(event.revision)},
                            },
                        }
                    continue
                assert event.obj is not None
                now, before = inside(event.obj), inside(event.prev)
                if event.type == "DELETED":
                    kind = "DELETED" if now else ""
                elif now:
                    kind = "MODIFIED" if before else "ADDED"
                else:
                    kind = "DELETED" if before else ""
                if kind:
                    yield _event(call, kind, event.obj, handlers)
    except CompactedError as exc:
        behind = f" ({exc.compacted})" if exc.compacted else ""
        yield {
            "type": "ERROR",
            "object": gone(f"too old resource version: {exc.asked}{behind}").status(),
        }
