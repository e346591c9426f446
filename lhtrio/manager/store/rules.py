"""The store's rules, sans-I/O: what a create, update or delete does to the current document.

Every backend reads the current document (or None), calls one of these with the revision the
change will take, and writes what they return in the same transaction: the rules of
:mod:`lhtrio.manager.store.api` live here once, not once per backend. Nothing here does I/O or
keeps state; documents are copied, never changed in place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import attrs

from lhtrio.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from lhtrio.manager.store.api import Document, EventType, WatchEvent
from lhtrio.models.names import validate_instance_name
from lhtrio.models.times import format_time

__all__ = [
    "Change",
    "check_key",
    "check_labels",
    "copy_document",
    "create",
    "delete",
    "labels_of",
    "metadata",
    "selects",
    "update",
]

#: ``metadata`` fields only the store sets.
_OWNED = ("uid", "creationTimestamp", "deletionTimestamp")


@attrs.frozen
class Change:
    """What to write: the object after the change (None: remove it) and the event to log; no
    event means nothing changes (a deletion requested again)."""

    stored: Document | None
    event: WatchEvent | None


def check_key(kind: object, name: object) -> tuple[str, str]:
    """A valid (kind, name); InvalidArgumentError naming the problem otherwise."""
    if not isinstance(kind, str) or not kind.isidentifier() or not kind[:1].isupper():
        raise InvalidArgumentError(f"bad kind {kind!r}: a capitalised identifier, like Volume")
    try:
        validate_instance_name(name)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"bad {kind} name: {exc}") from None
    assert isinstance(name, str)
    return kind, name


def check_labels(labels: object) -> dict[str, str]:
    """A label selector (``key: value`` pairs, every one required) as a dict, checked; empty
    (every object) for None. InvalidArgumentError for keys or values that are not strings."""
    if not labels:
        return {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidArgumentError(
            f"bad label selector {labels!r}: a map of non-empty label keys to values (strings)"
        )
    return dict(labels)


def labels_of(document: Document) -> dict[str, str]:
    """The string-valued labels of ``document`` (the ones a selector can match)."""
    meta = document.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


def selects(selector: Mapping[str, str], document: Document) -> bool:
    """Whether ``document``'s labels hold every ``key: value`` of ``selector`` (Kubernetes'
    equality-based label selector ``k=v,k2=v2``; an empty one selects everything)."""
    if not selector:
        return True
    labels = labels_of(document)
    return all(labels.get(k) == v for k, v in selector.items())


_DICT: Final = dict
#: The types :func:`copy_document` copies (every other value is shared).
_CONTAINERS: Final = frozenset({dict, list, tuple})


def _copy_list(value: Any) -> list[object]:  # (a list or a tuple)
    return [
        v if type(v) not in _CONTAINERS else copy_document(v) if type(v) is _DICT else _copy_list(v)
        for v in value
    ]


def copy_document(document: Document) -> Document:
    """A copy of the JSON-shaped ``document`` that shares no map or list with it (tuples become
    lists, as JSON has them; strings, numbers and other leaves are shared: they do not change).

    Faster than ``copy.deepcopy`` (which keeps a memo of every object it saw and dispatches on
    each one's type through a table) by 4-5 times, measured with timeit on the documents of
    ``tests/manager/documents``: 3.2 µs against 14.9 µs for a Replica, 4.0 against 18.6 for a
    Volume, 4.8 against 20.8 for an Engine; faster too than keeping each document packed and
    handing out ``msgpack.unpackb`` of it (3.8, 4.4, 5.0 µs, and a ``packb`` per write)."""
    return {
        k: v
        if type(v) not in _CONTAINERS
        else copy_document(v)
        if type(v) is _DICT
        else _copy_list(v)
        for k, v in document.items()
    }


def metadata(document: Document) -> dict[str, object]:
    meta = document.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidArgumentError("a document needs a metadata map")
    return meta


def key(document: Document) -> tuple[str, str]:
    """The (kind, name) of ``document``, checked."""
    return check_key(document.get("kind"), metadata(document).get("name"))


def _finalizers(meta: dict[str, object]) -> list[str]:
    value = meta.get("finalizers") or []
    if not isinstance(value, list) or not all(isinstance(f, str) and f for f in value):
        raise InvalidArgumentError("metadata.finalizers must be a list of non-empty strings")
    return value


def _stamped(document: Document, revision: int) -> Document:
    out = copy_document(document)
    metadata(out)["resourceVersion"] = str(revision)
    return out


def create(
    current: Document | None, document: Document, *, revision: int, uid: str, now: dt.datetime
) -> Change:
    kind, name = key(document)
    if current is not None:
        raise AlreadyExistsError(f"{kind} {name!r} exists already")
    meta = metadata(document)
    _finalizers(meta)
    if meta.get("deletionTimestamp") is not None:
        raise InvalidArgumentError(f"{kind} {name!r}: a new object cannot be being deleted")
    stored = _stamped(document, revision)
    owned = metadata(stored)
    owned["uid"] = uid
    owned["creationTimestamp"] = format_time(now)
    owned.pop("deletionTimestamp", None)
    return Change(stored, WatchEvent(EventType.ADDED, stored, revision))


def _require(current: Document | None, kind: str, name: str) -> Document:
    if current is None:
        raise NotFoundError(f"{kind} {name!r} does not exist")
    return current


def _check_version(current: Document, given: object, kind: str, name: str) -> None:
    now = metadata(current).get("resourceVersion")
    if given != now:
        raise ConflictError(
            f"{kind} {name!r} was changed since it was read (version {given!r}, now {now!r}): "
            "read it again and retry"
        )


def update(current: Document | None, document: Document, *, revision: int) -> Change:
    kind, name = key(document)
    old = _require(current, kind, name)
    meta = metadata(document)
    _check_version(old, meta.get("resourceVersion"), kind, name)
    old_meta = metadata(old)
    finalizers = _finalizers(meta)
    deleting = old_meta.get("deletionTimestamp") is not None
    if deleting and set(finalizers) - set(_finalizers(old_meta)):
        raise ConflictError(f"{kind} {name!r} is being deleted: no finalizer can be added")
    stored = _stamped(document, revision)
    new_meta = metadata(stored)
    for field in _OWNED:
        if field in old_meta:
            new_meta[field] = old_meta[field]
        else:
            new_meta.pop(field, None)
    if deleting and not finalizers:
        return Change(None, WatchEvent(EventType.DELETED, stored, revision))
    return Change(stored, WatchEvent(EventType.MODIFIED, stored, revision))


def delete(
    current: Document | None,
    kind: str,
    name: str,
    *,
    resource_version: str | None,
    revision: int,
    now: dt.datetime,
) -> Change:
    check_key(kind, name)
    old = _require(current, kind, name)
    if resource_version is not None:
        _check_version(old, resource_version, kind, name)
    stored = _stamped(old, revision)
    meta = metadata(stored)
    if not _finalizers(meta):
        return Change(None, WatchEvent(EventType.DELETED, stored, revision))
    if metadata(old).get("deletionTimestamp") is not None:
        return Change(old, None)
    meta["deletionTimestamp"] = format_time(now)
    return Change(stored, WatchEvent(EventType.MODIFIED, stored, revision))
