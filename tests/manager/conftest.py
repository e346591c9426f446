"""The manager's fixtures: a real etcd for the etcd store's tests.

One etcd (Debian's ``etcd-server``) runs for the whole session on free loopback ports, its data
in a temporary directory, and is stopped by its PID at the end; each test gets a key prefix of
its own (``etcd://HOST:PORT/PREFIX``), so tests never see each other's objects. Without the
``etcd`` program the tests that need it fail saying what to install: they are never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from lhtrio.node.local_etcd import LocalEtcd, local_etcd


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(local_etcd(tmp_path_factory.mktemp("etcd")))
        except RuntimeError as exc:
            pytest.fail(f"the etcd store's tests need a real etcd: {exc}")
        yield server


@pytest.fixture
def etcd_url(etcd_server: LocalEtcd) -> str:
    """The store URL of a key prefix of this test's own."""
    return f"{etcd_server.url}/t-{uuid.uuid4().hex[:12]}"
