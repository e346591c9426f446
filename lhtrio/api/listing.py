"""Collections answered from documents rendered once per version (:class:`Rendered`).

A list reads every document of a kind from the store; turning each into its typed object (the
codec's strict reading and :func:`~lhtrio.models.cluster.validate`) and back into the JSON the
API answers cost about 45 µs per volume — 45 ms of the node's only core for a list of 1,000
(``docs/benchmarks.md``, "api"). An object changes rarely between two lists, and its
``resourceVersion`` changes with every change (it is the store's revision), so each document is
read and rendered once per version: a later list reuses the typed object (for the filters) and
its JSON bytes, and a document whose version moved is read again. What is kept is what the last
list of the kind saw, so it never grows beyond the objects that exist.

A document the store holds at a version already seen is not read again: a store edited by hand
behind lhtrio's back without a new ``resourceVersion`` is not noticed by lists (a get reads it).
"""

from __future__ import annotations

import json
from typing import Generic, TypeVar

import attrs
from quart import Response

from lhtrio.api.query import Keep
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.codec import from_document, to_document
from lhtrio.models.cluster import ClusterObject

__all__ = ["Rendered", "render"]

K = TypeVar("K", bound=ClusterObject)


def render(obj: ClusterObject) -> bytes:
    """``obj``'s document as the API answers it."""
    return json.dumps(to_document(obj), separators=(",", ":")).encode()


@attrs.frozen
class _Seen(Generic[K]):
    version: object
    obj: K
    rendered: bytes


def _version(document: object) -> tuple[object, object] | None:
    """``(name, resourceVersion)`` of a raw document, None if it has none to key it by."""
    metadata = document.get("metadata") if isinstance(document, dict) else None
    if not isinstance(metadata, dict):
        return None
    name, version = metadata.get("name"), metadata.get("resourceVersion")
    if not isinstance(name, str) or not isinstance(version, str) or not version:
        return None
    return name, version


@attrs.define(eq=False)
class Rendered:
    """What the last list of each kind read, by name (see the module docstring)."""

    objects: Objects
    _seen: dict[str, dict[str, _Seen[ClusterObject]]] = attrs.field(factory=dict)

    async def answer(self, kind: type[K], keep: Keep | None) -> Response:
        """``{"data": [...]}`` of every ``kind`` object ``keep`` keeps (all for None)."""
        listing = await self.objects.store.list(kind.KIND)
        before = self._seen.get(kind.KIND, {})
        now: dict[str, _Seen[ClusterObject]] = {}
        parts: list[bytes] = []
        for document in listing.documents:
            key = _version(document)
            seen = before.get(str(key[0])) if key is not None else None
            if seen is None or key is None or seen.version != key[1]:
                read = from_document(kind, document)  # a bad document: CorruptMetadataError
                seen = _Seen(version=key[1] if key else None, obj=read, rendered=render(read))
            if key is not None:
                now[str(key[0])] = seen
            obj = seen.obj
            assert isinstance(obj, kind)
            if keep is None or keep(obj):
                parts.append(seen.rendered)
        self._seen[kind.KIND] = now
        return Response(b'{"data":[' + b",".join(parts) + b"]}", content_type="application/json")
