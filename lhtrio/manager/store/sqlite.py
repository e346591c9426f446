"""The embedded store: one SQLite file (stdlib, WAL) shared by every node process of one host.

Nothing to install or run: ``lhtrio node --store sqlite:PATH`` on each node of a host points at
the same file. The rules are :mod:`lhtrio.manager.store.rules`, applied inside one ``BEGIN
IMMEDIATE`` transaction per change (SQLite lets one writer at a time in; other processes wait up
to :data:`BUSY_TIMEOUT`), so two processes updating one object from the same version get one
success and one ConflictError, never a lost update.

Tables: ``objects`` (kind, name → revision, document; indexed by the labels of
:data:`INDEXED_LABELS` too), ``changes`` (the change log: revision →
kind, name, type, document; what watches read) and ``meta`` (the next revision and the compacted
one). Commits are ``synchronous=FULL``: a change the store acknowledged survives a power cut.

**Label selectors** are SQL: each label is ``json_extract(document, '$.metadata.labels."KEY"')
= ?`` (or, for a key with characters a JSON path literal would need escaped, a ``json_each``
of the labels), so rows that do not match are never decoded. The labels replicas and engines
are selected by (:data:`INDEXED_LABELS`) have an expression index each, which the query names
(``INDEXED BY``): without statistics SQLite would rather scan the kind by primary key. Measured
on 30,000 replicas, one volume's three: 9 µs with the index, 11 ms scanning the kind.

**Watches across processes.** SQLite has no notification, but every commit writes the
write-ahead log: a store keeps one task that waits on inotify (``inotify_simple``: a maintained
wrapper of the three syscalls) for writes to the store's WAL, from any process, looks which kinds
changed since it last looked (one query) and wakes the watchers of those kinds; a change made by
this process wakes its kind's watchers at once. A woken watcher reads the change log after its
last revision (a range scan of the primary key, in the store's worker thread). So a node's
lease renewal (a kind nobody watches) costs each process one query, not one per watcher. An idle
store costs nothing but a wake-up of every watcher every :data:`SAFETY` seconds (the net under a
missed event).
``docs/benchmarks.md`` has how long a change takes to reach another process's watch. Every query
runs in one worker thread at a time (``trio.to_thread`` with a limiter of one): the connection is
never shared between threads.
"""

from __future__ import annotations

import builtins
import datetime as dt
import functools
import json
import os
import re
import sqlite3
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, TypeVar

import trio
from inotify_simple import INotify, flags

from lhtrio.errors import CorruptMetadataError, GoneError, NotFoundError, StorageError
from lhtrio.manager.store import rules
from lhtrio.manager.store.api import Document, EventType, Listing, WatchEvent

__all__ = [
    "BUSY_TIMEOUT",
    "INDEXED_LABELS",
    "KEEP",
    "SAFETY",
    "SqliteStore",
    "open_sqlite_store",
]

#: Watchers also look for changes this often (seconds) if no write woke them (a safety net).
SAFETY: Final = 5.0
#: After a write to the WAL, watchers are woken again after these pauses (see ``_follow``).
SETTLE: Final = (0.001, 0.003, 0.01)
#: How long a writer waits for another process's transaction (seconds).
BUSY_TIMEOUT: Final = 10.0
#: Changes kept in the log for watches to resume from; older ones are compacted away.
KEEP: Final = 10_000
#: A watcher reads at most this many changes per query.
PAGE: Final = 1000

#: Label keys with an index of their own (key -> the index's name): the ones reconcilers select
#: replicas and engines by.
INDEXED_LABELS: Final = {
    "lhtrio.io/volume": "objects_by_volume",
    "lhtrio.io/node": "objects_by_node",
}
#: Label keys that can be written into a JSON path literal as they are (``"KEY"``).
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9._/-]+")


def _label_path(key: str) -> str:
    assert _PLAIN_KEY.fullmatch(key)
    return f"json_extract(document, '$.metadata.labels.\"{key}\"')"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, revision INTEGER NOT NULL, document TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
""" + "".join(
    f"CREATE INDEX IF NOT EXISTS {index} ON objects (kind, {_label_path(key)});\n"
    for key, index in INDEXED_LABELS.items()
)


def _selection(kind: str, selector: Mapping[str, str]) -> tuple[str, list[str]]:
    """The query of the objects of ``kind`` that ``selector`` selects, and its parameters."""
    indexed = [INDEXED_LABELS[k] for k in selector if k in INDEXED_LABELS]
    sql = "SELECT name, document FROM objects"
    if indexed:
        sql += f" INDEXED BY {indexed[0]}"
    sql += " WHERE kind = ?"
    parameters = [kind]
    for key, value in selector.items():
        if _PLAIN_KEY.fullmatch(key):
            sql += f" AND {_label_path(key)} = ?"
            parameters.append(value)
        else:
            sql += (
                " AND EXISTS (SELECT 1 FROM json_each(document, '$.metadata.labels')"
                " WHERE key = ? AND value = ?)"
            )
            parameters += [key, value]
    return sql + " ORDER BY name", parameters


T = TypeVar("T")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _decode(text: str, where: str) -> Document:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CorruptMetadataError(f"store: {where} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptMetadataError(f"store: {where} is not a JSON object")
    return value


def _encode(document: Document) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


class SqliteStore:
    """:class:`~lhtrio.manager.store.api.Store` in one SQLite file; get one from
    :func:`open_sqlite_store`."""

    def __init__(self, path: Path, db: sqlite3.Connection, *, clock: Callable[[], dt.datetime]):
        self.path = path
        self._db = db
        self._clock = clock
        self._limiter = trio.CapacityLimiter(1)
        self._changed: dict[str, trio.Event] = {}  # kind -> what its watchers wait on
        self._looked = 0  # the newest change the follower woke the watchers for

    # --- plumbing ----------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StorageError(f"store {self.path}: {exc}") from exc

    def _notify(self, kinds: Iterable[str] | None = None) -> None:
        """Wake the watchers of ``kinds`` (None: every watcher)."""
        for kind in list(self._changed) if kinds is None else kinds:
            event = self._changed.pop(kind, None)
            if event is not None:
                event.set()

    def _waiter(self, kind: str) -> trio.Event:
        """What a watcher of ``kind`` waits on for the next change."""
        event = self._changed.get(kind)
        if event is None:
            event = self._changed[kind] = trio.Event()
        return event

    def _kinds_changed(self) -> set[str]:
        """The kinds changed after the last look (one query: a consistent snapshot)."""
        rows = self._db.execute(
            "SELECT kind, max(revision) FROM changes WHERE revision > ? GROUP BY kind",
            (self._looked,),
        ).fetchall()
        self._looked = max([self._looked, *(int(r[1]) for r in rows)])
        return {str(r[0]) for r in rows}

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def _current(self, kind: str, name: str) -> Document | None:
        row = self._db.execute(
            "SELECT document FROM objects WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        return None if row is None else _decode(row[0], f"{kind} {name!r}")

    def _write(
        self, kind: str, name: str, make: Callable[[Document | None, int], rules.Change]
    ) -> rules.Change:
        """One change in one IMMEDIATE transaction (the rules see the current document)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            revision = self._meta("revision") + 1
            change = make(self._current(kind, name), revision)
            event = change.event
            if event is not None:
                if change.stored is None:
                    db.execute("DELETE FROM objects WHERE kind = ? AND name = ?", (kind, name))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                        (kind, name, revision, _encode(change.stored)),
                    )
                db.execute(
                    "INSERT INTO changes VALUES (?, ?, ?, ?, ?)",
                    (revision, kind, name, event.type.value, _encode(event.document)),
                )
                db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (revision,))
                if revision % 1000 == 0:
                    self._compact(revision - KEEP)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return change

    def _compact(self, revision: int) -> None:
        if revision > self._meta("compacted"):
            self._db.execute("DELETE FROM changes WHERE revision <= ?", (revision,))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'compacted'", (revision,))

    async def _change(
        self, kind: str, name: str, make: Callable[[Document | None, int], rules.Change]
    ) -> rules.Change:
        change = await self._run(lambda: self._write(kind, name, make))
        if change.event is not None:
            self._notify([kind])
        return change

    # --- the interface -------------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Document:
        rules.check_key(kind, name)
        found = await self._run(lambda: self._current(kind, name))
        if found is None:
            raise NotFoundError(f"{kind} {name!r} does not exist")
        return found

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        rules.check_key(kind, "x")
        selector = rules.check_labels(labels)
        sql, parameters = _selection(kind, selector)

        def read() -> Listing:
            db = self._db
            db.execute("BEGIN")  # one snapshot: the documents and the revision agree
            try:
                rows = db.execute(sql, parameters).fetchall()
                revision = self._meta("revision")
            finally:
                db.execute("COMMIT")
            documents = [_decode(d, f"{kind} {n!r}") for n, d in rows]
            # (SQL compares what JSON text says; a label that is not a string never matches)
            return Listing([d for d in documents if rules.selects(selector, d)], revision)

        return await self._run(read)

    async def create(self, document: Document) -> Document:
        kind, name = rules.key(document)
        uid, now = str(uuid.uuid4()), self._clock()
        change = await self._change(
            kind,
            name,
            lambda current, rev: rules.create(current, document, revision=rev, uid=uid, now=now),
        )
        assert change.stored is not None
        return change.stored

    async def update(self, document: Document) -> Document:
        kind, name = rules.key(document)
        change = await self._change(
            kind, name, lambda current, rev: rules.update(current, document, revision=rev)
        )
        if change.stored is not None:
            return change.stored
        assert change.event is not None
        return change.event.document

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        rules.check_key(kind, name)
        now = self._clock()
        change = await self._change(
            kind,
            name,
            lambda current, rev: rules.delete(
                current, kind, name, resource_version=resource_version, revision=rev, now=now
            ),
        )
        return change.stored

    async def compact(self, revision: int) -> None:
        def compact() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._compact(min(revision, self._meta("revision")))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        await self._run(compact)

    @asynccontextmanager
    async def watch(self, kind: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        rules.check_key(kind, "x")
        await self._run(lambda: self._since(kind, revision))  # GoneError now, not at the first read
        events = self._events(kind, revision)
        try:
            yield events
        finally:
            await events.aclose()  # the block may leave mid-iteration

    def _since(self, kind: str, revision: int) -> tuple[builtins.list[WatchEvent], int]:
        """Changes of ``kind`` after ``revision`` (a page), and the last revision looked at."""
        compacted = self._meta("compacted")
        if revision < compacted:
            raise GoneError(
                f"revision {revision} was compacted (the store keeps changes after "
                f"{compacted}): list {kind} again and watch from the list's revision"
            )
        rows = self._db.execute(
            "SELECT revision, kind, type, document FROM changes WHERE revision > ? "
            "ORDER BY revision LIMIT ?",
            (revision, PAGE),
        ).fetchall()
        events = [
            WatchEvent(EventType(t), _decode(d, f"change {r}"), r)
            for r, k, t, d in rows
            if k == kind
        ]
        return events, rows[-1][0] if rows else revision

    async def _events(self, kind: str, revision: int) -> AsyncGenerator[WatchEvent, None]:
        seen = revision
        while True:
            changed = self._waiter(kind)  # a change after this read wakes us
            events, last = await self._run(functools.partial(self._since, kind, seen))
            for event in events:
                yield event
            if last - seen < PAGE:
                await changed.wait()
            seen = last

    async def _follow(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wake the watchers whenever a process writes the WAL (inotify on the store's
        directory, so a WAL that is recreated is still seen), and every :data:`SAFETY` s.

        A commit becomes visible when its writer updates the WAL index (``-shm``, written
        through a memory map: no inotify event) just *after* its last WAL write: a watcher woken
        by that write may look too early. So the watchers are woken again :data:`SETTLE` seconds
        later, until the WAL has been quiet for the whole sequence.
        """
        wal = f"{self.path.name}-wal"
        with INotify() as inotify:
            inotify.add_watch(self.path.parent, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
            self._looked = await self._run(lambda: self._meta("revision"))
            task_status.started()
            settle: list[float] = []
            while True:
                with trio.move_on_after(settle[0] if settle else SAFETY) as idle:
                    await trio.lowlevel.wait_readable(inotify.fileno())
                if wal in {event.name for event in inotify.read(timeout=0)}:
                    settle = list(SETTLE)  # written: look now, and again as it settles
                elif settle:
                    settle.pop(0)
                elif not idle.cancelled_caught:
                    continue  # another file of the directory
                else:
                    self._notify()  # the safety net: every watcher looks
                    continue
                try:
                    self._notify(await self._run(self._kinds_changed))
                except StorageError:
                    self._notify()  # (the watchers will say what is wrong)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


@asynccontextmanager
async def open_sqlite_store(
    path: str | os.PathLike[str],
    *,
    clock: Callable[[], dt.datetime] = _now,
) -> AsyncIterator[SqliteStore]:
    """The store in the SQLite file ``path`` (created if missing), until the block ends."""
    where = Path(path)
    try:
        db = await trio.to_thread.run_sync(_connect, where)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the store {where}: {exc}") from exc
    store = SqliteStore(where, db, clock=clock)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store._follow)
            yield store
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(db.close, limiter=store._limiter)
