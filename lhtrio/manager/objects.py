"""Typed access to the store: the kinds of :mod:`lhtrio.models.cluster` in, the same out.

What reconcilers, the API and the CLI use instead of raw documents. Every object written gets
the labels it is selected by (:mod:`lhtrio.models.cluster.labels`) and is validated first
(:func:`lhtrio.models.cluster.validate`): nothing the store could not read back is ever written.
:meth:`Objects.change` is the read-modify-write loop of optimistic concurrency: it reads the
object, applies a pure function to it and writes the result, reading again and
re-applying on a conflict, so a caller never writes over a change it did not see. Between two
attempts it waits a random while that grows with each conflict (client-go's ``RetryOnConflict``
does the same): writers that collided would otherwise read and write again in step and collide
again, and a slow store (the Kubernetes API server under load) starved one of them out of every
attempt.

Reading is cheap on repeat: a stored version of an object never changes, so each one is decoded
and checked once and the typed object (frozen) kept by kind, name and ``resourceVersion``; a
listing decodes only what changed since the last one. A listing of every object of a kind also
forgets the objects of that kind it no longer has (the cost: that kind's objects); a listing by
labels (:meth:`Objects.list` ``labels=``) forgets nothing, as it says nothing of the others.
Measured on a node holding 100 volumes (300 replicas): listing every replica took 10.4 ms, 7 of
them decoding (``docs/benchmarks.md``, "control"), and the volume reconciler lists them once per
volume.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

import attrs
import trio

from lhtrio.errors import AlreadyExistsError, ConflictError, NotFoundError
from lhtrio.manager.store.api import Document, Store
from lhtrio.manager.store.codec import from_document, to_document
from lhtrio.models.cluster import ClusterObject, validate
from lhtrio.models.cluster.labels import with_index_labels

__all__ = ["MAX_ATTEMPTS", "Objects"]

K = TypeVar("K", bound=ClusterObject)

#: How often :meth:`Objects.change` retries after conflicts before it gives up.
MAX_ATTEMPTS: Final = 20
#: The longest wait before the first retry after a conflict, and the cap it doubles up to
#: (seconds; each wait is drawn uniformly below its bound).
CONFLICT_BACKOFF: Final = 0.005
CONFLICT_BACKOFF_MAX: Final = 0.5


@attrs.frozen
class Objects:
    store: Store
    #: kind -> name -> (resourceVersion, the object decoded from that version)
    _decoded: dict[str, dict[str, tuple[object, ClusterObject]]] = attrs.field(
        factory=dict, init=False, repr=False, eq=False
    )

    def _decode(self, kind: type[K], document: Document) -> K:
        """``from_document``, once per stored version of an object."""
        meta = document.get("metadata")
        if not isinstance(meta, dict):
            return from_document(kind, document)  # (it says what is wrong)
        name, version = str(meta.get("name")), meta.get("resourceVersion")
        decoded = self._decoded.setdefault(kind.KIND, {})
        known = decoded.get(name)
        if known is not None and known[0] == version and isinstance(known[1], kind):
            return known[1]
        obj = from_document(kind, document)
        decoded[name] = (version, obj)
        return obj

    async def get(self, kind: type[K], name: str) -> K:
        try:
            document = await self.store.get(kind.KIND, name)
        except NotFoundError:
            self._decoded.get(kind.KIND, {}).pop(name, None)
            raise
        return self._decode(kind, document)

    async def list(
        self, kind: type[K], *, labels: Mapping[str, str] | None = None
    ) -> tuple[list[K], int]:
        """Every object of ``kind`` (with ``labels``: only those labelled with every one of those
        ``key: value`` pairs) and the revision they were read at (watch from there)."""
        listing = await self.store.list(kind.KIND, labels=labels)
        objects = [self._decode(kind, d) for d in listing.documents]
        if not labels:  # (a selection says nothing of the objects it did not select)
            decoded = self._decoded.get(kind.KIND, {})
            if len(decoded) > len(objects):
                names = {o.meta.name for o in objects}
                for name in [n for n in decoded if n not in names]:
                    del decoded[name]  # gone from the store
        return objects, listing.revision

    async def create(self, obj: K) -> K:
        obj = with_index_labels(obj)
        validate(obj)
        return self._decode(type(obj), await self.store.create(to_document(obj)))

    async def update(self, obj: K) -> K:
        """Write ``obj`` if nobody changed it since it was read (ConflictError otherwise)."""
        obj = with_index_labels(obj)
        validate(obj)
        return self._decode(type(obj), await self.store.update(to_document(obj)))

    async def change(self, kind: type[K], name: str, apply: Callable[[K], K]) -> K:
        """Read ``name``, write ``apply(it)`` (unless it is unchanged), retrying on conflicts;
        the object as stored after. ``apply`` must be pure: it may run several times."""
        for attempt in range(MAX_ATTEMPTS):
            current = await self.get(kind, name)
            wanted = apply(current)
            if wanted == current:
                return current
            try:
                return await self.update(wanted)
            except ConflictError:
                bound = min(CONFLICT_BACKOFF_MAX, CONFLICT_BACKOFF * 2**attempt)
                await trio.sleep(random.uniform(0, bound))
        raise ConflictError(
            f"{kind.KIND} {name!r} kept changing: {MAX_ATTEMPTS} attempts to change it conflicted"
        )

    async def upsert(self, kind: type[K], name: str, apply: Callable[[K], K], fresh: K) -> K:
        """:meth:`change` ``name`` with ``apply``; if there is none, create ``apply(fresh)``. A
        creation that races another (AlreadyExistsError) changes what the other created."""
        while True:
            try:
                return await self.change(kind, name, apply)
            except NotFoundError:
                pass
            try:
                return await self.create(apply(fresh))
            except AlreadyExistsError:
                continue

    async def delete(self, obj: ClusterObject) -> None:
        """Delete ``obj`` as read (a conflict if it changed since), or request its deletion."""
        await self.store.delete(
            obj.KIND, obj.meta.name, resource_version=str(obj.meta.resource_version)
        )
