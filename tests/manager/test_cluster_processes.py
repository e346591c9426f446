"""The control plane end to end with real processes (issue 18's acceptance, without the API yet):
three ``lhtrio node --store URL`` processes on this host share one store — a SQLite file, a
real etcd (issue 20; tests/conftest.py), or Kubernetes (``--store kubernetes:KUBECONFIG``: the
API double over that etcd, tests/manager/kube.py, reached through an auditing proxy whose record
of the verbs used must fit deploy/rbac.yaml's Role), with the same assertions; a test process writes
the desired state into the same store, as the API does. A 3-replica volume lands on
three nodes; attached on node 1, qemu-io writes patterns through its NBD endpoint; node 3 is
SIGKILLed (the volume degrades, I/O goes on); node 3 comes back (its replica is rebuilt in place,
the volume is healthy); detached, attached on node 2, every pattern reads back; deleted, nothing
is left in the store."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import pytest
import trio

from lhtrio.manager import tickets
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Store
from lhtrio.manager.store.etcd_client import open_etcd_client
from lhtrio.manager.store.open import open_store
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume, VolumeAttachment
from lhtrio.models.cluster.validate import ClusterObject
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState
from tests.deploy.manifests import role_grants
from tests.manager import waiting
from tests.manager.kube import start_kube_cluster, write_kubeconfig
from tests.manager.kube_audit import open_audit
from tests.manager.waiting import ticket_judged_satisfied
from tests.procs import Proc, lhtrio, run

MiB = 1 << 20
T = TypeVar("T", bound=ClusterObject)


@attrs.define
class Cluster:
    """Node processes, each held by a task of its own (so any one can go, in any order)."""

    store: Store
    url: str
    objects: Objects
    tmp: Path
    nursery: trio.Nursery
    nodes: dict[str, tuple[Proc, trio.CancelScope]] = attrs.field(factory=dict)

    async def start(self, name: str, index: int) -> None:
        await self.nursery.start(self._hold, name, index)

    async def _hold(self, name: str, index: int, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as scope:
            async with lhtrio(
                "node",
                "--name",
                name,
                "--data-dir",
                str(self.tmp / name),
                "--store",
                self.url,
                "--nbd",
                "127.0.0.1:0",
                "--port-range",
                f"{43000 + 100 * index}-{43099 + 100 * index}",
            ) as proc:
                self.nodes[name] = (proc, scope)
                task_status.started()
                await trio.sleep_forever()

    def kill(self, name: str) -> None:
        """SIGKILL node ``name`` (its task then reaps it)."""
        proc, scope = self.nodes.pop(name)
        proc.kill()
        scope.cancel()


@pytest.fixture(params=["sqlite", "etcd", "kubernetes"])
async def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[str]:
    """The store the nodes share: one SQLite file, a key prefix of a real etcd, or the API
    double over that etcd (every call audited: what was used must be granted by the Role)."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'store.db'}"
    elif request.param == "etcd":
        url = request.getfixturevalue("etcd_url")
        assert isinstance(url, str)
        yield url
    else:
        server = request.getfixturevalue("etcd_server")
        async with open_etcd_client([server.client]) as etcd:
            kube = await start_kube_cluster(nursery, server, etcd, tmp_path)
            double = urllib.parse.urlsplit(kube.url)
            assert double.hostname is not None
            assert double.port is not None
            async with open_audit((double.hostname, double.port)) as audit:
                yield f"kubernetes:{write_kubeconfig(tmp_path / 'audited', audit.url)}"
                assert audit.unreadable == 0
                assert audit.used  # it did go through
                assert audit.used <= role_grants(), sorted(audit.used - role_grants())


@asynccontextmanager
async def cluster(tmp_path: Path, url: str) -> AsyncIterator[Cluster]:
    async with open_store(url) as store, trio.open_nursery() as nursery:
        c = Cluster(store, url, Objects(store), tmp_path, nursery)
        for index, name in enumerate(("n1", "n2", "n3")):
            await c.start(name, index)
        yield c
        for proc, scope in c.nodes.values():
            await proc.terminate()
            scope.cancel()


async def until(c: Cluster, kind: type[T], name: str, done: Callable[[T], bool]) -> T:
    """The object once ``done`` holds for it."""
    return await waiting.until(c.objects, kind, name, done)


def healthy_on(node: str) -> Callable[[Volume], bool]:
    def done(v: Volume) -> bool:
        return (
            v.status.state is VolumeState.ATTACHED
            and v.status.current_node_id == node
            and v.status.robustness is Robustness.HEALTHY
        )

    return done


async def attach(c: Cluster, node: str) -> str:
    """Attach as the API does: a ticket (the attachment reconciler moves the volume)."""
    await tickets.add_ticket(c.objects, "v", node)
    await until(c, VolumeAttachment, "v", ticket_judged_satisfied())
    await until(c, Volume, "v", healthy_on(node))
    engine = await c.objects.get(Engine, "v-e-0")
    assert engine.spec.node_id == node
    return engine.status.endpoint


async def qemu_io(uri: str, *commands: str) -> str:
    args = [a for command in commands for a in ("-c", command)]
    result = await run("qemu-io", "-f", "raw", *args, uri)
    return result.stdout.decode()


async def test_a_volume_survives_a_killed_node_and_moves_with_its_data(
    tmp_path: Path, store_url: str
) -> None:
    async with cluster(tmp_path, store_url) as c:
        await c.objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=32 * MiB, number_of_replicas=3),
            )
        )
        await until(c, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        replicas, _ = await c.objects.list(Replica)
        assert sorted(r.spec.node_id for r in replicas) == ["n1", "n2", "n3"]

        uri = await attach(c, "n1")
        await qemu_io(uri, "write -P 0x11 0 1M", "flush")

        c.kill("n3")
        await until(c, Volume, "v", lambda v: v.status.robustness is Robustness.DEGRADED)
        await qemu_io(uri, "write -P 0x22 1M 1M", "flush")  # I/O goes on, degraded

        await c.start("n3", 2)
        await until(c, Volume, "v", healthy_on("n1"))  # node 3's replica is rebuilt in place
        replicas, _ = await c.objects.list(Replica)
        assert sorted(r.spec.node_id for r in replicas) == ["n1", "n2", "n3"]

        await tickets.remove_ticket(c.objects, "v")
        await until(c, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        uri = await attach(c, "n2")
        out = await qemu_io(uri, "read -P 0x11 0 1M", "read -P 0x22 1M 1M")
        assert "Pattern verification failed" not in out
        assert out.count("read 1048576/1048576 bytes") == 2

        await tickets.remove_ticket(c.objects, "v")
        await until(c, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        await c.objects.delete(await c.objects.get(Volume, "v"))
        with trio.fail_after(90):
            while (await c.store.list("Volume")).documents:
                listing = await c.store.list("Volume")
                async with c.store.watch("Volume", listing.revision) as events:
                    async for _ in events:
                        break
        assert (await c.objects.list(Replica))[0] == []
        assert (await c.objects.list(Engine))[0] == []
        left = [p for n in ("n1", "n2", "n3") for p in (tmp_path / n / "replicas").glob("v-r-*")]
        assert left == []  # every node removed its replica's directory


async def test_a_volume_attached_to_a_lost_node_attaches_elsewhere_after_its_lease(
    tmp_path: Path, store_url: str
) -> None:
    async with cluster(tmp_path, store_url) as c:
        await c.objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=32 * MiB, number_of_replicas=3),
            )
        )
        await until(c, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        uri = await attach(c, "n1")
        await qemu_io(uri, "write -P 0x33 0 2M", "flush")

        c.kill("n1")  # the attached node, its engine and one replica with it
        await tickets.remove_ticket(c.objects, "v")  # the workload moves: detach, attach on n2
        await tickets.add_ticket(c.objects, "v", "n2")
        moved = await until(
            c,
            Volume,
            "v",
            lambda v: v.status.state is VolumeState.ATTACHED and v.status.current_node_id == "n2",
        )
        assert moved.status.robustness is Robustness.DEGRADED  # n1's replica is away
        engine = await c.objects.get(Engine, "v-e-0")
        out = await qemu_io(engine.status.endpoint, "read -P 0x33 0 2M")
        assert "Pattern verification failed" not in out
        assert "read 2097152/2097152 bytes" in out
