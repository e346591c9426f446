"""The double's objects in etcd, through lhtrio's own etcd client
(:mod:`lhtrio.manager.store.etcd_client`: the v3 JSON gateway over httpx, watches over h11) and
its format helpers (:mod:`lhtrio.manager.store.etcd_format`: values as JSON without
``resourceVersion``, which is the key's ``mod_revision``; guarded transactions).

**Layout.** An object is the key ``/PREFIX/registry/GROUP/PLURAL[/NAMESPACE]/NAME`` (``GROUP``
is ``core`` for the core group); every version of a custom resource shares it. A list is a
range read (at one revision: a list's ``resourceVersion`` is the header revision of its first
page, later pages are read at it), a create ``txn(create_revision == 0) put``, an update
``txn(mod_revision == read) put``, a delete ``txn(mod_revision == read) delete``. So
revisions, compaction and watch ordering are etcd's own.

**Watches** are etcd watches of a resource's whole key range (namespaces are filtered by the
caller) from the revision after the one asked for, with each event's previous value (a DELETED
event carries the object as it was, at the deletion's revision). A revision etcd compacted is
:class:`CompactedError` (the caller answers 410 Gone).

**Cancellation.** Unary calls are shielded (each is bounded by the etcd client's own deadline):
a client that goes away mid-request, or a server being stopped, waits for the one call in flight
instead of abandoning it halfway. A watch's stream closes at once.

**Bookmarks.** etcd tells a watcher how far it is only every ten minutes by default, and its
gateway cannot be asked for progress on an open watch. So a bookmark is a heartbeat: a write of
the key ``/PREFIX/registry/GROUP/PLURAL/~bookmark`` (no object's name can hold ``~``). A watch
sees it in order with everything else, so when its event arrives every change up to its
revision has been delivered, and a BOOKMARK at that revision is exact. Lists skip the key.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from typing import Final

import attrs
import trio

from lhtrio.errors import StorageError
from lhtrio.manager.store.etcd_client import Answer, EtcdClient
from lhtrio.manager.store.etcd_format import (
    compare_created,
    compare_version,
    decode_kv,
    delete_op,
    error_message,
    is_compacted,
    is_future,
    key_after,
    put_op,
    revision_of,
)
from tests.kubeapi.resources import Resource
from tests.kubeapi.status import Obj

__all__ = ["HEARTBEAT", "CompactedError", "Event", "EtcdObjects", "Page"]

#: The last segment of a resource's heartbeat key.
HEARTBEAT: Final = "~bookmark"


class CompactedError(Exception):
    """etcd no longer has the revision asked for."""

    def __init__(self, asked: int, compacted: int | None = None) -> None:
        super().__init__(
            f"revision {asked} was compacted" + (f" (at {compacted})" if compacted else "")
        )
        self.asked = asked
        self.compacted = compacted


@attrs.frozen
class Page:
    objects: list[Obj]
    revision: int
    next_key: str | None  # base64 key where the next page starts; None: the last page


@attrs.frozen
class Event:
    """A change (``ADDED``, ``MODIFIED``, ``DELETED``) or a heartbeat (``BOOKMARK``, no
    object); ``prev`` is the object before a MODIFIED."""

    type: str
    obj: Obj | None
    revision: int
    prev: Obj | None = None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _decoded_key(b64: object) -> str:
    return base64.b64decode(str(b64)).decode(errors="replace")


class EtcdObjects:
    """Objects of the double under one key prefix of one etcd."""

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    # --- calls: never abandoned midway ----------------------------------------------------

    async def _answer(self, path: str, body: Obj) -> Answer:
        """One unary call, shielded: cancelling it midway would leave httpx's generators to
        the garbage collector. It is bounded all the same (the client's own deadline)."""
        with trio.CancelScope(shield=True):
            answer = await self.client.answer(path, body)
        return answer

    async def _call(self, path: str, body: Obj) -> Obj:
        with trio.CancelScope(shield=True):
            answer = await self.client.call(path, body)
        return answer

    # --- keys ------------------------------------------------------------------------------

    def _base(self, resource: Resource) -> str:
        group, plural = resource.storage
        return f"/{self.prefix}/registry/{group}/{plural}/"

    def key(self, resource: Resource, namespace: str | None, name: str) -> str:
        middle = f"{namespace}/" if resource.namespaced else ""
        return _b64(f"{self._base(resource)}{middle}{name}")

    def span(self, resource: Resource, namespace: str | None = None) -> tuple[str, str]:
        """The base64 key range of a resource (of one namespace of it, if given)."""
        base = self._base(resource) + (f"{namespace}/" if namespace else "")
        return _b64(base), _b64(base[:-1] + "0")

    def _heartbeat_key(self, resource: Resource) -> str:
        return _b64(self._base(resource) + HEARTBEAT)

    def _is_heartbeat(self, kv: object) -> bool:
        key = kv.get("key") if isinstance(kv, dict) else None
        return _decoded_key(key).rpartition("/")[2] == HEARTBEAT

    # --- reads -----------------------------------------------------------------------------

    async def revision(self) -> int:
        answer = await self._call("kv/range", {"key": _b64(f"/{self.prefix}/"), "count_only": True})
        return revision_of(answer)

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Obj | None:
        answer = await self._call("kv/range", {"key": self.key(resource, namespace, name)})
        kvs = answer.get("kvs")
        return decode_kv(kvs[0]) if isinstance(kvs, list) and kvs else None

    async def page(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        limit: int = 0,
        start: str | None = None,
        revision: int | None = None,
    ) -> Page:
        """One page (everything when ``limit`` is 0) from ``start`` at ``revision`` (None: now);
        CompactedError if etcd no longer has ``revision``."""
        first, end = self.span(resource, namespace)
        body: Obj = {"key": start or first, "range_end": end}
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        answer = await self._answer("kv/range", body)
        if not answer.ok:
            if revision and is_compacted(answer.body):
                raise CompactedError(revision)
            raise StorageError(f"etcd refused a list: {error_message(answer.body)}")
        kvs = answer.body.get("kvs") or []
        assert isinstance(kvs, list)
        objects = [decode_kv(kv) for kv in kvs if not self._is_heartbeat(kv)]
        more = bool(answer.body.get("more")) and bool(kvs)
        return Page(
            objects,
            revision or revision_of(answer.body),
            key_after(kvs[-1]["key"]) if more else None,
        )

    async def check_kept(self, resource: Resource, revision: int) -> None:
        """CompactedError if a watch from ``revision`` would miss changes etcd no longer has."""
        if revision <= 0:
            return
        first, end = self.span(resource)
        body: Obj = {"key": first, "range_end": end, "count_only": True, "revision": str(revision)}
        answer = await self._answer("kv/range", body)
        if answer.ok or is_future(answer.body):
            return
        if is_compacted(answer.body):
            raise CompactedError(revision)
        raise StorageError(f"etcd refused a read: {error_message(answer.body)}")

    # --- writes: each one transaction, guarded -----------------------------------------------

    async def _txn(self, compare: Obj, op: Obj) -> int | None:
        answer = await self._call("kv/txn", {"compare": [compare], "success": [op], "failure": []})
        return revision_of(answer) if answer.get("succeeded") else None

    async def create(
        self, resource: Resource, namespace: str | None, name: str, obj: Obj
    ) -> int | None:
        """The revision of the create; None if the key exists."""
        key = self.key(resource, namespace, name)
        return await self._txn(compare_created(key), put_op(key, obj, None))

    async def replace(
        self, resource: Resource, namespace: str | None, name: str, obj: Obj, version: int
    ) -> int | None:
        """The revision of the write; None if the object changed since ``version``."""
        key = self.key(resource, namespace, name)
        return await self._txn(compare_version(key, version), put_op(key, obj, None))

    async def remove(
        self, resource: Resource, namespace: str | None, name: str, version: int
    ) -> int | None:
        key = self.key(resource, namespace, name)
        return await self._txn(compare_version(key, version), delete_op(key))

    async def remove_all(self, resource: Resource, namespace: str | None = None) -> None:
        """Every object of a resource (of one namespace) at once (heartbeats survive)."""
        first, end = self.span(resource, namespace)
        if namespace is None:
            await self._call(
                "kv/deleterange",
                {"key": first, "range_end": _b64(self._base(resource) + HEARTBEAT[0])},
            )
            return
        await self._call("kv/deleterange", {"key": first, "range_end": end})

    async def heartbeat(self, resource: Resource) -> None:
        await self._call("kv/put", {"key": self._heartbeat_key(resource), "value": ""})

    # --- watches ---------------------------------------------------------------------------

    async def watch(self, resource: Resource, after: int) -> AsyncGenerator[Event, None]:
        """Every change of ``resource`` after revision ``after``, in order, and a BOOKMARK for
        each heartbeat; ends when etcd ends the watch, CompactedError if ``after`` is gone."""
        await self.check_kept(resource, after)
        first, end = self.span(resource)
        request: Obj = {
            "create_request": {
                "key": first,
                "range_end": end,
                "start_revision": str(after + 1),
                "prev_kv": True,
            }
        }
        stream = await self.client.open_watch(request)
        results = stream.results()
        try:
            async for result in results:
                if result.get("compact_revision") not in {None, "0", 0}:
                    raise CompactedError(after, int(str(result["compact_revision"])))
                if result.get("canceled"):
                    raise StorageError(f"etcd cancelled a watch: {result.get('cancel_reason')}")
                for event in self._events(result):
                    yield event
        finally:
            try:
                await results.aclose()
            finally:
                await stream.aclose()

    def _events(self, result: Obj) -> list[Event]:
        out = []
        for raw in result.get("events") or []:
            kv = raw.get("kv") or {}
            revision = int(str(kv.get("mod_revision", 0)))
            if self._is_heartbeat(kv):
                out.append(Event("BOOKMARK", None, revision))
            elif raw.get("type", "PUT") == "DELETE":
                prev = raw.get("prev_kv")
                if prev:  # (etcd always sends it unless it was compacted meanwhile)
                    out.append(Event("DELETED", decode_kv(prev, revision=revision), revision))
            else:
                prev = raw.get("prev_kv")
                kind = "ADDED" if int(str(kv.get("version", 1))) == 1 else "MODIFIED"
                out.append(Event(kind, decode_kv(kv), revision, decode_kv(prev) if prev else None))
        return out
