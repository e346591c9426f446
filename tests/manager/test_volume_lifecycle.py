"""A volume's life on three nodes in one process, their store shared in memory: created with
three replicas on three distinct nodes, attached on one (an NBD endpoint there, every replica
RW), detached, deleted (every engine and replica gone from the store and from the nodes)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from lhtrio.clients.node import NodeClient
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume, VolumeAttachment
from lhtrio.models.cluster.attachment import AttachmentTicket, TicketType, VolumeAttachmentSpec
from lhtrio.models.cluster.validate import ClusterObject
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState
from lhtrio.models.volume import Mode
from lhtrio.net import Address, open_rpc_client
from lhtrio.node.server import serve_node
from tests.manager import waiting

MiB = 1 << 20
NODES = ("n1", "n2", "n3")
T = TypeVar("T", bound=ClusterObject)


@attrs.frozen
class Cluster:
    store: MemoryStore
    objects: Objects
    nodes: dict[str, NodeClient]


@asynccontextmanager
async def three_nodes(tmp_path: Path) -> AsyncIterator[Cluster]:
    store = MemoryStore()
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        clients = {}
        for n, name in enumerate(NODES):
            control, _ = await nursery.start(
                functools.partial(
                    serve_node,
                    name,
                    str(tmp_path / name),
                    host="127.0.0.1",
                    nbd=Address(host="127.0.0.1", port=0),
                    port_range=(42200 + 100 * n, 42299 + 100 * n),
                    store=store,
                )
            )
            rpc = await stack.enter_async_context(open_rpc_client(control, client="test"))
            clients[name] = NodeClient(rpc)
        yield Cluster(store, Objects(store), clients)
        nursery.cancel_scope.cancel()


async def until(cluster: Cluster, kind: type[T], name: str, done: Callable[[T], bool]) -> T:
    """The object once ``done`` holds for it."""
    return await waiting.until(cluster.objects, kind, name, done)


async def members(cluster: Cluster) -> tuple[list[Replica], list[Engine]]:
    replicas, _ = await cluster.objects.list(Replica)
    engines, _ = await cluster.objects.list(Engine)
    return replicas, engines


async def test_a_volume_lives_on_three_nodes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=16 * MiB, number_of_replicas=3),
            )
        )
        await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        replicas, _ = await members(cluster)
        assert sorted(r.spec.node_id for r in replicas) == ["n1", "n2", "n3"]

        await objects.change(
            Volume, "v", lambda v: attrs.evolve(v, spec=attrs.evolve(v.spec, node_id="n2"))
        )
        attached = await until(
            cluster,
            Volume,
            "v",
            lambda v: (
                v.status.state is VolumeState.ATTACHED and v.status.robustness is Robustness.HEALTHY
            ),
        )
        assert attached.status.current_node_id == "n2"
        _, (engine,) = await members(cluster)
        assert engine.spec.node_id == "n2"
        assert engine.status.endpoint.endswith("/v")
        assert len(engine.status.replica_mode_map) == 3
        assert "v-e-0" in [i.name for i in await cluster.nodes["n2"].instances()]
        made = [p for n in NODES for p in (tmp_path / n / "replicas").glob("v-r-*")]
        assert len(made) == 3  # (so that their removal below means something)

        await objects.change(
            Volume, "v", lambda v: attrs.evolve(v, spec=attrs.evolve(v.spec, node_id=""))
        )
        detached = await until(
            cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED
        )
        assert detached.status.current_node_id == ""

        await objects.delete(await objects.get(Volume, "v"))
        with trio.fail_after(60):
            while True:
                listing = await cluster.store.list("Volume")
                if not listing.documents:
                    break
                async with cluster.store.watch("Volume", listing.revision) as events:
                    async for _ in events:
                        break
        assert await members(cluster) == ([], [])
        left = [p for n in NODES for p in (tmp_path / n / "replicas").glob("v-r-*")]
        assert left == []  # every node removed its replica's data
        for node in cluster.nodes.values():
            assert [i.name for i in await node.instances() if i.state.value != "stopped"] == []


async def test_a_replica_that_stops_is_failed_then_reused_and_rebuilt(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=16 * MiB, number_of_replicas=3, node_id="n1"),
            )
        )
        await until(
            cluster,
            Volume,
            "v",
            lambda v: (
                v.status.state is VolumeState.ATTACHED and v.status.robustness is Robustness.HEALTHY
            ),
        )
        replicas, _ = await members(cluster)
        (lost,) = [r for r in replicas if r.spec.node_id == "n3"]
        await cluster.nodes["n3"].delete(lost.meta.name)  # its process is gone
        await until(
            cluster,
            Volume,
            "v",
            lambda v: v.status.robustness is Robustness.DEGRADED,
        )
        healed = await until(
            cluster, Volume, "v", lambda v: v.status.robustness is Robustness.HEALTHY
        )
        assert healed.status.state is VolumeState.ATTACHED
        replicas, (engine,) = await members(cluster)
        assert lost.meta.name in [r.meta.name for r in replicas]
        back = await objects.get(Replica, lost.meta.name)  # the same replica, back in place
        assert back.spec.failed_at is None
        assert back.status.port != lost.status.port  # a new instance
        assert engine.status.replica_mode_map == dict.fromkeys(
            sorted(r.meta.name for r in replicas), Mode.RW
        )


def tickets(*items: tuple[str, TicketType, str]) -> dict[str, AttachmentTicket]:
    return {i: AttachmentTicket(id=i, type=t, node_id=n) for i, t, n in items}


async def test_tickets_attach_and_a_snapshot_ticket_yields_to_a_workload_elsewhere(
    tmp_path: Path,
) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=16 * MiB, number_of_replicas=2),
            )
        )
        await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        snapshot = tickets(("snap-1", TicketType.SNAPSHOT, "n1"))
        await objects.create(
            VolumeAttachment(
                meta=ObjectMeta(name="v"),
                spec=VolumeAttachmentSpec(volume="v", attachment_tickets=snapshot),
            )
        )
        await until(
            cluster,
            VolumeAttachment,
            "v",
            lambda a: (
                a.status.attachment_ticket_statuses.get("snap-1") is not None
                and a.status.attachment_ticket_statuses["snap-1"].satisfied
            ),
        )
        assert (await objects.get(Volume, "v")).status.current_node_id == "n1"

        # a workload wants the volume on n2 while the snapshot still holds it on n1
        both = tickets(
            ("snap-1", TicketType.SNAPSHOT, "n1"), ("pod-1", TicketType.CSI_ATTACHER, "n2")
        )
        await objects.change(
            VolumeAttachment,
            "v",
            lambda a: attrs.evolve(a, spec=attrs.evolve(a.spec, attachment_tickets=both)),
        )
        served = await until(
            cluster,
            VolumeAttachment,
            "v",
            lambda a: (
                a.status.attachment_ticket_statuses.get("pod-1") is not None
                and a.status.attachment_ticket_statuses["pod-1"].satisfied
            ),
        )
        assert not served.status.attachment_ticket_statuses["snap-1"].satisfied
        volume = await objects.get(Volume, "v")
        assert volume.status.current_node_id == "n2"
        assert volume.status.state is VolumeState.ATTACHED
