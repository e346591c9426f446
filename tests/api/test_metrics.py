"""``/metrics`` of a node that serves a volume: three in-process nodes (real engines and replicas)
on one store, the API of the node the volume is attached to, qemu-io writing and reading through
NBD. Parsed with prometheus-client's parser: IOPS and throughput move with the I/O, robustness
follows a replica that stops (degraded, then healthy once it is rebuilt), the process' own
metrics are there; and the volume's events tell the same story."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from lhtrio.api import serve_api
from lhtrio.clients.node import NodeClient
from lhtrio.manager import tickets
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import ObjectMeta, Replica, Volume
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState
from lhtrio.net import Address, open_rpc_client
from lhtrio.node.probe import NodeProbe
from lhtrio.node.server import serve_node
from tests.api.conftest import AUTH, TOKEN
from tests.manager import waiting
from tests.manager.test_cluster_processes import qemu_io

pytestmark = pytest.mark.real  # drives qemu-io

MiB = 1 << 20
NODES = ("n1", "n2", "n3")
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@attrs.frozen
class Served:
    objects: Objects
    nodes: dict[str, NodeClient]
    client: httpx.AsyncClient  # n1's API

    async def scrape(self) -> Sample:
        answer = await self.client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples
        }


@asynccontextmanager
async def three_nodes_and_an_api(tmp_path: Path) -> AsyncIterator[Served]:
    store = MemoryStore()
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        clients, probes = {}, {}
        for n, name in enumerate(NODES):
            probes[name] = NodeProbe(name)
            control, _ = await nursery.start(
                functools.partial(
                    serve_node,
                    name,
                    str(tmp_path / name),
                    host="127.0.0.1",
                    nbd=Address(host="127.0.0.1", port=0),
                    port_range=(43200 + 100 * n, 43299 + 100 * n),
                    store=store,
                    probe=probes[name],
                )
            )
            rpc = await stack.enter_async_context(open_rpc_client(control, client="test"))
            clients[name] = NodeClient(rpc)
        url = await nursery.start(
            functools.partial(
                serve_api, Objects(store), "127.0.0.1", 0, token=TOKEN, node=probes["n1"]
            )
        )
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH)
        )
        yield Served(Objects(store), clients, client)
        nursery.cancel_scope.cancel()


VOLUME = (("node", "n1"), ("volume", "v"))


async def robustness_becomes(served: Served, value: int) -> Sample:
    """Scrape until the volume's robustness is ``value``, scraping again at each change of the
    volume (the store's watch: no sleeps)."""
    with trio.fail_after(60):
        while True:
            _, revision = await served.objects.list(Volume)
            got = await served.scrape()
            if got.get(("lhtrio_volume_robustness", VOLUME)) == value:
                return got
            async with served.objects.store.watch("Volume", revision) as changes:
                async for _ in changes:
                    break


async def test_io_moves_the_rates_and_robustness_follows_a_stopped_replica(
    tmp_path: Path,
) -> None:
    async with three_nodes_and_an_api(tmp_path) as served:
        objects = served.objects
        await objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=16 * MiB, number_of_replicas=3),
            )
        )
        await waiting.until(objects, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        await tickets.add_ticket(objects, "v", "n1")
        await waiting.until(
            objects,
            Volume,
            "v",
            lambda v: (
                v.status.state is VolumeState.ATTACHED and v.status.robustness is Robustness.HEALTHY
            ),
        )
        uri = (await served.client.get("/v1/engines/v-e-0")).json()["status"]["endpoint"]
        assert uri.startswith("nbd://127.0.0.1:")

        idle = await served.scrape()  # the first reading: rates from here on
        assert idle["lhtrio_volume_state", VOLUME] == 2  # attached
        assert idle["lhtrio_volume_robustness", VOLUME] == 1  # healthy
        assert idle["lhtrio_volume_capacity_bytes", VOLUME] == 16 * MiB
        assert idle["lhtrio_volume_write_ops_total", VOLUME] == 0
        assert idle["lhtrio_process_resident_memory_bytes", ()] > 0
        assert idle["lhtrio_process_open_fds", ()] > 0
        assert ("lhtrio_process_cpu_seconds_total", ()) in idle
        assert idle["lhtrio_trio_tasks_living", ()] > 10
        assert idle["lhtrio_node_storage_capacity_bytes", (("node", "n1"),)] > 0
        assert ("lhtrio_node_storage_capacity_bytes", (("node", "n2"),)) not in idle

        writes = [f"write -P 0x5a {n * 64}k 64k" for n in range(64)]
        await qemu_io(uri, *writes, "flush")
        wrote = await served.scrape()
        assert wrote["lhtrio_volume_write_ops_total", VOLUME] >= 64
        assert wrote["lhtrio_volume_write_bytes_total", VOLUME] >= 4 * MiB
        assert wrote["lhtrio_volume_write_iops", VOLUME] > 0
        assert wrote["lhtrio_volume_write_throughput", VOLUME] > 0
        assert wrote["lhtrio_volume_write_latency", VOLUME] > 0  # ns per write
        assert wrote["lhtrio_volume_read_iops", VOLUME] == 0

        out = await qemu_io(uri, *[f"read -P 0x5a {n * 64}k 64k" for n in range(64)])
        assert "Pattern verification failed" not in out, out
        read = await served.scrape()
        assert read["lhtrio_volume_read_ops_total", VOLUME] >= 64
        assert read["lhtrio_volume_read_iops", VOLUME] > 0
        assert read["lhtrio_volume_read_throughput", VOLUME] > 0
        assert (
            read["lhtrio_volume_write_ops_total", VOLUME]
            == wrote["lhtrio_volume_write_ops_total", VOLUME]
        )  # no writes since

        replicas, _ = await objects.list(Replica)
        (lost,) = [r for r in replicas if r.spec.node_id == "n3"]
        await served.nodes["n3"].delete(lost.meta.name)  # its instance stops
        degraded = await robustness_becomes(served, 2)
        assert degraded["lhtrio_volume_state", VOLUME] == 2  # still attached, serving
        await robustness_becomes(served, 1)  # rebuilt in place: healthy again

        story = (await served.client.get("/v1/volumes/v/events")).json()["data"]
        reasons = [e["reason"] for e in story]
        for expected in ("Attached", "ReplicaFailed", "Degraded", "Rebuilding", "Rebuilt"):
            assert expected in reasons, reasons
        # the engine's story (failed, rebuilding, rebuilt) and the volume's (degraded, healthy)
        # are told by two parts as they see them: each in order, interleaved either way
        assert (
            reasons.index("ReplicaFailed") < reasons.index("Rebuilding") < reasons.index("Rebuilt")
        )
        assert reasons.index("Degraded") < reasons.index("Healthy")
        assert reasons.count("Healthy") == reasons.count("Degraded") == 1
        failed = next(e for e in story if e["reason"] == "ReplicaFailed")
        assert lost.meta.name in failed["message"]
        assert failed["type"] == "Warning"
