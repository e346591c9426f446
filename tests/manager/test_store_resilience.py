"""The networked stores' watches and writes when things go wrong, one suite for both: etcd (a
real etcd, tests/conftest.py) and Kubernetes (the API double over that etcd,
tests/manager/kube.py). A watch whose connection drops resumes from the last revision it saw,
losing and repeating nothing; a watch whose server stays away fails with StorageError; a watcher
whose revision was compacted while it was away gets GoneError, and the runner lists again and
converges; two stores (two clients) updating one object: exactly one wins each round, the other
conflicts and wins from a fresh read, and no update is lost. What only etcd has (a watch moving
to another member) is in test_etcd_resilience.py."""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import ModuleType

import attrs
import pytest
import trio

from lhtrio.errors import ConflictError, NotFoundError, StorageError
from lhtrio.manager import runner
from lhtrio.manager.objects import Objects
from lhtrio.manager.store import etcd, kubernetes
from lhtrio.manager.store.api import Document, EventType, Listing, Store, WatchEvent
from lhtrio.manager.store.etcd import open_etcd_store
from lhtrio.manager.store.etcd_client import open_etcd_client
from lhtrio.manager.store.kubernetes import open_kubernetes_store
from lhtrio.models.cluster import ObjectMeta, Volume
from lhtrio.models.cluster.volume import VolumeSpec
from lhtrio.node.local_etcd import LocalEtcd
from tests.manager.kube import start_kube_cluster, write_kubeconfig
from tests.manager.tcp_proxy import Proxy, open_proxy

MiB = 1 << 20


@attrs.frozen
class Backend:
    """How a test reaches one store: ``direct()`` a store of its own; ``through_proxy()`` a
    proxy and a store reaching the server through it; ``module``: where its RECONNECT is;
    ``compacted``: how the server says a revision was compacted away."""

    direct: Callable[[], AbstractAsyncContextManager[Store]]
    through_proxy: Callable[[], AbstractAsyncContextManager[tuple[Proxy, Store]]]
    module: ModuleType
    compacted: str


def target(server: LocalEtcd) -> tuple[str, int]:
    """Where ``server``'s clients connect (for a proxy in between)."""
    host, _, port = server.client.removeprefix("http://").rpartition(":")
    return host, int(port)


def prefix(url: str) -> str:
    """The key prefix of an ``etcd://`` store URL."""
    return url.rpartition("/")[2]


@asynccontextmanager
async def _proxied_etcd(server: LocalEtcd, url: str) -> AsyncIterator[tuple[Proxy, Store]]:
    async with (
        open_proxy(target(server)) as proxy,
        open_etcd_store(f"etcd://{proxy.address}/{prefix(url)}") as store,
    ):
        yield proxy, store


@asynccontextmanager
async def _proxied_kube(url: str, directory: Path) -> AsyncIterator[tuple[Proxy, Store]]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    async with open_proxy((parts.hostname, parts.port)) as proxy:
        config = write_kubeconfig(directory / "proxied", f"http://{proxy.address}")
        async with open_kubernetes_store(str(config)) as store:
            yield proxy, store


@pytest.fixture(params=["etcd", "kubernetes"])
async def backend(
    request: pytest.FixtureRequest,
    etcd_server: LocalEtcd,
    etcd_url: str,
    nursery: trio.Nursery,
    tmp_path: Path,
) -> AsyncIterator[Backend]:
    if request.param == "etcd":
        yield Backend(
            direct=functools.partial(open_etcd_store, etcd_url),
            through_proxy=functools.partial(_proxied_etcd, etcd_server, etcd_url),
            module=etcd,
            compacted="(etcd compacted it)",
        )
        return
    async with open_etcd_client([etcd_server.client]) as client:
        cluster = await start_kube_cluster(nursery, etcd_server, client, tmp_path)
        yield Backend(
            direct=functools.partial(
                open_kubernetes_store, str(cluster.kubeconfig), compactor=cluster.compact
            ),
            through_proxy=functools.partial(_proxied_kube, cluster.url, tmp_path),
            module=kubernetes,
            compacted="(too old resource version: ",
        )


def doc(name: str, **labels: str) -> Document:
    """A Volume document every store takes (a Kubernetes API server checks it against its CRD)."""
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": str(32 * MiB)},
    }


def _meta(document: Document) -> dict[str, object]:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return meta


def name(document: Document) -> str:
    return str(_meta(document)["name"])


def relabelled(document: Document, **labels: str) -> Document:
    return {**document, "metadata": {**_meta(document), "labels": labels}}


def version(document: Document) -> int:
    return int(str(_meta(document)["resourceVersion"]))


def labels(document: Document) -> dict[str, str]:
    found = _meta(document).get("labels") or {}
    assert isinstance(found, dict)
    return found


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
    backend: Backend,
) -> None:
    async with backend.direct() as writer, backend.through_proxy() as (proxy, watched):
        listing = await watched.list("Volume")
        async with watched.watch("Volume", listing.revision) as events:
            a = await writer.create(doc("a"))
            assert await take(events, 1) == [(EventType.ADDED, "a", version(a))]
            before = proxy.connections

            proxy.down()  # the watch's connection is cut; the server cannot be reached
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


async def test_a_watch_whose_server_stays_away_fails_with_a_storage_error(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend.module, "RECONNECT", 0.3)
    async with backend.through_proxy() as (proxy, store):
        listing = await store.list("Volume")
        async with store.watch("Volume", listing.revision) as events:
            proxy.down()
            with trio.fail_after(10), pytest.raises(StorageError, match="did not answer again"):
                await take(events, 1)


@attrs.define
class Lists:
    """A store that counts its lists (how often the runner listed), tells when a watch is open
    (``watching``: the store checked that it keeps the watch's revision), and is otherwise
    ``inner``."""

    inner: Store
    lists: int = 0
    watching: trio.Event = attrs.field(factory=trio.Event)

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        self.lists += 1
        return await self.inner.list(kind, labels=labels)

    @asynccontextmanager
    async def watch(self, kind: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        async with self.inner.watch(kind, revision) as events:
            self.watching.set()
            yield events

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


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
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lhtrio.manager.runner")
    async with backend.direct() as writer, backend.through_proxy() as (proxy, watched):
        a = await writer.create(doc("a", n="0"))
        await writer.create(doc("b", n="0"))
        seen = Seen()

        async def reconcile(name: str) -> None:
            try:
                seen.note(name, labels(await writer.get("Volume", name)))
            except NotFoundError:
                seen.note(name, None)

        counted = Lists(watched)
        async with trio.open_nursery() as nursery:
            run = functools.partial(runner.run_reconciler, counted, "Volume", reconcile)  # type: ignore[arg-type]
            await nursery.start(functools.partial(run, resync=1e6))
            await seen.until({"a": {"n": "0"}, "b": {"n": "0"}})
            await counted.watching.wait()  # (cut while the watch starts, it would list at once)

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
            assert backend.compacted in gone[0]
            assert gone[0].endswith("list Volume again; listing again")
            nursery.cancel_scope.cancel()


def counter(value: int) -> Callable[[Volume], Volume]:
    def bump(volume: Volume) -> Volume:
        count = int(volume.meta.labels["n"])
        labels = {**volume.meta.labels, "n": str(count + value)}
        return attrs.evolve(volume, meta=attrs.evolve(volume.meta, labels=labels))

    return bump


async def test_of_two_stores_updating_one_object_exactly_one_wins_each_round(
    backend: Backend,
) -> None:
    rounds = 10
    async with backend.direct() as one, backend.direct() as two:
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
