"""The store in memory: one process, nothing kept. For tests (reconcilers under trio's autojump
clock), the simulator, and anything that needs the store's contract without a file. The rules are
:mod:`lhtrio.manager.store.rules`, as for every backend.

The simulator keeps 30,000 replicas of 10,000 volumes in one store, and every volume's reconciler
reads its own: so a list costs what it answers, not what the store holds. Objects are kept by
kind, each kind's names in order (a sorted list, kept by bisection), and a label index
(kind, label key, value) -> names answers a label selector from its smallest set, checking the
other labels on those objects only: O(matches), not O(objects). What the store hands out (gets,
lists, watch events, written objects) is a copy, callers may change it; the copy is
:func:`~lhtrio.manager.store.rules.copy_document`, not ``copy.deepcopy`` (4-5 times slower, and
once half of the simulator's time).
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
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
        self._objects: dict[str, dict[str, Document]] = {}  # kind -> name -> document
        self._names: dict[str, list[str]] = {}  # kind -> its names, sorted
        self._index: dict[tuple[str, str, str], set[str]] = {}  # (kind, key, value) -> names
        self._log: list[WatchEvent] = []
        self._keep = keep
        self._clock = clock
        self._revision = 0
        self._compacted = 0
        #: the log's changes by kind, and a wake-up per kind: a watch wakes for its own kind
        self._kind_log: dict[str, list[WatchEvent]] = {}
        self._kind_changed: dict[str, trio.Event] = {}
        #: the newest revision of a change of each kind dropped from its log
        self._kind_dropped: dict[str, int] = {}

    @property
    def revision(self) -> int:
        return self._revision

    def last_change(self, kind: str) -> int:
        """The revision of the newest change of ``kind`` (0: none yet): a watch of ``kind`` has
        seen every change once it has seen this revision (the simulator waits for one so)."""
        log = self._kind_log.get(kind)
        return log[-1].revision if log else self._kind_dropped.get(kind, 0)

    def _current(self, key: tuple[str, str]) -> Document | None:
        return self._objects.get(key[0], {}).get(key[1])

    async def get(self, kind: str, name: str) -> Document:
        await trio.lowlevel.checkpoint()
        found = self._current(rules.check_key(kind, name))
        if found is None:
            raise NotFoundError(f"{kind} {name!r} does not exist")
        return rules.copy_document(found)

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        await trio.lowlevel.checkpoint()
        rules.check_key(kind, "x")
        selector = rules.check_labels(labels)
        objects = self._objects.get(kind, {})
        if not selector:
            names: list[str] = self._names.get(kind, [])
        else:
            sets = [self._index.get((kind, k, v), set()) for k, v in selector.items()]
            smallest = min(sets, key=len)
            names = sorted(n for n in smallest if rules.selects(selector, objects[n]))
        copy = rules.copy_document
        return Listing([copy(objects[n]) for n in names], self._revision)

    async def create(self, document: Document) -> Document:
        await trio.lowlevel.checkpoint()
        key = rules.key(document)
        change = rules.create(
            self._current(key),
            document,
            revision=self._revision + 1,
            uid=str(uuid.uuid4()),
            now=self._clock(),
        )
        return self._apply(key, change)

    async def update(self, document: Document) -> Document:
        await trio.lowlevel.checkpoint()
        key = rules.key(document)
        change = rules.update(self._current(key), document, revision=self._revision + 1)
        return self._apply(key, change)

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        await trio.lowlevel.checkpoint()
        key = rules.check_key(kind, name)
        change = rules.delete(
            self._current(key),
            kind,
            name,
            resource_version=resource_version,
            revision=self._revision + 1,
            now=self._clock(),
        )
        self._apply(key, change)
        return None if change.stored is None else rules.copy_document(change.stored)

    def _apply(self, key: tuple[str, str], change: rules.Change) -> Document:
        """Keep ``change``; the document as stored (or as last seen, when it went away)."""
        event = change.event
        if event is not None:
            self._revision = event.revision
            self._keep_object(key, change.stored)
            self._log.append(event)
            kind = key[0]
            self._kind_log.setdefault(kind, []).append(event)
            if len(self._log) > self._keep:
                self._compacted = self._log[-self._keep - 1].revision
                del self._log[: -self._keep]
                self._trim()
            changed = self._kind_changed.pop(kind, None)
            if changed is not None:
                changed.set()
            stored = change.stored if change.stored is not None else event.document
            return rules.copy_document(stored)
        assert change.stored is not None  # no event: nothing changed, the object is there
        return rules.copy_document(change.stored)

    def _keep_object(self, key: tuple[str, str], stored: Document | None) -> None:
        """Put ``stored`` (None: nothing) in place of the object ``key``, names and index too."""
        kind, name = key
        objects = self._objects.setdefault(kind, {})
        old = objects.pop(name, None)
        if old is not None:
            for label in rules.labels_of(old).items():
                names = self._index[(kind, *label)]
                names.discard(name)
                if not names:
                    del self._index[(kind, *label)]
        if stored is None:
            if old is not None:
                sorted_names = self._names[kind]
                del sorted_names[bisect.bisect_left(sorted_names, name)]
            return
        objects[name] = stored
        if old is None:
            bisect.insort(self._names.setdefault(kind, []), name)
        for label in rules.labels_of(stored).items():
            self._index.setdefault((kind, *label), set()).add(name)

    async def compact(self, revision: int) -> None:
        await trio.lowlevel.checkpoint()
        self._compacted = max(self._compacted, min(revision, self._revision))
        self._log = [e for e in self._log if e.revision > self._compacted]
        self._trim()

    def _trim(self) -> None:
        for kind, log in self._kind_log.items():
            end = bisect.bisect_right(log, self._compacted, key=_revision)
            if end:
                self._kind_dropped[kind] = log[end - 1].revision
                del log[:end]

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
            if seen < self._kind_dropped.get(kind, 0):
                raise GoneError(f"the watch of {kind} fell behind revision {self._compacted}")
            log, upto = self._kind_log.get(kind, []), self._revision
            fresh = log[bisect.bisect_right(log, seen, key=_revision) :]
            for event in fresh:
                seen = event.revision
                document = rules.copy_document(event.document)
                yield WatchEvent(event.type, document, event.revision)
            seen = max(seen, upto)  # (every change of the kind up to then was in the log)
            if not fresh:
                changed = self._kind_changed.get(kind)
                if changed is None:
                    changed = self._kind_changed[kind] = trio.Event()
                await changed.wait()
