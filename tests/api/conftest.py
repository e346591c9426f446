"""The admin API served for real: hypercorn on a free loopback port, in the test's own trio run,
over an in-memory store, and httpx clients talking HTTP to it: ``client`` sends the token with
every request (reads need it too), ``bare`` sends none."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import httpx
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.errors import StorageError
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Document, Listing, WatchEvent
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Node, ObjectMeta
from lhtrio.models.cluster.node import NodeSpec

TOKEN = "s3cret-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BreakableStore:
    """A memory store that fails every call, as a store whose disk or database is gone, while
    ``broken``."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.broken = False

    def _check(self) -> None:
        if self.broken:
            raise StorageError("store /var/lib/lhtrio/store.db: disk I/O error")

    async def get(self, kind: str, name: str) -> Document:
        self._check()
        return await self.inner.get(kind, name)

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        self._check()
        return await self.inner.list(kind, labels=labels)

    async def create(self, document: Document) -> Document:
        self._check()
        return await self.inner.create(document)

    async def update(self, document: Document) -> Document:
        self._check()
        return await self.inner.update(document)

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        self._check()
        return await self.inner.delete(kind, name, resource_version=resource_version)

    def watch(
        self, kind: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        self._check()
        return self.inner.watch(kind, revision)

    async def compact(self, revision: int) -> None:
        self._check()
        await self.inner.compact(revision)


@attrs.frozen
class Api:
    url: str
    client: httpx.AsyncClient
    bare: httpx.AsyncClient
    store: BreakableStore
    objects: Objects

    async def state(self) -> tuple[int, dict[str, list[Document]]]:
        """The store's revision and every document of the kinds the API writes: equal before
        and after a refused request when it changed nothing."""
        listed = {}
        for kind in ("Volume", "VolumeAttachment", "Setting", "Node", "Replica", "Engine"):
            listed[kind] = (await self.store.inner.list(kind)).documents
        return self.store.inner.revision, listed

    async def post(
        self, path: str, body: Any = None, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers={**AUTH, **(headers or {})}, **kw)


@pytest.fixture
async def api(nursery: trio.Nursery) -> AsyncIterator[Api]:
    store = BreakableStore()
    objects = Objects(store)
    for name in ("n1", "n2"):
        await objects.create(Node(meta=ObjectMeta(name=name), spec=NodeSpec()))
    url = await nursery.start(functools.partial(serve_api, objects, "127.0.0.1", 0, token=TOKEN))
    async with (
        httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH) as client,
        httpx.AsyncClient(base_url=url, timeout=30) as bare,
    ):
        yield Api(url=url, client=client, bare=bare, store=store, objects=objects)
