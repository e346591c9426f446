"""Store benchmark (issue 18): how long a change takes to reach a watch; what an idle store costs.

One SQLite store file (:mod:`lhtrio.manager.store.sqlite`) in a scratch directory:

* **write**: an ``update`` of one object, round trip in this process (one IMMEDIATE transaction,
  ``synchronous=FULL``: an fsync of the WAL);
* **watch, same process**: from just before an ``update`` to its event in a watch of this
  process (woken at once by the write);
* **watch, another process**: a child process updates the object every few milliseconds with
  its ``time.time_ns()`` in the document; this process's watch records when each arrived
  (inotify on the WAL wakes it);
* **idle**: the CPU this process spends over a few seconds with the store open and three watches
  waiting, as % of one core.
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from lhtrio.bench._util import record, table
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.sqlite import open_sqlite_store

WRITER = """
import sys, time, trio
from lhtrio.manager.store.sqlite import open_sqlite_store

async def main(path, count):
    async with open_sqlite_store(path) as store:
        for n in range(count):
            document = await store.get("Volume", "probe")
            document["spec"] = {"n": n, "sentNs": time.time_ns()}
            await store.update(document)
            await trio.sleep(0.005 + (n % 7) * 0.002)

trio.run(main, sys.argv[1], int(sys.argv[2]))
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


def _spec(document: Document) -> dict[str, int]:
    spec = document["spec"]
    assert isinstance(spec, dict)
    return spec


async def _measure(path: Path, count: int, idle_seconds: float) -> list[list[str]]:
    rows = []
    async with open_sqlite_store(path) as store:
        probe = await store.create({"kind": "Volume", "metadata": {"name": "probe"}, "spec": {}})
        writes, local = [], []
        revision = _revision(probe)
        async with store.watch("Volume", revision) as events:
            for n in range(count):
                start = time.perf_counter()
                probe = await store.update({**probe, "spec": {"n": n}})
                writes.append(time.perf_counter() - start)
                await events.__anext__()
                local.append(time.perf_counter() - start)
        rows.append(["update, round trip", *_ms(writes)])
        rows.append(["watch, same process", *_ms(local)])

        remote: list[float] = []
        revision = _revision(probe)
        async with store.watch("Volume", revision) as events, trio.open_nursery() as nursery:
            command = [sys.executable, "-c", WRITER, str(path), str(count)]
            nursery.start_soon(functools.partial(trio.run_process, command, check=True))
            async for event in events:
                remote.append((time.time_ns() - _spec(event.document)["sentNs"]) / 1e9)
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
            await trio.sleep(idle_seconds)
            busy = (time.process_time() - before) / idle_seconds
        rows.append(["idle store, 3 watches: CPU % of a core", f"{busy * 100:.2f}", "", ""])
    return rows


def main(*, quick: bool = False) -> None:
    count = 40 if quick else 300
    with tempfile.TemporaryDirectory(prefix="lhtrio-store-bench-") as scratch:
        rows = trio.run(_measure, Path(scratch) / "store.db", count, 1.0 if quick else 5.0)
    text = table(
        f"Store (SQLite): latency in ms over {count} changes",
        ["what", "p50", "p95", "max"],
        rows,
    )
    print(text)
    record("store", text)
