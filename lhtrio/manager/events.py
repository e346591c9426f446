"""Recording events in the store, bounded: what the operator reads with ``GET /v1/events``.

An :class:`~lhtrio.models.cluster.event.Occurrence` (something a plan or an operation says
happened) becomes an :class:`~lhtrio.models.cluster.event.Event` about one object
(:func:`record`). Kubernetes' rules, cut to what lhtrio needs:

* **Repeats are counted.** An occurrence with the same object (kind, name, uid), reason and
  message as an event already kept increments that event's ``count`` and moves its
  ``lastTimestamp``; it adds nothing. The event's name says which it is (the object's name and a
  hash of those four), so two nodes recording the same thing at once meet on one object: one
  creates it, the other counts it (no list is read to find it).
* **Bounded.** At most :data:`PER_OBJECT` events per object: recording a new one removes the
  oldest (by ``lastTimestamp``) about the same object beyond it (read by label, not by reading
  every event). At most :data:`TOTAL` in all, kept by :func:`keep_bounded` every
  :data:`PRUNE_EVERY` seconds on each node (Kubernetes bounds its events by age, checked
  periodically, for the same reason: counting every event at each new one costs a listing of
  all of them each time). A volume's events go with it (:func:`forget`, when its deletion
  completes).
* **Best effort.** Recording never fails its caller: a store error is logged and the event is
  lost (a reconcile must not be retried, nor an operation fail, because its event could not be
  written). Events are for people; nothing in lhtrio acts on them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Final

import attrs
import trio

from lhtrio.errors import AlreadyExistsError, ConflictError, LhtrioError, NotFoundError
from lhtrio.manager.objects import Objects
from lhtrio.models.cluster import ObjectMeta
from lhtrio.models.cluster.event import (
    MAX_MESSAGE,
    Event,
    EventType,
    ObjectReference,
    Occurrence,
)
from lhtrio.models.cluster.labels import involved_labels

__all__ = [
    "PER_OBJECT",
    "PRUNE_EVERY",
    "TOTAL",
    "event_name",
    "events_of",
    "forget",
    "keep_bounded",
    "prune_total",
    "record",
]

logger = logging.getLogger(__name__)

#: The most events kept about one object.
PER_OBJECT: Final = 30
#: The most events kept in all (beyond it for at most :data:`PRUNE_EVERY` seconds).
TOTAL: Final = 1000
#: How often each node removes the oldest events beyond :data:`TOTAL` (seconds).
PRUNE_EVERY: Final = 60.0
#: Attempts at counting a repeat that keeps conflicting with other writers.
_ATTEMPTS: Final = 10


def event_name(involved: ObjectReference, occurrence: Occurrence) -> str:
    """The name of the event ``occurrence`` makes about ``involved`` (the same for a repeat)."""
    key = "\0".join(
        (involved.kind, involved.name, involved.uid, occurrence.reason, occurrence.message)
    )
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{involved.name[:100]}.{digest}"


def _message(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


async def record(
    objects: Objects,
    involved: ObjectReference,
    occurrence: Occurrence,
    *,
    node: str,
    now: dt.datetime,
) -> Event | None:
    """Record ``occurrence`` about ``involved``, reported by ``node`` at ``now``; the event as
    stored, or None if the store failed (logged)."""
    level = logging.WARNING if occurrence.type is EventType.WARNING else logging.INFO
    logger.log(
        level, "%s %s: %s: %s", involved.kind, involved.name, occurrence.reason, occurrence.message
    )
    try:
        return await _record(objects, involved, occurrence, node=node, now=now)
    except LhtrioError as exc:
        logger.warning(
            "event %s about %s %s not recorded: %s",
            occurrence.reason,
            involved.kind,
            involved.name,
            exc,
        )
        return None


async def _record(
    objects: Objects,
    involved: ObjectReference,
    occurrence: Occurrence,
    *,
    node: str,
    now: dt.datetime,
) -> Event:
    name = event_name(involved, occurrence)

    def again(event: Event) -> Event:
        last = max(now, event.last_timestamp or now)
        return attrs.evolve(event, count=event.count + 1, last_timestamp=last, reporting_node=node)

    for _ in range(_ATTEMPTS):
        try:
            return await objects.change(Event, name, again)
        except NotFoundError:
            pass
        fresh = Event(
            meta=ObjectMeta(name=name),
            involved_object=involved,
            reason=occurrence.reason,
            message=_message(occurrence.message),
            type=occurrence.type,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            reporting_node=node,
        )
        try:
            created = await objects.create(fresh)
        except AlreadyExistsError:
            continue  # another node recorded it first: count it on theirs
        await _prune(objects, involved)
        return created
    raise ConflictError(f"event {name!r} kept changing: {_ATTEMPTS} attempts to count it failed")


def _oldest_first(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=_age)


def _age(event: Event) -> tuple[dt.datetime, int]:
    """Older first: by the time it last happened (whole seconds), then by the store's revision
    of its last change (the order the store took them in)."""
    return event.last_timestamp or dt.datetime.min.replace(
        tzinfo=dt.UTC
    ), event.meta.resource_version


async def _prune(objects: Objects, involved: ObjectReference) -> None:
    """Remove the oldest events about ``involved`` beyond :data:`PER_OBJECT`."""
    mine = await events_of(objects, kind=involved.kind, name=involved.name)
    await _delete(objects, mine[: max(0, len(mine) - PER_OBJECT)])


async def prune_total(objects: Objects) -> None:
    """Remove the oldest events beyond :data:`TOTAL`, whatever they are about."""
    everything, _ = await objects.list(Event)
    await _delete(objects, _oldest_first(everything)[: max(0, len(everything) - TOTAL)])


async def keep_bounded(objects: Objects) -> None:
    """:func:`prune_total` every :data:`PRUNE_EVERY` seconds until cancelled (best effort)."""
    while True:
        await trio.sleep(PRUNE_EVERY)
        try:
            await prune_total(objects)
        except LhtrioError as exc:
            logger.warning("the oldest events were not removed: %s", exc)


async def _delete(objects: Objects, events: Iterable[Event]) -> None:
    for event in events:
        # counted again meanwhile (a conflict), or removed by another node: leave it
        with contextlib.suppress(ConflictError, NotFoundError):
            await objects.delete(event)


async def events_of(
    objects: Objects, *, kind: str | None = None, name: str | None = None
) -> list[Event]:
    """The events kept (about objects of ``kind``, named ``name``, when given), newest last."""
    labels = None
    if kind is not None and name is not None:
        labels = involved_labels(ObjectReference(kind=kind, name=name))
    everything, _ = await objects.list(Event, labels=labels)
    chosen = [
        e
        for e in everything
        if kind in (None, e.involved_object.kind) and name in (None, e.involved_object.name)
    ]
    return _oldest_first(chosen)


async def forget(objects: Objects, kind: str, name: str) -> None:
    """Remove every event about object ``name`` of ``kind`` (it is gone); best effort."""
    try:
        mine = await events_of(objects, kind=kind, name=name)
        await _delete(objects, mine)
    except LhtrioError as exc:
        logger.warning("the events of %s %s were not removed: %s", kind, name, exc)
