"""Changes made on condition: "only if the object is still at version N" (an HTTP ``If-Match``).

A caller that read an object, decided, and wants its change applied only to what it read gives
the ``resourceVersion`` it read. :func:`at_version` wraps a pure change (what
:meth:`~lhtrio.manager.objects.Objects.change` applies) so that it refuses, with
:class:`~lhtrio.errors.StaleVersionError` naming the current version, any object at another
version: the check happens on the very object the write replaces, so a change that raced in
between is never written over. :func:`check_version` is the same check for operations that do not
rewrite the object (a snapshot, an attach): the object must be at that version when they start;
:func:`delete` deletes on condition (the store's delete is conditional on the version read).
Version 0 is an object not stored yet (a setting still at its default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from lhtrio.errors import ConflictError, NotFoundError, StaleVersionError
from lhtrio.manager.objects import MAX_ATTEMPTS, Objects
from lhtrio.models.cluster import ClusterObject

__all__ = ["at_version", "check_version", "delete", "expect_version", "stale"]

K = TypeVar("K", bound=ClusterObject)


def stale(obj: ClusterObject | None, kind: str, name: str, version: int) -> StaleVersionError:
    """The error for ``obj`` (None: gone) not being at ``version``."""
    current = obj.meta.resource_version if obj is not None else 0
    shown = str(current) if current else ""
    now = f"it is at {shown}" if shown else "it is not stored"
    return StaleVersionError(
        f"{kind} {name!r} changed: the request was made on condition that it is at version "
        f"{version or '(not stored)'}, {now}; read it again and decide again",
        current=shown,
    )


def expect_version(obj: ClusterObject, version: int | None) -> None:
    """Raise StaleVersionError unless ``obj`` is at ``version`` (None: any version will do)."""
    if version is not None and obj.meta.resource_version != version:
        raise stale(obj, obj.KIND, obj.meta.name, version)


def at_version(version: int | None, apply: Callable[[K], K]) -> Callable[[K], K]:
    """``apply``, refusing any object not at ``version`` (None: ``apply`` itself)."""
    if version is None:
        return apply

    def checked(obj: K) -> K:
        expect_version(obj, version)
        return apply(obj)

    return checked


async def check_version(objects: Objects, kind: type[K], name: str, version: int | None) -> None:
    """The object must be at ``version`` now (None: nothing to check). NotFoundError if it is
    gone, unless ``version`` is 0 (not stored)."""
    if version is None:
        return
    try:
        obj = await objects.get(kind, name)
    except NotFoundError:
        if version == 0:
            return
        raise
    expect_version(obj, version)


async def delete(
    objects: Objects,
    kind: type[K],
    name: str,
    *,
    version: int | None = None,
    check: Callable[[K], None] | None = None,
) -> K | None:
    """Delete ``name`` (or request it, if finalizers hold it): on condition of ``version`` if
    given, after ``check(obj)`` (which raises to refuse). The object after (with its
    ``deletionTimestamp``), or None if it went at once. Asking again while it is being deleted
    changes nothing."""
    for _ in range(MAX_ATTEMPTS):
        obj = await objects.get(kind, name)
        expect_version(obj, version)
        if obj.meta.deleting:
            return obj
        if check is not None:
            check(obj)
        try:
            await objects.delete(obj)
        except ConflictError:
            if version is not None:
                raise stale(await _current(objects, kind, name), kind.KIND, name, version) from None
            continue  # changed between the read and the delete: read it again
        return await _current(objects, kind, name)
    raise ConflictError(f"{kind.KIND} {name!r} kept changing: it could not be deleted")


async def _current(objects: Objects, kind: type[K], name: str) -> K | None:
    try:
        return await objects.get(kind, name)
    except NotFoundError:
        return None
