"""``--store URL``: which store a node keeps its desired state in.

* ``sqlite:PATH`` — the embedded store, one file shared by the node processes of a host
  (:mod:`lhtrio.manager.store.sqlite`); the default of a local cluster.
* ``etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`` — an etcd cluster shared by nodes on any number of
  hosts (:mod:`lhtrio.manager.store.etcd`); the members are tried in turn, the keys live under
  ``/PREFIX/`` (``/lhtrio/`` by default).
* ``kubernetes`` — the Kubernetes cluster the node runs in (its pod's service account and
  namespace; outside a pod ``$KUBECONFIG`` or ``~/.kube/config``), or ``kubernetes:KUBECONFIG``
  — the cluster of that kubeconfig file (:mod:`lhtrio.manager.store.kubernetes`).
* ``memory:`` — in this process only, lost at exit (tests, a single throwaway node).

The Kubernetes backend (and lightkube with it) is imported only when a URL names it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.store.api import Store
from lhtrio.manager.store.etcd import open_etcd_store
from lhtrio.manager.store.etcd_format import parse_etcd_url
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
    if scheme == "etcd" and rest.startswith("//"):
        parse_etcd_url(url)  # says what is wrong with it
        return url
    if scheme == "kubernetes" and (not sep or (rest and "\x00" not in rest)):
        return url
    raise InvalidArgumentError(
        f"unknown store {url!r}: give sqlite:PATH (one file per host), "
        "etcd://HOST:PORT[,HOST:PORT...] (an etcd cluster), kubernetes or kubernetes:KUBECONFIG "
        "(a Kubernetes cluster) or memory: (this process)"
    )


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """The store ``url`` names (see the module docstring), open until the block ends."""
    scheme, _, rest = check_store_url(url).partition(":")
    if scheme == "memory":
        yield MemoryStore()
    elif scheme == "etcd":
        async with open_etcd_store(url) as etcd:
            yield etcd
    elif scheme == "kubernetes":
        from lhtrio.manager.store.kubernetes import open_kubernetes_store  # noqa: PLC0415

        async with open_kubernetes_store(rest or None) as kubernetes:
            yield kubernetes
    else:
        async with open_sqlite_store(rest) as store:
            yield store
