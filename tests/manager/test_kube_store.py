"""The Kubernetes store against the API double (a real etcd under it), beyond the conformance
suite: node leases are coordination.k8s.io Leases and events core/v1 Events, lhtrio's only (the
namespace's other Leases and Events are neither listed, watched, read nor deleted); a status is
written through the status subresource; what Kubernetes refuses (a name, a value the CRD's
schema refuses) is InvalidArgumentError and changes nothing; a cluster without lhtrio's CRDs is
a StorageError that says so; and kubectl apply (client-side and server-side) and the manager's
writes never fight: neither reverts the other, neither conflicts."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.errors import InvalidArgumentError, NotFoundError, StorageError
from lhtrio.manager import events, lease
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Document, EventType, WatchEvent
from lhtrio.manager.store.codec import to_document
from lhtrio.manager.store.etcd_client import open_etcd_client
from lhtrio.manager.store.kube_format import KIND_LABEL
from lhtrio.manager.store.kubernetes import KubernetesStore, open_kubernetes_store
from lhtrio.models.cluster import Engine, ObjectMeta, Volume
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus
from lhtrio.models.cluster.event import EventType as Severity
from lhtrio.models.cluster.event import ObjectReference, Occurrence
from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.volume import VolumeState, VolumeStatus
from lhtrio.node.local_etcd import LocalEtcd
from tests.manager.kube import KubeCluster, kubectl, start_kube_cluster

NS = "lhtrio-system"
MiB = 1 << 20
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def field(document: Document, *path: str) -> object:
    found: object = document
    for key in path:
        assert isinstance(found, dict)
        found = found[key]
    return found


@asynccontextmanager
async def kube_store(cluster: KubeCluster) -> AsyncIterator[KubernetesStore]:
    async with open_kubernetes_store(str(cluster.kubeconfig), compactor=cluster.compact) as store:
        yield store


@asynccontextmanager
async def raw(cluster: KubeCluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30, trust_env=False) as http:
        yield http


async def foreign(http: httpx.AsyncClient, path: str, obj: dict[str, Any]) -> None:
    made = await http.post(path, json=obj)
    assert made.status_code == 201, made.text


async def test_node_leases_are_coordination_leases_and_only_lhtrios_are_seen(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_store(kube_cluster) as store, raw(kube_cluster) as http:
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
        await foreign(
            http,
            leases,
            {"metadata": {"name": "scheduler"}, "spec": {"holderIdentity": "kube-scheduler"}},
        )
        start = await store.list("NodeLease")
        assert start.documents == []
        async with store.watch("NodeLease", start.revision) as changes:
            await lease.renew(store, "n1", clock=lambda: NOW)
            (seen,) = await first(changes, 1)
        assert (seen.type, field(seen.document, "metadata", "name")) == (EventType.ADDED, "n1")

        stored = (await http.get(f"{leases}/n1")).json()
        assert stored["spec"]["holderIdentity"] == "n1"
        assert stored["spec"]["renewTime"] == "2026-01-02T03:04:05.000000Z"
        assert stored["spec"]["leaseDurationSeconds"] == lease.DURATION
        assert stored["metadata"]["labels"] == {KIND_LABEL: "NodeLease"}
        assert await lease.available_nodes(store, clock=lambda: NOW) == frozenset({"n1"})

        with pytest.raises(NotFoundError):
            await store.get("NodeLease", "scheduler")  # another's lease: not lhtrio's
        with pytest.raises(NotFoundError):
            await store.delete("NodeLease", "scheduler")
        with pytest.raises(StorageError, match="'scheduler' in namespace 'lhtrio-system' is not"):
            await lease.renew(store, "scheduler")  # (a node of that name would never get one)
        assert (await http.get(f"{leases}/scheduler")).json()["spec"] == {
            "holderIdentity": "kube-scheduler"
        }  # untouched


async def test_events_are_core_events_and_the_kubelets_are_left_alone(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_store(kube_cluster) as store, raw(kube_cluster) as http:
        core = f"/api/v1/namespaces/{NS}/events"
        kubelet = {
            "metadata": {"name": "lhtrio-node-abcde.1"},
            "involvedObject": {"kind": "Pod", "name": "lhtrio-node-abcde", "namespace": NS},
            "reason": "Pulled",
            "message": "image pulled",
            "type": "Normal",
            "source": {"component": "kubelet"},
        }
        await foreign(http, core, kubelet)
        objects = Objects(store)
        involved = ObjectReference(kind="Volume", name="v1", uid="u-1")
        degraded = Occurrence(reason="Degraded", message="replica failed", type=Severity.WARNING)
        recorded = await events.record(objects, involved, degraded, node="n2", now=NOW)
        assert recorded is not None
        again = await events.record(objects, involved, degraded, node="n3", now=NOW)
        assert again is not None
        assert again.count == 2

        stored = (await http.get(f"{core}/{recorded.meta.name}")).json()
        assert stored["involvedObject"] == {
            "apiVersion": "lhtrio.io/v1",
            "kind": "Volume",
            "name": "v1",
            "namespace": NS,
            "uid": "u-1",
        }
        assert (stored["reason"], stored["type"], stored["count"]) == ("Degraded", "Warning", 2)
        assert stored["source"] == {"component": "lhtrio", "host": "n3"}

        assert [e.meta.name for e in await events.events_of(objects)] == [recorded.meta.name]
        await events.forget(objects, "Volume", "v1")
        assert await events.events_of(objects) == []
        assert (await http.get(f"{core}/lhtrio-node-abcde.1")).status_code == 200


def engine(name: str = "v1-e-0", state: InstanceState = InstanceState.RUNNING) -> Engine:
    return Engine(
        meta=ObjectMeta(name=name),
        spec=EngineSpec(volume_name="v1", volume_size=32 * MiB, node_id="n1"),
        status=EngineStatus(owner_id="n1", current_state=state, port=10005),
    )


async def first(changes: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    with trio.fail_after(10):
        async for change in changes:
            out.append(change)
            if len(out) == count:
                break
    return out


async def test_a_status_is_written_through_the_status_subresource(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_store(kube_cluster) as store, raw(kube_cluster) as http:
        start = await store.list("Engine")
        async with store.watch("Engine", start.revision) as changes:
            created = await store.create(to_document(engine()))
            assert field(created, "status", "currentState") == "running"
            added, with_status = await first(changes, 2)  # the object, then its status
        assert added.type is EventType.ADDED
        assert "status" not in added.document
        assert with_status.type is EventType.MODIFIED
        assert with_status.revision == int(str(field(created, "metadata", "resourceVersion")))

        path = f"/apis/lhtrio.io/v1/namespaces/{NS}/engines/v1-e-0"
        stored = (await http.get(path)).json()
        assert stored["status"]["port"] == 10005
        assert "lhtrio" in {f["manager"] for f in stored["metadata"]["managedFields"]}

        objects = Objects(store)
        stopped = await objects.change(
            Engine,
            "v1-e-0",
            lambda e: attrs.evolve(
                e, status=attrs.evolve(e.status, current_state=InstanceState.STOPPED)
            ),
        )
        assert stopped.status.current_state is InstanceState.STOPPED
        assert stopped.spec == engine().spec


@pytest.mark.parametrize(
    ("name", "size"), [("DB_1", "1024"), ("Upper", "1024"), ("db-1", "1G"), ("db-1", "-5")]
)
async def test_what_kubernetes_refuses_is_invalid_and_changes_nothing(
    kube_cluster: KubeCluster, name: str, size: str
) -> None:
    async with kube_store(kube_cluster) as store:
        before = await store.list("Volume")
        bad: Document = {
            "apiVersion": "lhtrio.io/v1",
            "kind": "Volume",
            "metadata": {"name": name},
            "spec": {"size": size},
        }
        with pytest.raises(InvalidArgumentError, match="the API server refused it"):
            await store.create(bad)
        after = await store.list("Volume")
        assert after.documents == before.documents


async def test_a_cluster_without_lhtrios_crds_is_a_storage_error_that_says_so(
    etcd_server: LocalEtcd, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with open_etcd_client([etcd_server.client]) as etcd:
        bare = await start_kube_cluster(nursery, etcd_server, etcd, tmp_path, installed=False)
        with pytest.raises(StorageError, match=r"CRDs installed \(kubectl apply -k deploy/\)"):
            async with kube_store(bare):
                pass


def manifest(replicas: int, label: str = "prod") -> bytes:
    return f"""
apiVersion: lhtrio.io/v1
kind: Volume
metadata:
  name: db-1
  namespace: {NS}
  labels:
    tier: {label}
spec:
  size: "{32 * MiB}"
  numberOfReplicas: {replicas}
""".encode()


def attached_on(node: str) -> Any:
    def attach(volume: Volume) -> Volume:
        spec = attrs.evolve(volume.spec, node_id=node)
        status = attrs.evolve(
            volume.status, owner_id=node, state=VolumeState.ATTACHED, current_node_id=node
        )
        return attrs.evolve(volume, spec=spec, status=status)

    return attach


@pytest.mark.parametrize("server_side", [False, True], ids=["client-side", "server-side"])
async def test_kubectl_apply_and_the_manager_never_fight(
    kube_cluster: KubeCluster, server_side: bool
) -> None:
    apply = ["apply", "-f", "-", *(["--server-side"] if server_side else [])]
    async with kube_store(kube_cluster) as store:
        objects = Objects(store)
        await kubectl(kube_cluster, *apply, stdin=manifest(3))
        managed = await objects.change(Volume, "db-1", attached_on("n1"))  # spec and status
        assert managed.spec.number_of_replicas == 3

        again = await kubectl(kube_cluster, *apply, stdin=manifest(3))  # the same manifest
        assert b"conflict" not in again.stderr.lower()
        kept = await objects.get(Volume, "db-1")
        assert (kept.spec.node_id, kept.status.state) == ("n1", VolumeState.ATTACHED)

        await kubectl(kube_cluster, *apply, stdin=manifest(2, label="gold"))  # the operator's
        changed = await objects.get(Volume, "db-1")
        assert changed.spec.number_of_replicas == 2
        assert changed.meta.labels == {"tier": "gold"}
        assert (changed.spec.node_id, changed.status.current_node_id) == ("n1", "n1")

        status = VolumeStatus(owner_id="n1", state=VolumeState.DETACHING)
        after = await objects.change(Volume, "db-1", lambda v: attrs.evolve(v, status=status))
        assert after.spec.number_of_replicas == 2  # the manager does not revert the operator
        final = await kubectl(kube_cluster, *apply, stdin=manifest(2, label="gold"))
        assert final.returncode == 0
        assert (await objects.get(Volume, "db-1")).status.state is VolumeState.DETACHING


async def test_the_admin_api_on_the_kubernetes_store_refuses_a_name_kubernetes_refuses(
    kube_cluster: KubeCluster, nursery: trio.Nursery
) -> None:
    """A volume name the API accepts on other stores but Kubernetes does not (capitals) is a
    4xx from the admin API saying why, and nothing is stored; a good one is created."""
    async with kube_store(kube_cluster) as store:
        serve = functools.partial(serve_api, Objects(store), "127.0.0.1", 0, token="t0ken")
        url = await nursery.start(serve)
        headers = {"Authorization": "Bearer t0ken"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
            before = await store.list("Volume")
            refused = await api.post("/v1/volumes", json={"name": "DB-1", "size": "1Gi"})
            assert 400 <= refused.status_code < 500, refused.text
            assert "the API server refused it" in refused.text
            assert (await store.list("Volume")).documents == before.documents
            made = await api.post("/v1/volumes", json={"name": "db-1", "size": "1Gi"})
            assert made.status_code == 201, made.text
            listed = await api.get("/v1/volumes")
            assert [v["metadata"]["name"] for v in listed.json()["data"]] == ["db-1"]
