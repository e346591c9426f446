"""``--store URL``: which store a node keeps its desired state in.

* ``sqlite:PATH`` — the embedded store, one file shared by the node processes of a host
  (:mod:`lhtrio.manager.store.sqlite`); the default of a local cluster.
* ``memory:`` — in this process only, lost at exit (tests, a single throwaway node).

etcd (``etcd://HOST:PORT``) and Kubernetes (``kubernetes``) come with issue 20.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.store.api import Store
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.store.sqlite import open_sqlite_store

__all__ = ["check_store_url", "open_store"]


def check_store_url(url: str) -> str:
    """``url`` if it names a store this build knows; InvalidArgumentError saying which do."""
    scheme, sep, rest = url.partition(":")
    if scheme == "sqlite" and sep and rest and "\x00" not in rest:
        return url
    if scheme == "memory" and sep and not rest:
        return url
    raise InvalidArgumentError(
        f"unknown store {url!r}: give sqlite:PATH (one file per host) or memory: (this process)"
    )


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """The store ``url`` names (see the module docstring), open until the block ends."""
    scheme, _, rest = check_store_url(url).partition(":")
    if scheme == "memory":
        yield MemoryStore()
        return
    async with open_sqlite_store(rest) as store:
        yield store
