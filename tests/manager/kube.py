"""A Kubernetes cluster for the Kubernetes store's tests: the API double (:mod:`tests.kubeapi`,
backed by the session's real etcd) with lhtrio's namespace and CRDs installed, as ``kubectl
apply -k deploy/`` would (the CRDs are :mod:`lhtrio.manager.store.crds`' own), and a kubeconfig
file naming it, for ``--store kubernetes:KUBECONFIG``.

The double's bookmarks are heartbeats written to etcd (:mod:`tests.kubeapi.etcd`): each takes a
revision of etcd's. The store's contract counts revisions exactly ("every change takes the next
revision"), so the conformance suite runs the double with its default minute between
heartbeats; the resilience tests ask for them often.
"""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path

import attrs
import httpx
import trio

from lhtrio.manager.store.crds import crds
from lhtrio.manager.store.etcd_client import EtcdClient
from lhtrio.manager.store.etcd_format import error_message, is_compacted, is_future
from lhtrio.manager.store.kube_format import DEFAULT_NAMESPACE
from lhtrio.node.local_etcd import LocalEtcd

__all__ = ["BOOKMARKS", "KubeCluster", "start_kube_cluster", "write_kubeconfig"]

#: Seconds between the double's bookmarks unless a test asks for more (the real server's minute).
BOOKMARKS = 60.0


@attrs.frozen
class KubeCluster:
    """A running double: its URL, a kubeconfig naming it (namespace ``lhtrio-system``), and the
    etcd under it (to compact it, as the real API server does by itself)."""

    url: str
    kubeconfig: Path
    namespace: str
    etcd: EtcdClient

    async def compact(self, revision: int) -> None:
        """Compact the etcd under the double at ``revision`` (at etcd's own revision if that
        is older: nothing newer can be compacted)."""
        answer = await self.etcd.answer("kv/compaction", {"revision": str(revision)})
        if answer.ok or is_compacted(answer.body):
            return
        assert is_future(answer.body), error_message(answer.body)
        header = (await self.etcd.call("kv/range", {"key": "AA=="})).get("header")
        assert isinstance(header, dict)
        await self.etcd.call("kv/compaction", {"revision": str(header["revision"])})


def write_kubeconfig(path: Path, url: str, namespace: str = DEFAULT_NAMESPACE) -> Path:
    """A kubeconfig whose current context is the double at ``url``, in ``namespace``."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": url}}],
                "users": [{"name": "lhtrio", "user": {}}],
                "contexts": [
                    {
                        "name": "double",
                        "context": {"cluster": "double", "user": "lhtrio", "namespace": namespace},
                    }
                ],
                "current-context": "double",
            }
        )
    )
    return path


async def install(url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
    """The namespace and lhtrio's CRDs, created through the API (as ``kubectl apply``)."""
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        made = await http.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        assert made.status_code == 201, made.text
        for crd in crds():
            made = await http.post(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd
            )
            assert made.status_code == 201, made.text


async def start_kube_cluster(
    nursery: trio.Nursery,
    etcd_server: LocalEtcd,
    etcd: EtcdClient,
    directory: Path,
    *,
    bookmarks: float = BOOKMARKS,
    installed: bool = True,
) -> KubeCluster:
    """Serve a double in ``nursery`` (a key prefix of its own in ``etcd_server``), lhtrio
    installed in it unless ``installed`` is false; ``etcd``: a client of ``etcd_server``."""
    from tests.kubeapi.server import serve_kubeapi  # the double: tests that use it import it

    prefix = f"k-{uuid.uuid4().hex[:12]}"
    serve = functools.partial(
        serve_kubeapi, [etcd_server.client], prefix, bookmark_interval=bookmarks
    )
    url = await nursery.start(serve)
    if installed:
        await install(url)
    config = write_kubeconfig(directory / f"kubeconfig-{prefix}", url)
    return KubeCluster(url=url, kubeconfig=config, namespace=DEFAULT_NAMESPACE, etcd=etcd)
