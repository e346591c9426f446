"""The store's contract (lhtrio.manager.store.api), once, for every backend.

A later backend joins by adding itself to the ``store`` fixture; nothing else here changes. The
Kubernetes store runs against the API double (``tests/manager/kube.py``), whose etcd compaction
it is given (the real API server compacts by itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    GoneError,
    InvalidArgumentError,
    NotFoundError,
)
from lhtrio.manager.store.api import Document, EventType, Store, WatchEvent
from lhtrio.manager.store.etcd import open_etcd_store
from lhtrio.manager.store.etcd_client import open_etcd_client
from lhtrio.manager.store.kubernetes import open_kubernetes_store
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.store.sqlite import open_sqlite_store
from tests.manager.kube import start_kube_cluster

REAL = pytest.mark.real


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("etcd", marks=REAL),
        pytest.param("kubernetes", marks=REAL),
    ]
)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "etcd":  # a real etcd (tests/conftest.py), a prefix of its own
        async with open_etcd_store(request.getfixturevalue("etcd_url")) as etcd:
            yield etcd
    elif request.param == "kubernetes":  # the API double over that etcd (tests/manager/kube.py)
        server = request.getfixturevalue("etcd_server")
        async with open_etcd_client([server.client]) as client:
            cluster = await start_kube_cluster(nursery, server, client, tmp_path)
            async with open_kubernetes_store(
                str(cluster.kubeconfig), compactor=cluster.compact
            ) as kube:
                yield kube
    else:
        async with open_sqlite_store(tmp_path / "store.db") as sqlite:
            yield sqlite


def volume(name: str, size: int = 1 << 30, **meta: object) -> Document:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": name, **meta},
        "spec": {"size": str(size), "numberOfReplicas": 3},
        "status": {},
    }


def meta(document: Document) -> dict[str, object]:
    value = document["metadata"]
    assert isinstance(value, dict)
    return value


def version(document: Document) -> int:
    return int(str(meta(document)["resourceVersion"]))


async def next_events(
    events: AsyncIterator[WatchEvent], count: int
) -> list[tuple[EventType, str, int]]:
    out = []
    with trio.fail_after(10):
        async for event in events:
            out.append((event.type, str(meta(event.document)["name"]), event.revision))
            if len(out) == count:
                break
    return out


async def test_create_then_get_returns_the_object_with_its_version(store: Store) -> None:
    created = await store.create(volume("v1"))
    assert version(created) > 0
    assert meta(created)["uid"]
    assert str(meta(created)["creationTimestamp"]).endswith("Z")
    assert created["spec"] == {"size": str(1 << 30), "numberOfReplicas": 3}
    assert await store.get("Volume", "v1") == created


async def test_create_refuses_an_existing_name_and_get_a_missing_one(store: Store) -> None:
    await store.create(volume("v1"))
    with pytest.raises(AlreadyExistsError, match="Volume 'v1' exists already"):
        await store.create(volume("v1", size=5))
    assert (await store.get("Volume", "v1"))["spec"] == volume("v1")["spec"]
    with pytest.raises(NotFoundError, match="Volume 'v2' does not exist"):
        await store.get("Volume", "v2")
    with pytest.raises(NotFoundError):
        await store.update({**volume("v2"), "metadata": {"name": "v2", "resourceVersion": "1"}})
    with pytest.raises(NotFoundError):
        await store.delete("Volume", "v2")


async def test_every_change_takes_the_next_revision_of_the_whole_store(store: Store) -> None:
    a = await store.create(volume("a"))
    b = await store.create({**volume("b"), "kind": "Engine"})
    a2 = await store.update(a)
    assert [version(a), version(b), version(a2)] == [version(a), version(a) + 1, version(a) + 2]


async def test_a_stale_version_is_a_conflict_and_a_fresh_read_succeeds(store: Store) -> None:
    first = await store.create(volume("v1"))
    second = await store.update({**first, "spec": {"size": "1", "numberOfReplicas": 2}})
    with pytest.raises(ConflictError, match="read it again"):
        await store.update({**first, "spec": {"size": "2", "numberOfReplicas": 1}})
    assert (await store.get("Volume", "v1"))["spec"] == second["spec"]
    fresh = await store.get("Volume", "v1")
    third = await store.update({**fresh, "spec": {"size": "3", "numberOfReplicas": 1}})
    assert version(third) > version(second)


async def test_of_two_writers_from_one_version_exactly_one_wins(store: Store) -> None:
    start = await store.create(volume("v1"))
    results: list[str] = []

    async def write(replicas: int) -> None:
        try:
            await store.update({**start, "spec": {"size": "1", "numberOfReplicas": replicas}})
            results.append(f"won {replicas}")
        except ConflictError:
            results.append("conflict")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, 1)
        nursery.start_soon(write, 2)
    assert sorted(results)[0] == "conflict"
    assert sorted(results)[1].startswith("won")
    winner = int(sorted(results)[1].split()[1])
    assert (await store.get("Volume", "v1"))["spec"] == {"size": "1", "numberOfReplicas": winner}


async def test_the_store_owns_uid_and_creation_time(store: Store) -> None:
    created = await store.create(volume("v1", uid="mine", creationTimestamp="1999-01-01T00:00:00Z"))
    assert meta(created)["uid"] != "mine"
    forged = {
        **created,
        "metadata": {**meta(created), "uid": "x", "creationTimestamp": "2000-01-01T00:00:00Z"},
    }
    updated = await store.update(forged)
    assert meta(updated)["uid"] == meta(created)["uid"]
    assert meta(updated)["creationTimestamp"] == meta(created)["creationTimestamp"]
    with pytest.raises(InvalidArgumentError, match="cannot be being deleted"):
        await store.create(volume("v2", deletionTimestamp="2026-01-01T00:00:00Z"))


async def test_list_answers_one_kind_and_the_revision_it_was_read_at(store: Store) -> None:
    for name in ("b", "a", "c"):
        await store.create(volume(name))
    last = await store.create({**volume("e"), "kind": "Engine"})
    listing = await store.list("Volume")
    assert [meta(d)["name"] for d in listing.documents] == ["a", "b", "c"]
    assert listing.revision == version(last)
    assert (await store.list("Node")).documents == []


VOLUME, NODE = "lhtrio.io/volume", "lhtrio.io/node"


async def names_selected(store: Store, kind: str, labels: dict[str, str] | None) -> list[object]:
    return [meta(d)["name"] for d in (await store.list(kind, labels=labels)).documents]


async def labelled(store: Store, name: str, kind: str = "Volume", **labels: str) -> Document:
    return await store.create(
        {**volume(name), "kind": kind, "metadata": {"name": name, "labels": labels}}
    )


async def test_a_label_selector_lists_the_objects_holding_every_label_it_names(
    store: Store,
) -> None:
    await labelled(store, "c", **{VOLUME: "x", NODE: "n1"})
    await labelled(store, "a", **{VOLUME: "x", NODE: "n2", "app": "db"})
    await labelled(store, "b", **{VOLUME: "y", NODE: "n1"})
    await labelled(store, "e", "Engine", **{VOLUME: "x", NODE: "n1"})  # another kind
    last = await store.create(volume("d"))  # no labels
    assert await names_selected(store, "Volume", {VOLUME: "x"}) == ["a", "c"]
    assert await names_selected(store, "Volume", {NODE: "n1"}) == ["b", "c"]
    assert await names_selected(store, "Volume", {"app": "db"}) == ["a"]
    assert await names_selected(store, "Volume", {VOLUME: "x", NODE: "n1"}) == ["c"]
    assert await names_selected(store, "Volume", {VOLUME: "y", NODE: "n2"}) == []
    assert await names_selected(store, "Volume", {VOLUME: "z"}) == []
    assert await names_selected(store, "Engine", {VOLUME: "x"}) == ["e"]
    assert await names_selected(store, "Volume", None) == ["a", "b", "c", "d"]
    assert await names_selected(store, "Volume", {}) == ["a", "b", "c", "d"]
    selected = await store.list("Volume", labels={VOLUME: "x"})
    assert selected.revision == version(last) == (await store.list("Volume")).revision
    assert selected.documents == [await store.get("Volume", n) for n in ("a", "c")]
    nothing = await store.list("Volume", labels={VOLUME: "z"})
    assert nothing.revision == version(last)


async def test_changing_labels_moves_an_object_between_selections_and_delete_removes_it(
    store: Store,
) -> None:
    a = await labelled(store, "a", **{VOLUME: "x"})
    await labelled(store, "b", **{VOLUME: "x"})
    moved = await store.update({**a, "metadata": {**meta(a), "labels": {VOLUME: "y"}}})
    assert await names_selected(store, "Volume", {VOLUME: "x"}) == ["b"]
    assert await names_selected(store, "Volume", {VOLUME: "y"}) == ["a"]
    await store.update({**moved, "metadata": {**meta(moved), "labels": {}}})
    assert await names_selected(store, "Volume", {VOLUME: "y"}) == []
    await store.delete("Volume", "b")
    assert await names_selected(store, "Volume", {VOLUME: "x"}) == []
    assert await names_selected(store, "Volume", None) == ["a"]


async def test_a_watch_from_a_selection_revision_sees_every_later_change_of_the_kind(
    store: Store,
) -> None:
    await labelled(store, "a", **{VOLUME: "x"})
    listing = await store.list("Volume", labels={VOLUME: "y"})
    async with store.watch("Volume", listing.revision) as events:
        b = await labelled(store, "b", **{VOLUME: "x"})
        assert await next_events(events, 1) == [(EventType.ADDED, "b", version(b))]


async def test_what_the_store_hands_out_is_the_callers_to_change(store: Store) -> None:
    created = await labelled(store, "a", **{VOLUME: "x"})
    listing = await store.list("Volume")
    async with store.watch("Volume", listing.revision) as events:
        changed = await store.update(created)
        with trio.fail_after(10):
            event = await anext(events)
    for document in (
        created,
        changed,
        event.document,
        await store.get("Volume", "a"),
        *listing.documents,
        *(await store.list("Volume", labels={VOLUME: "x"})).documents,
    ):
        meta(document)["labels"] = {VOLUME: "y"}
        spec = document["spec"]
        assert isinstance(spec, dict)
        spec["numberOfReplicas"] = 1
    assert await names_selected(store, "Volume", {VOLUME: "x"}) == ["a"]
    assert await names_selected(store, "Volume", {VOLUME: "y"}) == []
    assert (await store.get("Volume", "a"))["spec"] == volume("a")["spec"]


async def test_a_label_selector_that_is_not_a_map_of_strings_is_refused(store: Store) -> None:
    with pytest.raises(InvalidArgumentError, match="bad label selector"):
        await store.list("Volume", labels={VOLUME: 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="bad label selector"):
        await store.list("Volume", labels=[(VOLUME, "x")])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 300, "a\x00b", ".", "-x", 5, None])
async def test_hostile_names_are_refused_and_change_nothing(store: Store, name: object) -> None:
    before = await store.list("Volume")
    with pytest.raises(InvalidArgumentError):
        await store.create(volume(name))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await store.get("Volume", name)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await store.delete("Volume", name)  # type: ignore[arg-type]
    after = await store.list("Volume")
    # (the documents, not the listing's revision: a Kubernetes or etcd revision is the whole
    # cluster's, which anything else may move meanwhile; CI saw 1195 then 1196 once)
    assert after.documents == before.documents


@pytest.mark.parametrize("kind", ["", "volume", "../Volume", "Vol ume", 3])
async def test_bad_kinds_are_refused(store: Store, kind: object) -> None:
    with pytest.raises(InvalidArgumentError, match="bad kind"):
        await store.create({**volume("v1"), "kind": kind})
    with pytest.raises(InvalidArgumentError, match="bad kind"):
        await store.list(kind)  # type: ignore[arg-type]


async def test_delete_without_finalizers_removes_the_object(store: Store) -> None:
    created = await store.create(volume("v1"))
    with pytest.raises(ConflictError):
        await store.delete("Volume", "v1", resource_version=str(version(created) + 7))
    assert await store.delete("Volume", "v1", resource_version=str(version(created))) is None
    with pytest.raises(NotFoundError):
        await store.get("Volume", "v1")
    again = await store.create(volume("v1"))
    assert meta(again)["uid"] != meta(created)["uid"]


async def test_a_finalizer_holds_the_object_until_an_update_drops_it(store: Store) -> None:
    created = await store.create(volume("v1", finalizers=["lhtrio.io/cleanup"]))
    requested = await store.delete("Volume", "v1")
    assert requested is not None
    assert meta(requested)["deletionTimestamp"]
    assert await store.get("Volume", "v1") == requested
    assert await store.delete("Volume", "v1") == requested  # asked again: nothing changes
    with pytest.raises(ConflictError, match="no finalizer can be added"):
        await store.update(
            {**requested, "metadata": {**meta(requested), "finalizers": ["a", "lhtrio.io/cleanup"]}}
        )
    forged = {**requested, "metadata": {**meta(requested), "deletionTimestamp": None}}
    kept = await store.update(forged)  # the deletion request cannot be taken back
    assert meta(kept)["deletionTimestamp"] == meta(requested)["deletionTimestamp"]
    await store.update({**kept, "metadata": {**meta(kept), "finalizers": []}})
    with pytest.raises(NotFoundError):
        await store.get("Volume", "v1")
    assert version(created) < version(kept)


async def test_a_watch_from_the_list_revision_sees_every_later_change_in_order(
    store: Store,
) -> None:
    await store.create(volume("old"))
    listing = await store.list("Volume")
    async with store.watch("Volume", listing.revision) as events:
        a = await store.create(volume("a"))
        await store.create({**volume("x"), "kind": "Engine"})  # another kind: not seen
        a2 = await store.update(a)
        await store.delete("Volume", "old")
        seen = await next_events(events, 3)
    assert seen == [
        (EventType.ADDED, "a", version(a)),
        (EventType.MODIFIED, "a", version(a2)),
        (EventType.DELETED, "old", version(a2) + 1),
    ]


async def test_a_watch_from_an_older_revision_replays_what_came_after(store: Store) -> None:
    a = await store.create(volume("a"))
    b = await store.create(volume("b"))
    async with store.watch("Volume", version(a)) as events:
        assert await next_events(events, 1) == [(EventType.ADDED, "b", version(b))]


async def test_a_compacted_revision_is_gone(store: Store) -> None:
    a = await store.create(volume("a"))
    b = await store.update(a)
    await store.compact(version(b))
    with pytest.raises(GoneError, match="list Volume again"):
        async with store.watch("Volume", version(a)):
            pass
    listing = await store.list("Volume")
    async with store.watch("Volume", listing.revision) as events:
        c = await store.create(volume("c"))
        assert await next_events(events, 1) == [(EventType.ADDED, "c", version(c))]


async def test_watchers_wake_for_a_change_made_while_they_wait(store: Store) -> None:
    got: list[tuple[EventType, str, int]] = []
    listing = await store.list("Volume")
    async with trio.open_nursery() as nursery:

        async def watcher() -> None:
            async with store.watch("Volume", listing.revision) as events:
                got.extend(await next_events(events, 1))

        nursery.start_soon(watcher)
        await trio.testing.wait_all_tasks_blocked()
        created = await store.create(volume("late"))
    assert got == [(EventType.ADDED, "late", version(created))]
