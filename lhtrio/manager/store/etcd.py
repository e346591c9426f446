"""The etcd store: desired state in etcd (v3), for nodes on several hosts without Kubernetes.

``lhtrio node --store etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`` on every node of every host
points at the same etcd cluster. The key layout, revisions and leases are described in
:mod:`lhtrio.manager.store.etcd_format`; the calls go through etcd's JSON gateway
(:mod:`lhtrio.manager.store.etcd_client`). The rules are :mod:`lhtrio.manager.store.rules`, as for
every backend; each change is one etcd transaction guarded by the revision the rules were applied
to:

* **create**: ``txn(create_revision == 0) put`` — a lost race is AlreadyExistsError;
* **update**: read, apply the rules, ``txn(mod_revision == read) put`` (or delete, when the last
  finalizer of an object being deleted goes) — a lost race is ConflictError;
* **delete**: read, apply the rules, ``txn(mod_revision == read)`` delete, or put the deletion
  request while finalizers remain; without a version from the caller a lost race is applied
  again to the newer object.

A write of a NodeLease first grants the etcd lease it is attached to (one more call).

**Watches** are etcd watches of the kind's key range from the revision after the one given,
asking for each event's previous value. Before one starts, a read *at* the given revision tells
whether etcd still has it (etcd compacted past it: GoneError). A watch whose connection drops
reconnects on its own from the revision after the last event it yielded (or the last progress
etcd reported), trying the members in turn for :data:`RECONNECT` seconds, so nothing is lost or
repeated; a revision compacted meanwhile is GoneError (etcd cancels the watch saying so).

A DELETED event carries the object as etcd last held it (the watch's previous value) at the
deletion's revision: when an update dropped the last finalizer of an object being deleted, that
is the object with its finalizer (the other backends send the update's document).

**Compaction** is etcd's: ``compact(revision)`` is etcd's compaction at that revision (at the
current one if it is newer). etcd still reads at the compacted revision itself, so a watch from
it (changes after it) starts, and a watch from any earlier one is GoneError, as the contract
says. etcd keeps every revision until something compacts it: run etcd with
``--auto-compaction-mode=revision --auto-compaction-retention=10000`` (or periodic), as
``docs/manager.md`` says.

**Errors.** etcd unreachable, or refusing a call, is StorageError (the admin API answers 503);
a value that is not a document is CorruptMetadataError.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

from lhtrio.errors import AlreadyExistsError, ConflictError, GoneError, NotFoundError, StorageError
from lhtrio.manager.store import rules
from lhtrio.manager.store.api import Document, Listing, WatchEvent
from lhtrio.manager.store.etcd_client import EtcdClient, open_etcd_client
from lhtrio.manager.store.etcd_format import (
    Json,
    compare_created,
    compare_version,
    conflict,
    decode_kv,
    delete_op,
    error_message,
    is_compacted,
    is_future,
    key_after,
    kind_range,
    lease_ttl,
    object_key,
    parse_etcd_url,
    probe_request,
    put_op,
    revision_of,
    stamp,
    watch_events,
    watch_request,
)
from lhtrio.manager.store.reconnect import Backoff

__all__ = ["PAGE", "RECONNECT", "EtcdStore", "open_etcd_store"]

#: A list reads this many objects per call.
PAGE: Final = 500
#: How long a dropped watch keeps trying to reconnect (seconds) before it fails.
RECONNECT: Final = 10.0
#: A delete without a version re-applies the rules this often after lost races.
DELETE_ATTEMPTS: Final = 10


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EtcdStore:
    """:class:`~lhtrio.manager.store.api.Store` in etcd; get one from :func:`open_etcd_store`."""

    def __init__(
        self, client: EtcdClient, prefix: str, *, clock: Callable[[], dt.datetime] = _now
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock

    # --- plumbing ----------------------------------------------------------------------------

    async def _read(self, kind: str, name: str) -> tuple[Document | None, int]:
        """The object (None) and its mod_revision (0)."""
        answer = await self.client.call("kv/range", {"key": object_key(self.prefix, kind, name)})
        kvs = answer.get("kvs")
        if not isinstance(kvs, list) or not kvs:
            return None, 0
        document = decode_kv(kvs[0])
        return document, int(str(rules.metadata(document)["resourceVersion"]))

    async def _lease(self, document: Document) -> int | None:
        """A fresh etcd lease for a write of ``document``, if its kind has one (the lease it
        replaces is attached to nothing any more and runs out by itself)."""
        ttl = lease_ttl(document)
        if ttl is None:
            return None
        granted = await self.client.call("lease/grant", {"TTL": str(ttl)})
        return int(str(granted["ID"]))

    async def _txn(self, compare: Json, *ops: Json) -> int | None:
        """Run ``ops`` if ``compare`` holds: the transaction's revision, or None if it did not."""
        answer = await self.client.call(
            "kv/txn", {"compare": [compare], "success": list(ops), "failure": []}
        )
        return revision_of(answer) if answer.get("succeeded") else None

    async def _store(self, key: str, compare: Json, change: rules.Change) -> int | None:
        """Write what the rules decided (``change.stored``; None: remove the key) if
        ``compare`` holds."""
        if change.stored is None:
            return await self._txn(compare, delete_op(key))
        lease = await self._lease(change.stored)
        return await self._txn(compare, put_op(key, change.stored, lease))

    # --- the interface -------------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Document:
        rules.check_key(kind, name)
        found, _ = await self._read(kind, name)
        if found is None:
            raise NotFoundError(f"{kind} {name!r} does not exist")
        return found

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        rules.check_key(kind, "x")
        # etcd's range reads keys, never values: a label selector reads the kind's whole range
        # and filters after decoding (the objects that do not match cost their transfer)
        selector = rules.check_labels(labels)
        start, end = kind_range(self.prefix, kind)
        while True:  # again if etcd compacted the first page's revision under the later ones
            documents: list[Document] = []
            revision = 0
            body: Json = {"key": start, "range_end": end, "limit": str(PAGE)}
            while True:
                answer = await self.client.answer("kv/range", body)
                if not answer.ok:
                    if revision and is_compacted(answer.body):
                        break
                    raise StorageError(
                        f"etcd refused a list of {kind}: {error_message(answer.body)}"
                    )
                revision = revision or revision_of(answer.body)
                kvs = answer.body.get("kvs") or []
                assert isinstance(kvs, list)
                documents.extend(d for d in map(decode_kv, kvs) if rules.selects(selector, d))
                if not answer.body.get("more") or not kvs:
                    return Listing(documents, revision)
                last = kvs[-1]["key"]
                body = {**body, "key": key_after(last), "revision": str(revision)}

    async def create(self, document: Document) -> Document:
        kind, name = rules.key(document)
        change = rules.create(None, document, revision=0, uid=str(uuid.uuid4()), now=self._clock())
        key = object_key(self.prefix, kind, name)
        revision = await self._store(key, compare_created(key), change)
        if revision is None:
            raise AlreadyExistsError(f"{kind} {name!r} exists already")
        assert change.stored is not None
        return stamp(change.stored, revision)

    async def update(self, document: Document) -> Document:
        kind, name = rules.key(document)
        current, version = await self._read(kind, name)
        change = rules.update(current, document, revision=0)
        key = object_key(self.prefix, kind, name)
        revision = await self._store(key, compare_version(key, version), change)
        if revision is None:
            raise conflict(kind, name, rules.metadata(document).get("resourceVersion"))
        assert change.event is not None
        return stamp(
            change.stored if change.stored is not None else change.event.document, revision
        )

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        rules.check_key(kind, name)
        key = object_key(self.prefix, kind, name)
        for _ in range(DELETE_ATTEMPTS):
            current, version = await self._read(kind, name)
            change = rules.delete(
                current,
                kind,
                name,
                resource_version=resource_version,
                revision=0,
                now=self._clock(),
            )
            if change.event is None:  # asked again: nothing changes
                return change.stored
            revision = await self._store(key, compare_version(key, version), change)
            if revision is not None:
                return None if change.stored is None else stamp(change.stored, revision)
            if resource_version is not None:
                raise conflict(kind, name, resource_version)
        raise ConflictError(f"{kind} {name!r} kept changing: {DELETE_ATTEMPTS} deletes lost races")

    async def compact(self, revision: int) -> None:
        while revision > 0:
            answer = await self.client.answer("kv/compaction", {"revision": str(revision)})
            if answer.ok or is_compacted(answer.body):
                return  # done, or done already
            if not is_future(answer.body):
                raise StorageError(f"etcd refused to compact: {error_message(answer.body)}")
            revision = await self._revision()

    async def _revision(self) -> int:
        """etcd's current revision (the header of a read of nothing much)."""
        return revision_of(await self.client.call("kv/range", probe_request(self.prefix)))

    def watch(
        self, kind: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        return self._watch(kind, revision)

    @asynccontextmanager
    async def _watch(self, kind: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        rules.check_key(kind, "x")
        await self._check_kept(kind, revision)  # GoneError now, not at the first read
        events = self._events(kind, revision)
        try:
            yield events
        finally:
            await events.aclose()  # the block may leave mid-iteration

    async def _check_kept(self, kind: str, revision: int) -> None:
        """GoneError if etcd compacted ``revision`` away (a read at it fails)."""
        if revision <= 0:
            return
        start, end = kind_range(self.prefix, kind)
        body: Json = {"key": start, "range_end": end, "count_only": True, "revision": str(revision)}
        answer = await self.client.answer("kv/range", body)
        if answer.ok or is_future(answer.body):
            return
        if is_compacted(answer.body):
            raise GoneError(
                f"revision {revision} was compacted (etcd keeps no changes before it): list "
                f"{kind} again and watch from the list's revision"
            )
        raise StorageError(f"etcd refused a read of {kind}: {error_message(answer.body)}")

    async def _events(self, kind: str, revision: int) -> AsyncGenerator[WatchEvent, None]:
        seen = revision
        where = f"etcd ({', '.join(self.client.endpoints)})"
        backoff = Backoff(f"the watch of {kind}", where, limit=RECONNECT)
        while True:
            try:
                stream = await self.client.open_watch(watch_request(self.prefix, kind, seen))
            except StorageError as exc:
                await backoff.wait(exc)
                continue
            results = stream.results()
            try:
                async for result in results:
                    backoff.answered(progress=not result.get("created"))
                    if result.get("compact_revision") is not None:
                        raise GoneError(
                            f"the watch of {kind} fell behind revision "
                            f"{result['compact_revision']} (etcd compacted it): list {kind} again"
                        )
                    if result.get("canceled"):
                        reason = result.get("cancel_reason") or "no reason given"
                        raise StorageError(f"etcd cancelled the watch of {kind}: {reason}")
                    events = watch_events(result)
                    for event in events:
                        seen = event.revision
                        yield event
                    if not events and not result.get("created"):
                        seen = max(seen, revision_of(result))  # progress: nothing before it
            finally:
                try:
                    await results.aclose()
                finally:
                    await stream.aclose()
            await backoff.wait(None)  # dropped: connect again from the revision after ``seen``


@asynccontextmanager
async def open_etcd_store(
    url: str, *, clock: Callable[[], dt.datetime] = _now
) -> AsyncIterator[EtcdStore]:
    """The store at ``url`` (``etcd://HOST:PORT[,HOST:PORT...][/PREFIX]``) until the block ends;
    StorageError at once if no member answers."""
    target = parse_etcd_url(url)
    async with open_etcd_client(target.endpoints) as client:
        store = EtcdStore(client, target.prefix, clock=clock)
        await store._revision()
        yield store
