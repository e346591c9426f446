"""The Kubernetes API double served for real, per test: hypercorn on a free loopback port in
the test's own trio run, its objects under a key prefix of the test's own in the session's etcd
(``etcd_server``, :mod:`tests.conftest`), and the clients the tests drive: httpx, the real
``kubectl`` (a kubeconfig and cache directory of the test's own), and lightkube.

Without ``kubectl`` the kubectl tests fail saying what to install; they are never skipped.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import yaml

from lhtrio.manager.store.etcd_client import EtcdClient, open_etcd_client
from lhtrio.node.local_etcd import LocalEtcd
from tests.kubeapi.etcd import EtcdObjects
from tests.kubeapi.server import serve_kubeapi

SAMPLES = Path(__file__).resolve().parent / "samples"
#: Heartbeats (bookmarks) come this often in the tests (seconds).
BOOKMARKS = 0.2
#: The longest one kubectl command may take (seconds).
KUBECTL_DEADLINE = 60.0


@attrs.frozen
class Kube:
    """A running double: its URL, an httpx client of it, and its etcd underneath."""

    url: str
    http: httpx.AsyncClient
    etcd: EtcdClient
    objects: EtcdObjects

    async def revision(self) -> int:
        """etcd's current revision: unchanged by a request that changed nothing."""
        return await self.objects.revision()

    async def compact(self) -> int:
        """Compact etcd at its current revision; the revision."""
        revision = await self.revision()
        await self.etcd.call("kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    async def create_crd(self, name: str = "volume-crd.yaml") -> dict[str, Any]:
        crd = yaml.safe_load((SAMPLES / name).read_text())
        response = await self.http.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def kube(etcd_server: LocalEtcd, nursery: trio.Nursery) -> AsyncIterator[Kube]:
    prefix = f"k-{uuid.uuid4().hex[:12]}"
    serve = functools.partial(
        serve_kubeapi, [etcd_server.client], prefix, bookmark_interval=BOOKMARKS
    )
    url = await nursery.start(serve)
    async with (
        open_etcd_client([etcd_server.client]) as etcd,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http,
    ):
        yield Kube(url=url, http=http, etcd=etcd, objects=EtcdObjects(etcd, prefix))


def kubectl_program() -> str:
    """The machine's kubectl, 1.27 or newer: older ones validate against OpenAPI v2 in
    protobuf, which the double does not serve (Debian's kubernetes-client is 1.20)."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("these tests drive the real kubectl (1.27 or newer): install it")
    done = subprocess.run(
        [found, "version", "--client", "-o", "json"], capture_output=True, check=False
    )
    try:
        minor = int(json.loads(done.stdout)["clientVersion"]["minor"].rstrip("+"))
    except (ValueError, KeyError):
        pytest.fail(f"{found} version --client did not say its version: {done.stderr!r}")
    if minor < 27:
        pytest.fail(f"{found} is kubectl 1.{minor}: these tests need 1.27 or newer")
    return found


def kubectl_env() -> dict[str, str]:
    """The environment kubectl runs in: the double is reached directly, never via a proxy."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@attrs.frozen
class Kubectl:
    """The real kubectl against the double, with a kubeconfig and cache of its own."""

    program: str
    config: Path
    cache: Path

    def command(self, *args: str) -> list[str]:
        return [self.program, f"--kubeconfig={self.config}", f"--cache-dir={self.cache}", *args]

    async def run(
        self, *args: str, ok: bool = True, stdin: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(KUBECTL_DEADLINE):
            done = await trio.run_process(
                self.command(*args),
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=kubectl_env(),
            )
        if ok:
            assert done.returncode == 0, (args, done.stdout.decode(), done.stderr.decode())
        return done

    async def out(self, *args: str) -> str:
        return (await self.run(*args)).stdout.decode()

    async def json(self, *args: str) -> Any:
        return json.loads(await self.out(*args, "-o", "json"))


@pytest.fixture
def kubectl(kube: Kube, tmp_path: Path) -> Kubectl:
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": kube.url}}],
                "users": [{"name": "tester", "user": {}}],
                "contexts": [
                    {
                        "name": "double",
                        "context": {"cluster": "double", "user": "tester", "namespace": "default"},
                    }
                ],
                "current-context": "double",
            }
        )
    )
    return Kubectl(kubectl_program(), config, tmp_path / "kube-cache")
