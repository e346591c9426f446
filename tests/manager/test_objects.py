"""Typed access to the store: validated writes, and read-modify-write that never loses a change."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

from lhtrio.errors import ConflictError, InvalidArgumentError, NotFoundError
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.codec import from_document
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import ObjectMeta, Volume
from lhtrio.models.cluster.volume import VolumeSpec

GiB = 1 << 30


def volume(name: str, replicas: int = 3) -> Volume:
    return Volume(
        meta=ObjectMeta(name=name), spec=VolumeSpec(size=GiB, number_of_replicas=replicas)
    )


def with_replicas(n: int) -> Callable[[Volume], Volume]:
    def apply(v: Volume) -> Volume:
        return attrs.evolve(v, spec=attrs.evolve(v.spec, number_of_replicas=n))

    return apply


async def test_objects_round_trip_with_their_versions() -> None:
    objects = Objects(MemoryStore())
    created = await objects.create(volume("v1"))
    assert created.meta.resource_version > 0
    assert created.meta.uid
    assert await objects.get(Volume, "v1") == created
    listed, revision = await objects.list(Volume)
    assert listed == [created]
    assert revision == created.meta.resource_version


async def test_a_selection_decodes_and_evicts_nothing_it_did_not_select(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[str] = []

    def counting(kind: type[Volume], document: Document) -> Volume:
        obj = from_document(kind, document)
        decoded.append(obj.meta.name)
        return obj

    monkeypatch.setattr("lhtrio.manager.objects.from_document", counting)
    store = MemoryStore()
    objects = Objects(store)
    for name, node in (("a", "n1"), ("b", "n2"), ("c", "n1")):
        meta = ObjectMeta(name=name, labels={"lhtrio.io/node": node})
        await objects.create(attrs.evolve(volume(name), meta=meta))
    listed, _ = await objects.list(Volume)
    decoded.clear()
    selected, revision = await objects.list(Volume, labels={"lhtrio.io/node": "n1"})
    assert [v.meta.name for v in selected] == ["a", "c"]
    assert revision == listed[-1].meta.resource_version
    assert await objects.get(Volume, "b") == listed[1]  # still known: not decoded again
    assert decoded == []
    await store.delete("Volume", "a")
    assert [v.meta.name for v in (await objects.list(Volume))[0]] == ["b", "c"]
    assert set(objects._decoded["Volume"]) == {"b", "c"}  # an unfiltered list forgets the gone


async def test_an_invalid_object_is_never_written() -> None:
    store = MemoryStore()
    objects = Objects(store)
    with pytest.raises(InvalidArgumentError):
        await objects.create(volume("v1", replicas=0))
    with pytest.raises(InvalidArgumentError):
        await objects.create(volume("../x"))
    assert (await store.list("Volume")).documents == []
    created = await objects.create(volume("v1"))
    with pytest.raises(InvalidArgumentError):
        await objects.update(with_replicas(100)(created))
    assert await objects.get(Volume, "v1") == created


async def test_change_reapplies_on_a_conflict_and_loses_nothing() -> None:
    objects = Objects(MemoryStore())
    await objects.create(volume("v1"))
    calls = 0

    def add_one(v: Volume) -> Volume:
        nonlocal calls
        calls += 1
        return with_replicas(v.spec.number_of_replicas + 1)(v)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(objects.change, Volume, "v1", add_one)
    assert (await objects.get(Volume, "v1")).spec.number_of_replicas == 8
    assert calls >= 5


@attrs.define
class Contended:
    """A store whose first ``conflicts`` updates lose to another writer (ConflictError)."""

    inner: MemoryStore
    conflicts: int

    async def update(self, document: Document) -> Document:
        if self.conflicts:
            self.conflicts -= 1
            raise ConflictError("another writer was first")
        return await self.inner.update(document)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_change_waits_longer_after_each_conflict_and_then_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    random.seed(21)  # the waits are random (their bounds double: 5, 10, 20, 40, 80, 160 ms)
    store = MemoryStore()
    await Objects(store).create(volume("v1"))
    waits = []
    for _ in range(5):
        before = trio.current_time()
        objects = Objects(Contended(store, conflicts=6))  # type: ignore[arg-type]
        await objects.change(Volume, "v1", with_replicas(4))
        await objects.change(Volume, "v1", with_replicas(3))  # (no conflict left: at once)
        waits.append(trio.current_time() - before)
    assert all(0 < waited <= 0.315 for waited in waits)
    assert max(waits) > 0.005 * 6  # more than six waits of the first one's bound could give
    assert (await Objects(store).get(Volume, "v1")).spec.number_of_replicas == 3


async def test_change_writes_nothing_when_nothing_changes_and_fails_on_a_missing_object() -> None:
    objects = Objects(MemoryStore())
    created = await objects.create(volume("v1"))
    assert await objects.change(Volume, "v1", lambda v: v) == created
    assert (await objects.get(Volume, "v1")).meta.resource_version == created.meta.resource_version
    with pytest.raises(NotFoundError):
        await objects.change(Volume, "v2", lambda v: v)


async def test_delete_refuses_an_object_that_changed_since_it_was_read() -> None:
    objects = Objects(MemoryStore())
    first = await objects.create(volume("v1"))
    await objects.update(with_replicas(2)(first))
    with pytest.raises(ConflictError):
        await objects.delete(first)
    await objects.delete(await objects.get(Volume, "v1"))
    with pytest.raises(NotFoundError):
        await objects.get(Volume, "v1")


async def test_upsert_creates_once_and_then_changes() -> None:
    objects = Objects(MemoryStore())
    async with trio.open_nursery() as nursery:  # two writers race to create it
        for n in (2, 4):
            nursery.start_soon(objects.upsert, Volume, "v1", with_replicas(n), volume("v1"))
    stored = await objects.get(Volume, "v1")
    assert stored.spec.number_of_replicas in (2, 4)
    assert stored.meta.resource_version == 2  # one create, one change of what it created
