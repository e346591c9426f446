"""The store interface: documents by kind and name, optimistic concurrency, watches from a revision.

What the store keeps are *documents*: JSON-compatible maps shaped like Kubernetes objects
(``{"apiVersion", "kind", "metadata": {...}, "spec": {...}, "status": {...}}``), so that the
Kubernetes and etcd backends of the next issues keep exactly what this one keeps. The typed
objects of :mod:`lhtrio.models.cluster` are converted to and from documents by the store format's
one converter (:mod:`lhtrio.manager.store.codec`); the store only reads and writes ``metadata``.

The contract, written once as a conformance suite (``tests/manager/test_store_conformance.py``)
that every backend passes unchanged:

* **Revisions.** Every change (create, update, delete, a deletion request) takes the next
  revision of the whole store (as etcd's); an object's ``metadata.resourceVersion`` is the
  revision of its last change, as a string (as Kubernetes writes it).
* **Optimistic concurrency.** :meth:`Store.update` (and :meth:`Store.delete` when given a
  version) succeeds only if the document's ``resourceVersion`` is the object's current one;
  otherwise :class:`~lhtrio.errors.ConflictError`: the caller reads again and retries.
* **Server-owned metadata.** ``uid`` and ``creationTimestamp`` are set at create and kept;
  ``deletionTimestamp`` is set only by :meth:`Store.delete`.
* **Finalizers.** Deleting an object that has finalizers only requests its deletion (sets
  ``deletionTimestamp``); the object goes away when an update leaves it without finalizers.
  A finalizer cannot be added to an object whose deletion was requested.
* **Watches.** :meth:`Store.list` answers the documents and the revision they were read at;
  :meth:`Store.watch` from that revision yields every later change of the kind, in revision
  order, each once. A revision older than the store keeps raises :class:`~lhtrio.errors.GoneError`
  (list again). A ``DELETED`` event carries the object as it was last, at the deletion's revision.
* **Label selectors.** :meth:`Store.list` given ``labels`` answers only the objects whose
  ``metadata.labels`` hold every one of those keys with exactly that value (Kubernetes'
  equality-based label selector ``k=v,k2=v2``), at the store's revision as an unfiltered list
  would be; a watch from there sees every change of the kind, selected or not. So a reconciler
  reads the replicas of its own volume (``lhtrio.io/volume: NAME``) without reading every
  replica. Each backend filters where it can: the Kubernetes API server, SQLite's JSON functions,
  the memory store's label index (etcd cannot: it reads the kind and filters after decoding).
* **Names** are checked before anything is stored (``lhtrio.models.names`` rules for object
  names: no ``/``, no ``..``, no NUL, 1-128 characters): bad input changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

__all__ = ["Document", "EventType", "Listing", "Store", "WatchEvent"]

#: A stored object: a JSON-compatible map with ``kind`` and ``metadata.name``.
Document = dict[str, object]


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@attrs.frozen
class WatchEvent:
    type: EventType
    document: Document
    revision: int


@attrs.frozen
class Listing:
    """The documents of a kind, read at ``revision`` (watch from there to miss nothing)."""

    documents: list[Document]
    revision: int


class Store(Protocol):
    """Desired state: documents by kind and name (see the module docstring for the contract)."""

    async def get(self, kind: str, name: str) -> Document:
        """The object; NotFoundError if there is none."""
        ...

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        """Every object of ``kind``, by name, and the revision they were read at; with ``labels``,
        only the objects labelled with every one of those ``key: value`` pairs (None or empty:
        every object). A selector that is not a map of strings is InvalidArgumentError."""
        ...

    async def create(self, document: Document) -> Document:
        """Store a new object; AlreadyExistsError if one of that kind and name exists."""
        ...

    async def update(self, document: Document) -> Document:
        """Replace an object whose ``resourceVersion`` is still the one given; the stored one."""
        ...

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        """Delete an object (None), or request its deletion while it has finalizers (the
        document, with ``deletionTimestamp``)."""
        ...

    def watch(
        self, kind: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Changes of ``kind`` after ``revision``, in order, until the block ends."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget the changes up to ``revision`` (watches from before it get GoneError)."""
        ...
