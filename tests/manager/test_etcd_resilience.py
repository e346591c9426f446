"""What only the etcd store has among its failures, against a real etcd (tests/conftest.py): a
watch whose member goes away for good moves to another member, losing nothing. What the etcd and
Kubernetes stores share (dropped watches, compaction, concurrent writers) is
test_store_resilience.py."""

from __future__ import annotations

from lhtrio.manager.store.api import EventType
from lhtrio.manager.store.etcd import open_etcd_store
from lhtrio.node.local_etcd import LocalEtcd
from tests.manager.tcp_proxy import open_proxy
from tests.manager.test_store_resilience import doc, prefix, take, target, version


async def test_a_dropped_watch_moves_to_another_member(
    etcd_server: LocalEtcd, etcd_url: str
) -> None:
    direct_member = etcd_server.url.removeprefix("etcd://")
    async with (
        open_etcd_store(etcd_url) as direct,
        open_proxy(target(etcd_server)) as proxy,
        # two members: the proxy first, then etcd itself
        open_etcd_store(f"etcd://{proxy.address},{direct_member}/{prefix(etcd_url)}") as store,
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
