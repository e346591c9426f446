"""Fixtures of the manager's tests: a Kubernetes cluster (the API double over the session's real
etcd, lhtrio installed in it: :mod:`tests.manager.kube`) for the Kubernetes store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from lhtrio.manager.store.etcd_client import open_etcd_client
from lhtrio.node.local_etcd import LocalEtcd
from tests.manager.kube import KubeCluster, start_kube_cluster


@pytest.fixture
async def kube_cluster(
    etcd_server: LocalEtcd, nursery: trio.Nursery, tmp_path: Path
) -> AsyncIterator[KubeCluster]:
    async with open_etcd_client([etcd_server.client]) as etcd:
        yield await start_kube_cluster(nursery, etcd_server, etcd, tmp_path)
