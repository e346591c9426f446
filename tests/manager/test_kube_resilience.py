"""The Kubernetes store's watches and writes when things go wrong, against the API double over a
real etcd (tests/manager/kube.py), as the etcd store's are tested (test_etcd_resilience.py): a
watch whose connection drops resumes from the last revision it saw (an event or a bookmark),
losing and repeating nothing; a watch whose API server stays away fails with StorageError; a
watcher whose revision was compacted while it was away gets GoneError, and the runner lists again
and converges; two stores (two clients) updating one object: exactly one wins each round, the
other conflicts and wins from a fresh read, and no update is lost."""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from lhtrio.errors import ConflictError, NotFoundError, StorageError
from lhtrio.manager import runner
from lhtrio.manager.objects import Objects
from lhtrio.manager.store import kubernetes
from lhtrio.manager.store.api import Document, EventType, Listing, WatchEvent
from lhtrio.manager.store.kubernetes import KubernetesStore, open_kubernetes_store
from lhtrio.models.cluster import ObjectMeta, Volume
from lhtrio.models.cluster.volume import VolumeSpec
from tests.manager.kube import KubeCluster, write_kubeconfig
from tests.manager.tcp_proxy import Proxy, open_proxy

MiB = 1 << 20


def doc(name: str, **labels: str) -> Document:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": str(32 * MiB)},
    }


def relabelled(document: Document, **labels: str) -> Document:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return {**document, "metadata": {**meta, "labels": labels}}


def version(document: Document) -> int:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return int(str(meta["resourceVersion"]))


def name(document: Document) -> str:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return str(meta["name"])


def labels(document: Document) -> dict[str, str]:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    found = meta.get("labels") or {}
    assert isinstance(found, dict)
    return found


@asynccontextmanager
async def direct(cluster: KubeCluster) -> AsyncIterator[KubernetesStore]:
    async with open_kubernetes_store(str(cluster.kubeconfig), compactor=cluster.compact) as store:
        yield store


@asynccontextmanager
async def through_proxy(
    cluster: KubeCluster, directory: Path
) -> AsyncIterator[tuple[Proxy, KubernetesStore]]:
    """A proxy to the double and a store reaching it through the proxy."""
    url = urllib.parse.urlsplit(cluster.url)
    assert url.hostname is not None
    assert url.port is not None
    async with open_proxy((url.hostname, url.port)) as proxy:
        config = write_kubeconfig(directory / "proxied", f"http://{proxy.address}")
        async with open_kubernetes_store(str(config)) as store:
            yield proxy, store


async def collect(events: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    out = []
    with trio.fail_after(20):
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
    return out


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[tuple[EventType, str, int]]:
    return [(e.type, name(e.document), e.revision) for e in await collect(events, count)]


async def test_a_dropped_watch_resumes_from_its_last_revision_losing_and_repeating_nothing(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    async with (
        direct(kube_cluster) as writer,
        through_proxy(kube_cluster, tmp_path) as (proxy, watched),
    ):
        listing = await watched.list("Volume")
        async with watched.watch("Volume", listing.revision) as events:
            a = await writer.create(doc("a"))
            assert await take(events, 1) == [(EventType.ADDED, "a", version(a))]
            before = proxy.connections

            proxy.down()  # the watch's connection is cut; the API server cannot be reached
            a2 = await writer.update(relabelled(a, n="1"))
            b = await writer.create(doc("b"))
            await writer.delete("Volume", "a")
            await proxy.up()

            c = await writer.create(doc("c"))
            assert await take(events, 4) == [
                (EventType.MODIFIED, "a", version(a2)),
                (EventType.ADDED, "b", version(b)),
                (EventType.DELETED, "a", version(b) + 1),
                (EventType.ADDED, "c", version(c)),
            ]
            assert proxy.connections > before  # it did connect again


async def test_a_watch_whose_api_server_stays_away_fails_with_a_storage_error(
    kube_cluster: KubeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubernetes, "RECONNECT", 0.3)
    async with through_proxy(kube_cluster, tmp_path) as (proxy, store):
        listing = await store.list("Volume")
        async with store.watch("Volume", listing.revision) as events:
            proxy.down()
            with trio.fail_after(10), pytest.raises(StorageError, match="did not answer again"):
                await take(events, 1)


class Lists(KubernetesStore):
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
    kube_cluster: KubeCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lhtrio.manager.runner")
    async with (
        direct(kube_cluster) as writer,
        through_proxy(kube_cluster, tmp_path) as (proxy, watched),
    ):
        a = await writer.create(doc("a", n="0"))
        await writer.create(doc("b", n="0"))
        seen = Seen()

        async def reconcile(name: str) -> None:
            try:
                seen.note(name, labels(await writer.get("Volume", name)))
            except NotFoundError:
                seen.note(name, None)

        counted = Lists(watched.client, watched.server, watched.namespace)
        async with trio.open_nursery() as nursery:
            run = functools.partial(runner.run_reconciler, counted, "Volume", reconcile)
            await nursery.start(functools.partial(run, resync=1e6))
            await seen.until({"a": {"n": "0"}, "b": {"n": "0"}})

            proxy.down()
            await writer.update(relabelled(a, n="1"))
            await writer.delete("Volume", "b")
            c = await writer.create(doc("c", n="2"))
            await writer.compact(version(c))  # the watcher's revision is gone
            await proxy.up()

            await seen.until({"a": {"n": "1"}, "b": None, "c": {"n": "2"}})
            assert counted.lists == 2  # listed again after GoneError
            gone = [r.getMessage() for r in caplog.records if "fell behind" in r.getMessage()]
            assert len(gone) == 1
            assert gone[0].startswith("Volume watch: the watch of Volume fell behind revision ")
            assert gone[0].endswith("list Volume again; listing again")
            nursery.cancel_scope.cancel()


def counter(value: int) -> Callable[[Volume], Volume]:
    def bump(volume: Volume) -> Volume:
        count = int(volume.meta.labels["n"])
        labels = {**volume.meta.labels, "n": str(count + value)}
        return attrs.evolve(volume, meta=attrs.evolve(volume.meta, labels=labels))

    return bump


async def test_of_two_stores_updating_one_object_exactly_one_wins_each_round(
    kube_cluster: KubeCluster,
) -> None:
    rounds = 10
    async with direct(kube_cluster) as one, direct(kube_cluster) as two:
        stores = {"one": Objects(one), "two": Objects(two)}
        created = await stores["one"].create(
            Volume(meta=ObjectMeta(name="v", labels={"n": "0"}), spec=VolumeSpec(size=32 * MiB))
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
            seen = [int(labels(e.document)["n"]) for e in await collect(events, 2 * rounds)]
        assert seen == list(range(1, 2 * rounds + 1))  # every write once, in order

        async def increment(objects: Objects) -> None:
            for _ in range(25):
                await objects.change(Volume, "v", counter(1))

        async with trio.open_nursery() as nursery:  # both at once, each retrying its conflicts
            for objects in stores.values():
                nursery.start_soon(increment, objects)
        final = await stores["two"].get(Volume, "v")
        assert final.meta.labels["n"] == str(2 * rounds + 2 * 25)  # no update lost
