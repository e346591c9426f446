"""Typed access to the store: the kinds of :mod:`lhtrio.models.cluster` in, the same out.

What reconcilers, the API and the CLI use instead of raw documents. Every object written is
validated first (:func:`lhtrio.models.cluster.validate`): nothing the store could not read back is
ever written. :meth:`Objects.change` is the read-modify-write loop of optimistic concurrency: it
reads the object, applies a pure function to it and writes the result, reading again and
re-applying on a conflict, so a caller never writes over a change it did not see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

import attrs

from lhtrio.errors import AlreadyExistsError, ConflictError, NotFoundError
from lhtrio.manager.store.api import Store
from lhtrio.manager.store.codec import from_document, to_document
from lhtrio.models.cluster import ClusterObject, validate

__all__ = ["MAX_ATTEMPTS", "Objects"]

K = TypeVar("K", bound=ClusterObject)

#: How often :meth:`Objects.change` retries after conflicts before it gives up.
MAX_ATTEMPTS: Final = 20


@attrs.frozen
class Objects:
    store: Store

    async def get(self, kind: type[K], name: str) -> K:
        return from_document(kind, await self.store.get(kind.KIND, name))

    async def list(self, kind: type[K]) -> tuple[list[K], int]:
        """Every object of ``kind`` and the revision they were read at (watch from there)."""
        listing = await self.store.list(kind.KIND)
        return [from_document(kind, d) for d in listing.documents], listing.revision

    async def create(self, obj: K) -> K:
        validate(obj)
        return from_document(type(obj), await self.store.create(to_document(obj)))

    async def update(self, obj: K) -> K:
        """Write ``obj`` if nobody changed it since it was read (ConflictError otherwise)."""
        validate(obj)
        return from_document(type(obj), await self.store.update(to_document(obj)))

    async def change(self, kind: type[K], name: str, apply: Callable[[K], K]) -> K:
        """Read ``name``, write ``apply(it)`` (unless it is unchanged), retrying on conflicts;
        the object as stored after. ``apply`` must be pure: it may run several times."""
        for _ in range(MAX_ATTEMPTS):
            current = await self.get(kind, name)
            wanted = apply(current)
            if wanted == current:
                return current
            try:
                return await self.update(wanted)
            except ConflictError:
                continue
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
