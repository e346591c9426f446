"""Test-wide settings: Hypothesis profiles (CI runs derandomized, so a red run is reproducible),
the test layers, a per-test timeout, and a real etcd for the tests that need one.

**Layers.** Every test is in one of three layers, by marker:

* unmarked — the unit layer: in-process, no other program; ``pytest -m "not real and not slow"``
  runs it in well under a minute on this 2-core machine;
* ``real`` — drives real programs: qemu-io/qemu-img/nbdinfo/nbdsh/nbdcopy/fio, or ``lhtrio``
  processes (the modules in :data:`REAL_MODULES`); ``pytest -m real`` runs only these;
* ``slow`` — in-process, but takes seconds: a crash or stateful property search, timing rules
  measured on the real clock (``@pytest.mark.slow`` on the test).

``pytest`` with no ``-m`` (what CI runs) runs all three.

**etcd.** One etcd (Debian's ``etcd-server``) runs for the whole session once a test asks for it
(``etcd_server``, ``etcd_url``), on free loopback ports with its data in a temporary directory,
and is stopped by its PID at the end; each test gets a key prefix of its own
(``etcd://HOST:PORT/PREFIX``), so tests never see each other's objects. Without the ``etcd``
program those tests fail saying what to install: they are never skipped.

**Hangs.** A trio test still running after :data:`tests.hangs.HANG_AFTER` seconds is cancelled
and fails with where each of its tasks waited (:mod:`tests.hangs`); any test still running after
``timeout`` seconds (pytest-timeout, ``[tool.pytest.ini_options]``) fails too, instead of eating
the CI run.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from lhtrio.node.local_etcd import LocalEtcd, local_etcd
from tests.hangs import run_watched

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", parent=settings.get_profile("dev"), derandomize=True, print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

HERE = Path(__file__).resolve().parent

#: Test modules whose tests drive real programs (NBD clients, fio, lhtrio processes).
REAL_MODULES = frozenset(
    {
        "admin/test_process.py",
        "api/test_node_process.py",
        "deploy/test_kubectl_apply.py",  # the real kubectl against the double, on a real etcd
        "engine/test_crash_consistency.py",
        "engine/test_engine_clients.py",
        "engine/test_nbd_libnbd.py",
        "engine/test_rebuild.py",
        "frontend/test_nbd_negotiation.py",
        "frontend/test_nbd_requests.py",
        "frontend/test_nbd_server.py",
        "frontend/test_nbd_tools.py",
        "kubeapi/test_kubectl.py",  # the real kubectl against the double, on a real etcd
        "kubeapi/test_lightkube.py",
        "kubeapi/test_protocol.py",
        "kubeapi/test_watch.py",
        "manager/test_cluster_processes.py",
        "manager/test_etcd_resilience.py",  # a real etcd (etcd_server, below)
        "manager/test_etcd_store.py",
        "manager/test_store_resilience.py",  # a real etcd, and the API double on it
        "manager/test_kube_store.py",
        "manager/test_sqlite_store.py",
        "node/test_node.py",
        "node/test_node_process.py",
        "replica_server/test_replica_server.py",
        "test_cli_live.py",
        "test_cluster_tour.py",
        "test_demo.py",
        "test_process_stops.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(HERE).as_posix() in REAL_MODULES:
            item.add_marker(pytest.mark.real)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            # first among the trio marks: pytest-trio runs the test under the watchdog
            item.add_marker(pytest.mark.trio(run=run_watched), append=False)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(local_etcd(tmp_path_factory.mktemp("etcd")))
        except RuntimeError as exc:
            pytest.fail(f"this test needs a real etcd: {exc}")
        yield server


@pytest.fixture
def etcd_url(etcd_server: LocalEtcd) -> str:
    """The store URL of a key prefix of this test's own."""
    return f"{etcd_server.url}/t-{uuid.uuid4().hex[:12]}"
