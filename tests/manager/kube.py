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
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from lhtrio.manager.store.crds import crds
from lhtrio.manager.store.etcd_client import EtcdClient
from lhtrio.manager.store.etcd_format import error_message, is_compacted, is_future
from lhtrio.manager.store.kube_format import DEFAULT_NAMESPACE
from lhtrio.node.local_etcd import LocalEtcd

__all__ = ["BOOKMARKS", "KubeCluster", "kubectl", "start_kube_cluster", "write_kubeconfig"]

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


#: The longest one kubectl command may take (seconds).
KUBECTL_DEADLINE = 60.0


def kubectl_program() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("these tests drive the real kubectl: install it (Debian: kubernetes-client)")
    return found


async def kubectl(
    cluster: KubeCluster, *args: str, ok: bool = True, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run the real kubectl against ``cluster`` (its kubeconfig; a cache of its own)."""
    cache = cluster.kubeconfig.with_name(cluster.kubeconfig.name + "-cache")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    command = [
        kubectl_program(),
        f"--kubeconfig={cluster.kubeconfig}",
        f"--cache-dir={cache}",
        *args,
    ]
    with trio.fail_after(KUBECTL_DEADLINE):
        done = await trio.run_process(
            command, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False, env=env
        )
    if ok:
        assert done.returncode == 0, (args, done.stdout.decode(), done.stderr.decode())
    return done
