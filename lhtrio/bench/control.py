"""Control-plane benchmark (issue 18): create+attach latency, propagation, what an idle node costs.

Three ``lhtrio node`` processes on 127.0.0.11-13 sharing one SQLite store, each with the admin
API (as ``lhtrio cluster`` runs them). Measured, in this order:

* **create + attach**: for each of N volumes (64 MiB, 3 replicas; ``--volumes N``, 100 by
  default), one at a time, the time from ``POST /v1/volumes`` to the volume reported attached
  and healthy on node 1 after ``?action=attach`` (the API polled every 10 ms).
* **idle**: with every volume attached, the CPU each node spends over :data:`IDLE` seconds, as %
  of one core (node 1 holds every engine and a replica of each volume; nodes 2 and 3 a replica
  of each). The window spans two of the reconcilers' resyncs.
* **propagation**: for a few volumes, one at a time, node 2's replica instance of the volume is
  stopped through node 2's instance manager (``lhtrio im``'s call): the time until the store
  (watched by this process) holds the engine's view of it (no longer RW: the engine on node 1
  failed it, node 1's manager wrote the engine's replica modes), then until the volume is
  healthy again with every replica RW (failed, reused in place and rebuilt).

Goals (issue 18): create+attach p50 under 1 s; an idle node under 2 % of a core.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

from lhtrio.bench._util import Server, record, table
from lhtrio.clients.node import NodeClient
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.sqlite import open_sqlite_store
from lhtrio.models.cluster import Engine, Replica, Volume
from lhtrio.models.cluster.engine import engine_name
from lhtrio.models.cluster.validate import ClusterObject
from lhtrio.models.cluster.volume import Robustness, VolumeState
from lhtrio.models.volume import Mode
from lhtrio.net import open_rpc_client
from lhtrio.node.local import LocalNode, start_node

MiB = 1 << 20
T = TypeVar("T", bound=ClusterObject)
#: Volumes created by default (the issue's figure).
VOLUMES = 100
#: Seconds over which the idle nodes' CPU is measured.
IDLE = 60.0
#: Seconds the cluster is left alone before that (the last volume's settling writes).
SETTLE = 10.0
#: Volumes whose replica is stopped to measure propagation.
PROPAGATION = 10


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _poll(http: httpx.Client, name: str, done: Callable[[dict[str, Any]], bool]) -> None:
    """Poll the API every 10 ms until ``done(status)`` holds for volume ``name``."""
    start = time.perf_counter()
    while True:
        status = http.get(f"/v1/volumes/{name}").json()["status"]
        if done(status):
            return
        if time.perf_counter() - start > 120:
            raise RuntimeError(f"volume {name} did not get there: {status}")
        time.sleep(0.01)


def _healthy(status: dict[str, Any]) -> bool:
    return status.get("state") == "attached" and status.get("robustness") == "healthy"


async def _until(objects: Objects, kind: type[T], name: str, done: Callable[[T], bool]) -> None:
    """Until ``done`` holds for object ``name`` of ``kind`` (following the store's watch)."""
    with trio.fail_after(120):
        while True:
            _, revision = await objects.list(kind)
            if done(await objects.get(kind, name)):
                return
            async with objects.store.watch(kind.KIND, revision) as events:
                async for _ in events:
                    break


async def _probe(store: Path, control: str, volume: str) -> tuple[float, float]:
    """Stop ``volume``'s replica on the node at ``control`` (node 2); the seconds until its
    engine's view of it (not RW any more) is in the store, and until the volume is healthy
    again with every replica RW."""
    async with open_sqlite_store(store) as opened:
        objects = Objects(opened)
        replicas, _ = await objects.list(Replica)
        (lost,) = [
            r.meta.name
            for r in replicas
            if r.spec.volume_name == volume and r.spec.node_id == "node2" and not r.failed
        ]
        engine = engine_name(volume)
        async with open_rpc_client(control, client="bench") as rpc:
            start = time.perf_counter()
            await NodeClient(rpc).delete(lost)
        await _until(
            objects, Engine, engine, lambda e: e.status.replica_mode_map.get(lost) is not Mode.RW
        )
        seen = time.perf_counter() - start
        await _until(
            objects,
            Volume,
            volume,
            lambda v: (
                v.status.state is VolumeState.ATTACHED and v.status.robustness is Robustness.HEALTHY
            ),
        )
        await _until(
            objects,
            Engine,
            engine,
            lambda e: (
                set(e.status.replica_mode_map.values()) == {Mode.RW}
                and len(e.status.replica_mode_map) == 3
            ),
        )
        return seen, time.perf_counter() - start


def _idle(nodes: list[LocalNode], seconds: float) -> list[float]:
    """Each node's CPU over ``seconds``, as a fraction of one core."""
    servers = [Server(node.name, node.process.pid) for node in nodes]
    before = [s.cpu_seconds() for s in servers]
    time.sleep(seconds)
    return [(s.cpu_seconds() - b) / seconds for s, b in zip(servers, before, strict=True)]


def main(*, quick: bool = False, volumes: int | None = None) -> None:
    count = volumes or (5 if quick else VOLUMES)
    probes = min(count, 3 if quick else PROPAGATION)
    with tempfile.TemporaryDirectory(prefix="lhtrio-control-bench-") as scratch:
        base = Path(scratch)
        nodes = [
            start_node(base, i, port_range=(20000 + 2000 * i, 21999 + 2000 * i)) for i in (1, 2, 3)
        ]
        try:
            api = nodes[0].api
            token = (base / "node1" / "api-token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            latencies: list[float] = []
            degraded: list[float] = []
            healed: list[float] = []
            with httpx.Client(base_url=api, timeout=60, headers=auth) as http:
                for n in range(count):
                    name = f"bench-{n}"
                    start = time.perf_counter()
                    body = {"name": name, "size": str(64 * MiB), "numberOfReplicas": 3}
                    http.post("/v1/volumes", json=body, headers=auth).raise_for_status()
                    attach = {"hostId": "node1"}
                    url = f"/v1/volumes/{name}?action=attach"
                    http.post(url, json=attach, headers=auth).raise_for_status()
                    _poll(http, name, _healthy)
                    latencies.append(time.perf_counter() - start)
                time.sleep(1.0 if quick else SETTLE)
                idle = _idle(nodes, 5.0 if quick else IDLE)
                for n in range(probes):
                    seen, back = trio.run(_probe, base / "store.db", nodes[1].control, f"bench-{n}")
                    degraded.append(seen)
                    healed.append(back)
        finally:
            for node in reversed(nodes):
                node.stop(grace=120)
    p50, p95 = _percentiles(latencies)
    d50, d95 = _percentiles(degraded)
    h50, h95 = _percentiles(healed)
    holds = {1: f"{count} engines + {count} replicas"}
    rows = [
        [f"create + attach, {count} volumes of 3 replicas, one at a time", f"{p50 * 1e3:.0f} ms",
         f"{p95 * 1e3:.0f} ms", "p50 < 1 s: " + ("met" if p50 < 1 else "not met")],
        *([f"idle node{i} ({holds.get(i, f'{count} replicas')}), CPU % of a core",
           f"{cpu * 100:.2f} %", "", "< 2 %: " + ("met" if cpu < 0.02 else "not met")]
          for i, cpu in enumerate(idle, 1)),
        [f"replica stopped → the engine's view of it in the store ({probes} volumes)",
         f"{d50 * 1e3:.0f} ms", f"{d95 * 1e3:.0f} ms", ""],
        [f"replica stopped → volume healthy again, every replica RW ({probes} volumes)",
         f"{h50 * 1e3:.0f} ms", f"{h95 * 1e3:.0f} ms", ""],
    ]  # fmt: skip
    text = table(
        "Control plane: three node processes, one SQLite store",
        ["what", "p50", "p95", "goal"],
        rows,
    )
    print(text)
    record("control", text)
