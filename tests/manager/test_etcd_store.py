"""The etcd store beyond the conformance suite, against a real etcd (tests/conftest.py):
its members and URL, its key layout (prefixes, kinds, long lists read at one revision), damaged
values, node leases that are etcd leases, and the admin API's 503 while etcd is away."""

from __future__ import annotations

import base64
import functools
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.errors import CorruptMetadataError, InvalidArgumentError, NotFoundError, StorageError
from lhtrio.manager.lease import available_nodes, keep_lease
from lhtrio.manager.objects import Objects
from lhtrio.manager.store import etcd
from lhtrio.manager.store.api import EventType, Listing
from lhtrio.manager.store.etcd import open_etcd_store
from lhtrio.manager.store.etcd_client import Answer
from lhtrio.manager.store.etcd_format import Json, object_key
from lhtrio.manager.store.open import open_store
from lhtrio.node.local_etcd import LocalEtcd, local_etcd
from tests.manager.tcp_proxy import open_proxy
from tests.manager.test_store_resilience import collect, doc, name, prefix, target, version

TOKEN = "t0ken"


def names(listing: Listing) -> list[str]:
    return [name(d) for d in listing.documents]


async def test_an_unreachable_etcd_is_a_storage_error_at_once() -> None:
    with (
        socket_closed() as port,
        trio.fail_after(10),
        pytest.raises(StorageError, match="etcd is unreachable"),
    ):
        async with open_etcd_store(f"etcd://127.0.0.1:{port}"):
            pass


@contextmanager
def socket_closed() -> Iterator[int]:
    """A loopback port nothing listens on (bound, not listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


async def test_the_members_are_tried_in_turn(etcd_server: LocalEtcd, etcd_url: str) -> None:
    member = etcd_server.url.removeprefix("etcd://")
    with socket_closed() as dead:
        async with open_store(f"etcd://127.0.0.1:{dead},{member}/{prefix(etcd_url)}") as store:
            created = await store.create(doc("a"))
            assert await store.get("Volume", "a") == created


@pytest.mark.parametrize(
    "url", ["etcd://", "etcd://h", "etcd://h:0", "etcd://h:2379,", "etcd://h:1/a b", "http://h:1"]
)
async def test_a_bad_url_is_refused_before_anything_is_tried(url: str) -> None:
    with pytest.raises(InvalidArgumentError):
        async with open_etcd_store(url):
            pass


async def test_prefixes_and_kinds_keep_to_their_own_keys(etcd_server: LocalEtcd) -> None:
    async with (
        open_etcd_store(f"{etcd_server.url}/p-one") as one,
        open_etcd_store(f"{etcd_server.url}/p-two") as two,
    ):
        start = await one.list("Volume")
        await one.create(doc("a"))
        await one.create({**doc("x"), "kind": "VolumeAttachment"})  # shares Volume's letters
        await two.create(doc("b"))
        assert names(await one.list("Volume")) == ["a"]
        assert names(await one.list("VolumeAttachment")) == ["x"]
        assert names(await two.list("Volume")) == ["b"]
        with pytest.raises(NotFoundError):
            await two.get("Volume", "a")
        async with one.watch("Volume", start.revision) as events:
            seen = await collect(events, 1)
        assert [(e.type, name(e.document)) for e in seen] == [(EventType.ADDED, "a")]


async def test_a_long_list_is_read_in_pages_at_one_revision(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd, "PAGE", 3)
    async with open_etcd_store(etcd_url) as store, open_etcd_store(etcd_url) as other:
        for n in range(10):
            last = await store.create(doc(f"v{n:02}"))
        pages: list[Json] = []
        answer = store.client.answer

        async def paged(path: str, body: Json) -> Answer:
            pages.append(body)
            if len(pages) == 2:  # a change between two pages is not in the list
                await other.create(doc("v05a"))
                await other.delete("Volume", "v09")
            return await answer(path, body)

        monkeypatch.setattr(store.client, "answer", paged)
        listing = await store.list("Volume")
    assert names(listing) == [f"v{n:02}" for n in range(10)]
    assert listing.revision == version(last)
    assert len(pages) == 4


async def test_a_value_that_is_not_a_document_is_corrupt_metadata(etcd_url: str) -> None:
    async with open_etcd_store(etcd_url) as store:
        key = object_key(store.prefix, "Volume", "bad")
        for value in (b"not json", b"[1, 2]", b'{"spec": {}}'):
            await store.client.call(
                "kv/put", {"key": key, "value": base64.b64encode(value).decode()}
            )
            with pytest.raises(CorruptMetadataError, match="/Volume/bad"):
                await store.get("Volume", "bad")
            with pytest.raises(CorruptMetadataError):
                await store.list("Volume")


async def raw(store: etcd.EtcdStore, kind: str, name: str) -> Json:
    answer = await store.client.call("kv/range", {"key": object_key(store.prefix, kind, name)})
    kvs = answer["kvs"]
    assert isinstance(kvs, list)
    kv = kvs[0]
    assert isinstance(kv, dict)
    return kv


async def held(
    start: Callable[..., Awaitable[None]], *, task_status: trio.TaskStatus[trio.CancelScope]
) -> None:
    """Run ``start`` (a task that reports it started) under a cancel scope of its own, reported
    to the caller (cancel it to stop just that task)."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(start)
            task_status.started(scope)


async def test_a_node_lease_is_an_etcd_lease_and_leaves_etcd_when_not_renewed(
    etcd_url: str,
) -> None:
    async with open_etcd_store(etcd_url) as store:
        start = await store.list("NodeLease")
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(keep_lease, store, "n2", duration=30))
            n1 = await nursery.start(
                held, functools.partial(keep_lease, store, "n1", duration=2, every=0.3)
            )
            assert await available_nodes(store) == {"n1", "n2"}
            kv = await raw(store, "NodeLease", "n1")
            alive = await store.client.call("lease/timetolive", {"ID": kv["lease"]})
            assert alive["grantedTTL"] == "2"
            assert 0 < int(str(alive["TTL"])) <= 2

            async with store.watch("NodeLease", start.revision) as events:
                renewals = await collect(events, 5)  # n1, n2 created; n1 renewed
                kinds = [(e.type, name(e.document)) for e in renewals]
                assert kinds[:2] == [(EventType.ADDED, "n2"), (EventType.ADDED, "n1")]
                assert kinds[2:] == [(EventType.MODIFIED, "n1")] * 3
                n1.cancel()  # node n1 stops renewing (as a dead node does)
                with trio.fail_after(15):
                    async for event in events:
                        if event.type is EventType.DELETED:
                            break
            assert name(event.document) == "n1"  # etcd removed it when its lease ran out
            with pytest.raises(NotFoundError):
                await store.get("NodeLease", "n1")
            assert await available_nodes(store) == {"n2"}  # no lease: down
            nursery.cancel_scope.cancel()


async def test_the_api_answers_503_while_etcd_is_away_and_changes_nothing(
    etcd_server: LocalEtcd, etcd_url: str
) -> None:
    async with (
        open_etcd_store(etcd_url) as direct,
        open_proxy(target(etcd_server)) as proxy,
        open_etcd_store(f"etcd://{proxy.address}/{prefix(etcd_url)}") as store,
        trio.open_nursery() as nursery,
    ):
        url = await nursery.start(
            functools.partial(serve_api, Objects(store), "127.0.0.1", 0, token=TOKEN)
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"name": "v1", "size": "1Gi", "numberOfReplicas": 2}
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=auth) as http:
            proxy.down()
            listed = await http.get("/v1/volumes")
            created = await http.post("/v1/volumes", json=body)
            for response in (listed, created):
                assert response.status_code == 503, response.text
                assert "etcd is unreachable" in response.text
            assert (await direct.list("Volume")).documents == []
            await proxy.up()
            assert (await http.get("/v1/volumes")).json()["data"] == []
            again = await http.post("/v1/volumes", json=body)
            assert again.status_code == 201, again.text
        assert names(await direct.list("Volume")) == ["v1"]
        nursery.cancel_scope.cancel()


def test_a_local_etcd_without_the_program_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(RuntimeError, match="apt-get install -y --no-install-recommends etcd"),
        local_etcd(tmp_path),
    ):
        pass
