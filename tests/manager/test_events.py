"""Recording events: a repeat is counted on the event it repeats, the store keeps a bounded number
(per object and in all, the oldest going first), a deleted object's events go with it, and a
store that fails loses the event without failing the caller."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import trio

from lhtrio.errors import StorageError
from lhtrio.manager import events
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Event
from lhtrio.models.cluster.event import MAX_MESSAGE, EventType, ObjectReference, Occurrence
from tests.api.conftest import BreakableStore

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
VOLUME = ObjectReference(kind="Volume", name="db-1", uid="u-1")
DEGRADED = Occurrence(reason="Degraded", message="volume db-1 is degraded", type=EventType.WARNING)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


async def test_an_occurrence_becomes_an_event_with_kubernetes_fields() -> None:
    objects = Objects(MemoryStore())
    event = await events.record(objects, VOLUME, DEGRADED, node="n1", now=T0)
    assert event is not None
    assert event.meta.name == events.event_name(VOLUME, DEGRADED)
    assert event.meta.name.startswith("db-1.")
    assert (event.involved_object, event.reason, event.type) == (VOLUME, "Degraded", DEGRADED.type)
    assert (event.count, event.first_timestamp, event.last_timestamp) == (1, T0, T0)
    assert event.reporting_node == "n1"
    assert await objects.get(Event, event.meta.name) == event


async def test_a_repeat_is_counted_not_added() -> None:
    objects = Objects(MemoryStore())
    await events.record(objects, VOLUME, DEGRADED, node="n1", now=T0)
    again = await events.record(objects, VOLUME, DEGRADED, node="n2", now=at(60))
    assert again is not None
    assert (again.count, again.first_timestamp, again.last_timestamp) == (2, T0, at(60))
    assert again.reporting_node == "n2"
    assert len((await objects.list(Event))[0]) == 1
    # another message, another object, another uid (a volume of the same name, made again):
    # other events
    other = Occurrence(reason="Degraded", message="volume db-1 is degraded: 1 of 3")
    await events.record(objects, VOLUME, other, node="n1", now=at(61))
    await events.record(
        objects, ObjectReference(kind="Volume", name="db-2"), DEGRADED, node="n1", now=at(62)
    )
    await events.record(
        objects,
        ObjectReference(kind="Volume", name="db-1", uid="u-2"),
        DEGRADED,
        node="n1",
        now=at(63),
    )
    assert len((await objects.list(Event))[0]) == 4


async def test_two_nodes_recording_the_same_thing_at_once_meet_on_one_event() -> None:
    objects = Objects(MemoryStore())
    async with trio.open_nursery() as nursery:
        for node in ("n1", "n2", "n3"):
            nursery.start_soon(
                lambda n: events.record(objects, VOLUME, DEGRADED, node=n, now=T0), node
            )
    (event,) = (await objects.list(Event))[0]
    assert event.count == 3


async def test_events_are_listed_newest_last_and_by_object() -> None:
    objects = Objects(MemoryStore())
    for n, reason in enumerate(["Attached", "Degraded", "Healthy"]):
        await events.record(
            objects, VOLUME, Occurrence(reason=reason, message=reason), node="n1", now=at(n)
        )
    await events.record(
        objects, VOLUME, Occurrence(reason="Attached", message="Attached"), node="n1", now=at(9)
    )
    node = ObjectReference(kind="Node", name="db-1")
    await events.record(
        objects, node, Occurrence(reason="Down", message="down"), node="n2", now=at(5)
    )
    listed = await events.events_of(objects, kind="Volume", name="db-1")
    assert [e.reason for e in listed] == ["Degraded", "Healthy", "Attached"]  # by last time
    assert [e.reason for e in await events.events_of(objects, name="db-1")] == [
        "Degraded",
        "Healthy",
        "Down",
        "Attached",
    ]
    assert [e.reason for e in await events.events_of(objects, kind="Node")] == ["Down"]


async def test_the_oldest_go_beyond_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "PER_OBJECT", 3)
    monkeypatch.setattr(events, "TOTAL", 5)
    objects = Objects(MemoryStore())
    for n in range(5):
        said = Occurrence(reason="Degraded", message=f"volume db-1 is degraded: {n}")
        await events.record(objects, VOLUME, said, node="n1", now=at(n))
    mine = await events.events_of(objects, kind="Volume", name="db-1")
    assert [e.message for e in mine] == [f"volume db-1 is degraded: {n}" for n in (2, 3, 4)]

    for n in range(4):
        other = ObjectReference(kind="Volume", name=f"v{n}")
        await events.record(objects, other, DEGRADED, node="n1", now=at(10 + n))
    assert len(await events.events_of(objects)) == 7  # until the next round of pruning
    await events.prune_total(objects)
    kept = await events.events_of(objects)
    assert len(kept) == 5  # the total: the oldest went, whatever they were about
    assert [(e.involved_object.name, e.last_timestamp) for e in kept] == [
        ("db-1", at(4)),
        ("v0", at(10)),
        ("v1", at(11)),
        ("v2", at(12)),
        ("v3", at(13)),
    ]


async def test_a_long_message_is_cut() -> None:
    objects = Objects(MemoryStore())
    long = Occurrence(reason="Degraded", message="x" * 5000)
    event = await events.record(objects, VOLUME, long, node="n1", now=T0)
    assert event is not None
    assert len(event.message) == MAX_MESSAGE
    assert event.message.endswith("…")


async def test_forget_removes_an_objects_events_only() -> None:
    objects = Objects(MemoryStore())
    await events.record(objects, VOLUME, DEGRADED, node="n1", now=T0)
    await events.record(
        objects, ObjectReference(kind="Volume", name="db-2"), DEGRADED, node="n1", now=T0
    )
    await events.forget(objects, "Volume", "db-1")
    assert [e.involved_object.name for e in await events.events_of(objects)] == ["db-2"]


async def test_a_failing_store_loses_the_event_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BreakableStore()
    objects = Objects(store)
    store.broken = True
    with caplog.at_level(logging.WARNING, logger="lhtrio.manager.events"):
        assert await events.record(objects, VOLUME, DEGRADED, node="n1", now=T0) is None
        await events.forget(objects, "Volume", "db-1")
    assert "event Degraded about Volume db-1 not recorded: " in caplog.text
    assert "disk I/O error" in caplog.text
    with pytest.raises(StorageError):
        await objects.list(Event)
