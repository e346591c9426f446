"""Control-plane benchmark (issue 18): create+attach latency, and what an idle node costs.

Three ``lhtrio node`` processes on 127.0.0.11-13 sharing one SQLite store, each with the admin
API (as ``lhtrio cluster`` runs them). For each of N volumes (64 MiB, 3 replicas): the time from
``POST /v1/volumes`` to the volume reported attached and healthy on node 1 after
``?action=attach`` (the API polled every 10 ms; one volume at a time). Then, with every volume
attached, the CPU the node holding the engines spends over 10 idle seconds, as % of one core
(each running engine is read every 5 s by its manager, Longhorn's engine monitor). Goals
(issue 18): create+attach p50 under 1 s; an idle node under 2 % of a core.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from lhtrio.bench._util import Server, record, table
from lhtrio.node.local import start_node

MiB = 1 << 20


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def main(*, quick: bool = False) -> None:
    count = 5 if quick else 30
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
            with httpx.Client(base_url=api, timeout=60, headers=auth) as http:
                for n in range(count):
                    name = f"bench-{n}"
                    start = time.perf_counter()
                    body = {"name": name, "size": str(64 * MiB), "numberOfReplicas": 3}
                    http.post("/v1/volumes", json=body, headers=auth).raise_for_status()
                    attach = {"hostId": "node1"}
                    url = f"/v1/volumes/{name}?action=attach"
                    http.post(url, json=attach, headers=auth).raise_for_status()
                    while True:
                        status = http.get(f"/v1/volumes/{name}").json()["status"]
                        if (
                            status.get("state") == "attached"
                            and status.get("robustness") == "healthy"
                        ):
                            break
                        if time.perf_counter() - start > 120:
                            raise RuntimeError(f"{name} did not attach: {status}")
                        time.sleep(0.01)
                    latencies.append(time.perf_counter() - start)
                node1 = Server("node1", nodes[0].process.pid)
                before = node1.cpu_seconds()
                time.sleep(10.0)
                idle = (node1.cpu_seconds() - before) / 10.0
        finally:
            for node in reversed(nodes):
                node.stop(grace=120)
    p50, p95 = _percentiles(latencies)
    rows = [
        [f"create + attach, {count} volumes of 3 replicas, one at a time", f"{p50 * 1e3:.0f} ms",
         f"{p95 * 1e3:.0f} ms", "p50 < 1 s: " + ("met" if p50 < 1 else "not met")],
        [f"idle node holding {count} attached engines, CPU % of a core", f"{idle * 100:.2f} %", "",
         "< 2 %: " + ("met" if idle < 0.02 else "not met")],
    ]  # fmt: skip
    text = table(
        "Control plane: three node processes, one SQLite store",
        ["what", "p50", "p95", "goal"],
        rows,
    )
    print(text)
    record("control", text)
