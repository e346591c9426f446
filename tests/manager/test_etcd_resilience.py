"""The etcd store's watches and writes when things go wrong, against a real etcd
(tests/conftest.py): a dropped watch connection resumes from its last revision, losing
and repeating nothing (through the same member, or another); a watcher whose revision etcd
compacted while it was away gets GoneError and the runner lists again and converges; two stores
(two clients) updating one object: exactly one wins each round, the other conflicts and wins
from a fresh read."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from lhtrio.errors import ConflictError, NotFoundError, StorageError
from lhtrio.manager import runner
from lhtrio.manager.objects import Objects
from lhtrio.manager.store import etcd
from lhtrio.manager.store.api import Document, EventType, Listing, WatchEvent
from lhtrio.manager.store.etcd import EtcdStore, open_etcd_store
from lhtrio.models.cluster import ObjectMeta, Volume
from lhtrio.models.cluster.volume import VolumeSpec
from lhtrio.node.local_etcd import LocalEtcd
from tests.manager.tcp_proxy import Proxy, open_proxy

MiB = 1 << 20


def doc(name: str, **spec: object) -> Document:
    return {"kind": "Volume", "metadata": {"name": name}, "spec": dict(spec)}


def version(document: Document) -> int:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return int(str(meta["resourceVersion"]))


def target(server: LocalEtcd) -> tuple[str, int]:
    host, _, port = server.client.removeprefix("http://").rpartition(":")
    return host, int(port)


def prefix(url: str) -> str:
    return url.rpartition("/")[2]


@asynccontextmanager
async def through_proxy(
    server: LocalEtcd, url: str, *, also_direct: bool = False
) -> AsyncIterator[tuple[Proxy, EtcdStore]]:
    """A proxy to ``server`` and a store reaching etcd through it (first; then etcd itself, as a
    second member, if ``also_direct``)."""
    async with open_proxy(target(server)) as proxy:
        members = proxy.address + (f",{server.url.removeprefix('etcd://')}" if also_direct else "")
        async with open_etcd_store(f"etcd://{members}/{prefix(url)}") as store:
            yield proxy, store


async def collect(events: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    out = []
    with trio.fail_after(20):
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
    return out


def name(document: Document) -> str:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return str(meta["name"])


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[tuple[EventType, str, int]]:
    return [(e.type, name(e.document), e.revision) for e in await collect(events, count)]


async def test_a_dropped_watch_resumes_from_its_last_revision_losing_and_repeating_nothing(
    etcd_server: LocalEtcd, etcd_url: str
) -> None:
    async with (
        open_etcd_store(etcd_url) as direct,
        through_proxy(etcd_server, etcd_url) as (proxy, watched),
    ):
        listing = await watched.list("Volume")
        async with watched.watch("Volume", listing.revision) as events:
            a = await direct.create(doc("a"))
            assert await take(events, 1) == [(EventType.ADDED, "a", version(a))]
            before = proxy.connections

            proxy.down()  # the watch's connection is cut; etcd cannot be reached
            a2 = await direct.update({**a, "spec": {"n": 1}})
            b = await direct.create(doc("b"))
            await direct.delete("Volume", "a")
            await proxy.up()

            c = await direct.create(doc("c"))
            assert await take(events, 4) == [
                (EventType.MODIFIED, "a", version(a2)),
                (EventType.ADDED, "b", version(b)),
                (EventType.DELETED, "a", version(b) + 1),
                (EventType.ADDED, "c", version(c)),
            ]
            assert proxy.connections > before  # it did connect again


async def test_a_dropped_watch_moves_to_another_member(
    etcd_server: LocalEtcd, etcd_url: str
) -> None:
    async with (
        open_etcd_store(etcd_url) as direct,
        through_proxy(etcd_server, etcd_url, also_direct=True) as (proxy, store),
    ):
        a = await store.create(doc("a"))
        async with store.watch("Volume", version(a)) as events:
            b = await direct.create(doc("b"))
            assert await take(events, 1) == [(EventType.ADDED, "b", version(b))]
            proxy.down()  # for good: the first member is gone
            c = await direct.create(doc("c"))
            assert await take(events, 1) == [(EventType.ADDED, "c", version(c))]
            d = await store.create(doc("d"))  # calls go to the member that answers
            assert await take(events, 1) == [(EventType.ADDED, "d", version(d))]
        assert [version(x) for x in (await store.list("Volume")).documents] == [
            version(a),
            version(b),
            version(c),
            version(d),
        ]


async def test_a_watch_whose_etcd_stays_away_fails_with_a_storage_error(
    etcd_server: LocalEtcd, etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd, "RECONNECT", 0.3)
    async with through_proxy(etcd_server, etcd_url) as (proxy, store):
        listing = await store.list("Volume")
        async with store.watch("Volume", listing.revision) as events:
            proxy.down()
            with trio.fail_after(10), pytest.raises(StorageError, match="did not answer again"):
                await take(events, 1)


class Lists(EtcdStore):
    """The same store, counting its lists (how often the runner listed)."""

    lists = 0

    async def list(self, kind: str) -> Listing:
        self.lists += 1
        return await super().list(kind)


@attrs.define
class Seen:
    """What a reconciler saw of each name (None: gone), and a wake-up on each change."""

    state: dict[str, object] = attrs.field(factory=dict)
    changed: trio.Event = attrs.field(factory=trio.Event)

    def note(self, name: str, value: object) -> None:
        self.state[name] = value
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, wanted: dict[str, object]) -> None:
        with trio.fail_after(30):
            while self.state != wanted:
                await self.changed.wait()


async def test_a_watcher_compacted_past_while_away_lists_again_and_converges(
    etcd_server: LocalEtcd, etcd_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lhtrio.manager.runner")
    async with (
        open_etcd_store(etcd_url) as direct,
        through_proxy(etcd_server, etcd_url) as (proxy, watched),
    ):
        a = await direct.create(doc("a", n=0))
        await direct.create(doc("b", n=0))
        seen = Seen()

        async def reconcile(name: str) -> None:
            try:
                seen.note(name, (await direct.get("Volume", name))["spec"])
            except NotFoundError:
                seen.note(name, None)

        counted = Lists(watched.client, watched.prefix)
        async with trio.open_nursery() as nursery:
            run = functools.partial(runner.run_reconciler, counted, "Volume", reconcile)
            await nursery.start(functools.partial(run, resync=1e6))
            await seen.until({"a": {"n": 0}, "b": {"n": 0}})

            proxy.down()
            await direct.update({**a, "spec": {"n": 1}})
            await direct.delete("Volume", "b")
            c = await direct.create(doc("c", n=2))
            await direct.compact(version(c))  # the watcher's revision is gone
            await proxy.up()

            await seen.until({"a": {"n": 1}, "b": None, "c": {"n": 2}})
            assert counted.lists == 2  # listed again after GoneError
            gone = [r.getMessage() for r in caplog.records if "etcd compacted it" in r.getMessage()]
            assert gone == [
                "Volume watch: the watch of Volume fell behind revision "
                f"{version(c)} (etcd compacted it): list Volume again; listing again"
            ]
            nursery.cancel_scope.cancel()


def counter(value: int) -> Callable[[Volume], Volume]:
    def bump(volume: Volume) -> Volume:
        count = int(volume.meta.labels["n"])
        labels = {**volume.meta.labels, "n": str(count + value)}
        return attrs.evolve(volume, meta=attrs.evolve(volume.meta, labels=labels))

    return bump


async def test_of_two_stores_updating_one_object_exactly_one_wins_each_round(
    etcd_url: str,
) -> None:
    rounds = 10
    async with open_etcd_store(etcd_url) as one, open_etcd_store(etcd_url) as two:
        stores = {"one": Objects(one), "two": Objects(two)}
        created = await stores["one"].create(
            Volume(
                meta=ObjectMeta(name="v", labels={"n": "0"}),
                spec=VolumeSpec(size=32 * MiB),
            )
        )
        async with one.watch("Volume", created.meta.resource_version) as events:
            for _ in range(rounds):
                read = await stores["one"].get(Volume, "v")  # both write from this version
                outcome: dict[str, str] = {}

                async def write(
                    label: str, read: Volume = read, out: dict[str, str] = outcome
                ) -> None:
                    try:
                        await stores[label].update(counter(1)(read))
                        out[label] = "won"
                    except ConflictError:
                        out[label] = "conflict"

                async with trio.open_nursery() as nursery:
                    for label in stores:
                        nursery.start_soon(write, label)
                assert sorted(outcome.values()) == ["conflict", "won"]
                loser = next(label for label, result in outcome.items() if result == "conflict")
                await stores[loser].change(Volume, "v", counter(1))  # from a fresh read
            seen = [int(count_of(e.document)) for e in await collect(events, 2 * rounds)]
        assert seen == list(range(1, 2 * rounds + 1))  # every write once, in order

        async def increment(objects: Objects) -> None:
            for _ in range(25):
                await objects.change(Volume, "v", counter(1))

        async with trio.open_nursery() as nursery:  # both at once, each retrying its conflicts
            for objects in stores.values():
                nursery.start_soon(increment, objects)
        final = await stores["two"].get(Volume, "v")
        assert final.meta.labels["n"] == str(2 * rounds + 2 * 25)  # no update lost


def count_of(document: Document) -> str:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    labels = meta["labels"]
    assert isinstance(labels, dict)
    return str(labels["n"])
