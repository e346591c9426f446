"""Store benchmark (issues 18, 20): how long a change takes to reach a watch; what an idle store
costs — for the embedded store and for etcd, through the same store interface, and for any other
store named with ``--store URL`` (a Kubernetes API server: ``kubernetes:KUBECONFIG``).

* **SQLite** (:mod:`lhtrio.manager.store.sqlite`): one store file in a scratch directory;
* **etcd** (:mod:`lhtrio.manager.store.etcd`): a one-member etcd on loopback with its data in a
  scratch directory (:mod:`lhtrio.node.local_etcd`; etcd's defaults, so each write is fsynced).

For each:

* **write**: an ``update`` of one object, round trip in this process (SQLite: one IMMEDIATE
  transaction, ``synchronous=FULL``, an fsync of the WAL; etcd: a read and a transaction);
* **watch, same process**: from just before an ``update`` to its event in a watch of this
  process;
* **watch, another process**: a child process updates the object every few milliseconds with
  its ``time.time_ns()`` in the document; this process's watch records when each arrived
  (SQLite: inotify on the WAL wakes it; etcd: its watch stream);
* **CPU**: what this process spends per update and its event (the per-call overhead);
* **idle**: the CPU this process spends over a few seconds with the store open and three watches
  waiting, as % of one core (and, for etcd, what etcd itself spends meanwhile).
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import trio

from lhtrio.bench._util import cpu_seconds, record, table
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.open import open_store
from lhtrio.node.local_etcd import local_etcd

WRITER = """
import sys, time, trio
from lhtrio.manager.store.open import open_store

async def main(url, name, count):
    async with open_store(url) as store:
        for n in range(count):
            document = await store.get("Setting", name)
            document["spec"] = {"value": f"{n} {time.time_ns()}"}
            await store.update(document)
            await trio.sleep(0.005 + (n % 7) * 0.002)

trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def _ms(values: list[float]) -> list[str]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return [
        f"{statistics.median(ordered) * 1e3:.2f}",
        f"{p95 * 1e3:.2f}",
        f"{ordered[-1] * 1e3:.2f}",
    ]


def _revision(document: Document) -> int:
    meta = document["metadata"]
    assert isinstance(meta, dict)
    return int(meta["resourceVersion"])


def _sent_ns(document: Document) -> int:
    spec = document["spec"]
    assert isinstance(spec, dict)
    return int(str(spec["value"]).split()[1])


async def _measure(
    url: str, count: int, idle_seconds: float, server: int | None = None
) -> list[list[str]]:
    """The rows for the store at ``url`` (``server``: the PID of the store's own process)."""
    rows = []
    async with open_store(url) as store:
        # a Setting: the smallest object every store (and a CRD's schema) accepts
        name = f"bench-probe-{uuid.uuid4().hex[:8]}"  # a store of its own or a shared one
        probe = await store.create(
            {"kind": "Setting", "metadata": {"name": name}, "spec": {"value": ""}}
        )
        writes, local = [], []
        revision = _revision(probe)
        async with store.watch("Setting", revision) as events:
            cpu = time.process_time()
            for n in range(count):
                start = time.perf_counter()
                probe = await store.update({**probe, "spec": {"value": str(n)}})
                writes.append(time.perf_counter() - start)
                await events.__anext__()
                local.append(time.perf_counter() - start)
            cpu = (time.process_time() - cpu) / count
        rows.append(["update, round trip", *_ms(writes)])
        rows.append(["watch, same process", *_ms(local)])
        rows.append(["CPU of this process per update and its event", f"{cpu * 1e3:.2f}", "", ""])

        remote: list[float] = []
        revision = _revision(probe)
        async with store.watch("Setting", revision) as events, trio.open_nursery() as nursery:
            command = [sys.executable, "-c", WRITER, url, name, str(count)]
            nursery.start_soon(functools.partial(trio.run_process, command, check=True))
            async for event in events:
                remote.append((time.time_ns() - _sent_ns(event.document)) / 1e9)
                if len(remote) == count:
                    break
        rows.append(["watch, another process", *_ms(remote)])

        async with (
            store.watch("Volume", revision) as a,
            store.watch("Engine", revision) as b,
            store.watch("Node", revision) as c,
        ):
            del a, b, c
            before = time.process_time()
            served = cpu_seconds(server) if server else 0.0
            await trio.sleep(idle_seconds)
            busy = (time.process_time() - before) / idle_seconds
            served = (cpu_seconds(server) - served) / idle_seconds if server else 0.0
        rows.append(["idle store, 3 watches: CPU % of a core", f"{busy * 100:.2f}", "", ""])
        if server:
            rows.append(["idle etcd meanwhile: CPU % of a core", f"{served * 100:.2f}", "", ""])
        await store.delete("Setting", name)
    return rows


def main(*, quick: bool = False, urls: Sequence[str] = ()) -> None:
    """SQLite and a local etcd, then each store of ``urls`` (a Kubernetes API server, an etcd
    cluster: whatever ``--store`` names; its server's CPU is not measured)."""
    count = 40 if quick else 300
    idle = 1.0 if quick else 5.0
    header = ["what", "p50", "p95", "max"]
    with tempfile.TemporaryDirectory(prefix="lhtrio-store-bench-") as scratch:
        rows = trio.run(_measure, f"sqlite:{Path(scratch) / 'store.db'}", count, idle)
        text = table(f"Store (SQLite): latency in ms over {count} changes", header, rows)
        with local_etcd(Path(scratch)) as etcd:
            rows = trio.run(_measure, etcd.url, count, idle, etcd.pid)
        text += "\n" + table(f"Store (etcd): latency in ms over {count} changes", header, rows)
    for url in urls:
        rows = trio.run(_measure, url, count, idle)
        title = f"Store ({url.partition(':')[0]}, --store): latency in ms over {count} changes"
        text += "\n" + table(title, header, rows)
    print(text)
    record("store", text)
