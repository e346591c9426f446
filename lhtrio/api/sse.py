"""Watch streams as server-sent events, sans-I/O: what a watch asks for and what each message says.

A watch (``GET /v1/watch?kind=KIND`` or ``?watch=true`` on a collection) is a ``text/event-stream``
whose messages carry Kubernetes' watch events::

    id: 42
    event: MODIFIED
    data: {"type": "MODIFIED", "object": {"apiVersion": "lhtrio.io/v1", "kind": "Volume", ...}}

* ``id`` is the store revision of the change: a client that reconnects with ``Last-Event-ID``
  (browsers' ``EventSource`` does it by itself) or ``?resourceVersion=`` gets every change after
  it, nothing twice, nothing missed.
* Without a revision, the stream starts with the objects as they are (``ADDED``, without ``id``:
  a stream cut in the middle of them cannot be resumed from one of them), then one ``BOOKMARK``
  whose ``id`` is the revision they were read at, then the changes after it.
* ``ERROR`` carries a Kubernetes ``Status`` (``{"kind": "Status", "code": 410, "reason":
  "Gone", ...}`` for a revision the store no longer keeps: list again and watch from the list's
  revision; 503 for a store that failed) and the stream ends.
* A comment line (``: keep-alive``) goes out every :data:`KEEPALIVE` seconds of silence, so
  proxies do not cut an idle stream.

**Filters** (a collection's, :func:`lhtrio.api.query.collection_filter`) follow Kubernetes' rule,
kept by a :class:`View` per stream: the client is told about the objects that match, and an
object that comes to match is ``ADDED``, one that stops matching ``DELETED`` (with the object as
it is now), whatever the store's own event was. A stream resumed from a revision cannot know
which objects its client holds: an object it has not told of yet is told as the store says when
it matches, and with ``DELETED`` once when it does not (a watcher ignores the deletion of an
object it did not hold).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from lhtrio.api.problems import FieldError
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.codec import API_VERSION

__all__ = [
    "COLLECTIONS",
    "KEEPALIVE",
    "KEEPALIVE_LINE",
    "View",
    "bookmark",
    "error_message",
    "message",
    "parse_revision",
    "watch_event",
]

#: Seconds of silence after which a comment line is sent.
KEEPALIVE: Final = 15.0
KEEPALIVE_LINE: Final = b": keep-alive\n\n"

#: The collections that take ``?watch=true``, and the kind each holds.
COLLECTIONS: Final = {
    "/v1/volumes": "Volume",
    "/v1/nodes": "Node",
    "/v1/settings": "Setting",
    "/v1/replicas": "Replica",
    "/v1/engines": "Engine",
    "/v1/volumeattachments": "VolumeAttachment",
    "/v1/events": "Event",
}

_MAX_REVISION: Final = 2**63 - 1


def parse_revision(text: str, *, field: str) -> int:
    """A revision given by a client (``resourceVersion`` or ``Last-Event-ID``): a decimal
    number; FieldError (400) otherwise."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _MAX_REVISION:
        raise FieldError(field, f"{field} must be a store revision (a number), not {text!r}")
    return int(text)


def message(event: str, data: object, *, revision: int | None = None) -> bytes:
    """One server-sent event: ``id`` (when given), ``event``, one ``data`` line of JSON."""
    head = f"id: {revision}\n" if revision is not None else ""
    body = json.dumps(data, separators=(",", ":"))  # one line: JSON escapes every newline
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def watch_event(kind: str, document: object, *, revision: int | None) -> bytes:
    """A change (``ADDED``, ``MODIFIED``, ``DELETED``) of ``document``."""
    return message(kind, {"type": kind, "object": document}, revision=revision)


def bookmark(kind: str, revision: int) -> bytes:
    """Kubernetes' ``BOOKMARK``: the stream has told everything of ``kind`` up to ``revision``."""
    document = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"resourceVersion": str(revision)},
    }
    return message("BOOKMARK", {"type": "BOOKMARK", "object": document}, revision=revision)


def error_message(code: int, reason: str, text: str) -> bytes:
    """``ERROR`` with a Kubernetes ``Status``; the stream ends after it."""
    status = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": text,
    }
    return message("ERROR", {"type": "ERROR", "object": status})


def _name(document: Document) -> str:
    metadata = document.get("metadata")
    return str(metadata.get("name")) if isinstance(metadata, dict) else ""


class View:
    """What one stream tells its client of the kind it watches (see "Filters" in the module
    docstring). ``keep``: the filter (None: every object, each event as the store says it);
    ``resumed``: the stream starts from a revision, not from a list of the objects."""

    def __init__(self, keep: Callable[[Document], bool] | None, *, resumed: bool) -> None:
        self._keep = keep
        self._resumed = resumed
        #: name -> whether the client holds it (a name missing: not held; resumed: unknown);
        #: a deleted object's name goes, so this holds at most the kind's objects
        self._held: dict[str, bool] = {}

    def listed(self, document: Document) -> bytes | None:
        """The message of an object as listed at the start (None: the filter drops it)."""
        if self._keep is None:
            return watch_event("ADDED", document, revision=None)
        if not self._keep(document):
            return None
        self._held[_name(document)] = True
        return watch_event("ADDED", document, revision=None)

    def change(self, kind: str, document: Document, revision: int) -> bytes | None:
        """The message of the store's event ``kind`` (``ADDED``, ``MODIFIED``, ``DELETED``) of
        ``document`` at ``revision``; None when the client is told nothing."""
        if self._keep is None:
            return watch_event(kind, document, revision=revision)
        name = _name(document)
        held = self._held.get(name, None if self._resumed else False)
        told: str | None
        if kind == "DELETED":
            told = None if held is False else "DELETED"
            self._held.pop(name, None)  # gone: if it comes back, it is ADDED
        elif self._keep(document):
            told = kind if held is None else ("MODIFIED" if held else "ADDED")
            self._held[name] = True
        else:
            # never told of (or just created): nothing; held, or maybe held: it leaves the view
            told = None if held is False or (held is None and kind == "ADDED") else "DELETED"
            if self._resumed:
                self._held[name] = False  # known now: not held
            else:
                self._held.pop(name, None)  # (not held is what a missing name means)
        return None if told is None else watch_event(told, document, revision=revision)
