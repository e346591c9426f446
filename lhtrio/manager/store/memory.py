"""The store in memory: one process, nothing kept. For tests (reconcilers under trio's autojump
clock) and anything that needs the store's contract without a file. The rules are
:mod:`lhtrio.manager.store.rules`, as for every backend."""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from lhtrio.errors import GoneError, NotFoundError
from lhtrio.manager.store import rules
from lhtrio.manager.store.api import Document, Listing, WatchEvent

__all__ = ["MemoryStore"]

#: Changes kept for watches to resume from.
KEEP = 10_000


def _revision(event: WatchEvent) -> int:
    return event.revision


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MemoryStore:
    """:class:`~lhtrio.manager.store.api.Store` in memory (see the module docstring)."""

    def __init__(self, *, keep: int = KEEP, clock: Callable[[], dt.datetime] = _now) -> None:
        self._objects: dict[tuple[str, str], Document] = {}
        self._log: list[WatchEvent] = []
        self._keep = keep
        self._clock = clock
        self._revision = 0
        self._compacted = 0
        self._changed = trio.Event()

    @property
    def revision(self) -> int:
        return self._revision

    async def get(self, kind: str, name: str) -> Document:
        await trio.lowlevel.checkpoint()
        found = self._objects.get(rules.check_key(kind, name))
        if found is None:
            raise NotFoundError(f"{kind} {name!r} does not exist")
        return copy.deepcopy(found)

    async def list(self, kind: str) -> Listing:
        await trio.lowlevel.checkpoint()
        rules.check_key(kind, "x")
        documents = [copy.deepcopy(d) for (k, _), d in sorted(self._objects.items()) if k == kind]
        return Listing(documents, self._revision)

    async def create(self, document: Document) -> Document:
        await trio.lowlevel.checkpoint()
        key = rules.key(document)
        change = rules.create(
            self._objects.get(key),
            document,
            revision=self._revision + 1,
            uid=str(uuid.uuid4()),
            now=self._clock(),
        )
        return self._apply(key, change)

    async def update(self, document: Document) -> Document:
        await trio.lowlevel.checkpoint()
        key = rules.key(document)
        change = rules.update(self._objects.get(key), document, revision=self._revision + 1)
        return self._apply(key, change)

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        await trio.lowlevel.checkpoint()
        key = rules.check_key(kind, name)
        change = rules.delete(
            self._objects.get(key),
            kind,
            name,
            resource_version=resource_version,
            revision=self._revision + 1,
            now=self._clock(),
        )
        self._apply(key, change)
        return None if change.stored is None else copy.deepcopy(change.stored)

    def _apply(self, key: tuple[str, str], change: rules.Change) -> Document:
        """Keep ``change``; the document as stored (or as last seen, when it went away)."""
        event = change.event
        if event is not None:
            self._revision = event.revision
            if change.stored is None:
                self._objects.pop(key, None)
            else:
                self._objects[key] = change.stored
            self._log.append(event)
            if len(self._log) > self._keep:
                self._compacted = self._log[-self._keep - 1].revision
                del self._log[: -self._keep]
            self._changed.set()
            self._changed = trio.Event()
            return copy.deepcopy(change.stored if change.stored is not None else event.document)
        assert change.stored is not None  # no event: nothing changed, the object is there
        return copy.deepcopy(change.stored)

    async def compact(self, revision: int) -> None:
        await trio.lowlevel.checkpoint()
        self._compacted = max(self._compacted, min(revision, self._revision))
        self._log = [e for e in self._log if e.revision > self._compacted]

    def watch(
        self, kind: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        return self._watch(kind, revision)

    @asynccontextmanager
    async def _watch(self, kind: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        rules.check_key(kind, "x")
        if revision < self._compacted:
            raise GoneError(
                f"revision {revision} was compacted (the store keeps changes after "
                f"{self._compacted}): list {kind} again and watch from the list's revision"
            )
        events = self._events(kind, revision)
        try:
            yield events
        finally:
            await events.aclose()  # the block may leave mid-iteration

    async def _events(self, kind: str, revision: int) -> AsyncGenerator[WatchEvent, None]:
        seen = revision
        while True:
            if seen < self._compacted:
                raise GoneError(f"the watch of {kind} fell behind revision {self._compacted}")
            fresh = self._log[bisect.bisect_right(self._log, seen, key=_revision) :]
            for event in fresh:
                seen = event.revision
                if event.document.get("kind") == kind:
                    yield WatchEvent(event.type, copy.deepcopy(event.document), event.revision)
            if not fresh:
                await self._changed.wait()
