"""Admin API benchmark (issue 19): volume create, and ``GET /v1/volumes`` with 1,000 volumes.

One ``lhtrio node`` process on the SQLite store serving the admin API on loopback, as an
operator runs it (the access log on, to a file), and no other node: nothing attaches, so every
volume stays detached with its one replica placed (16 MiB each; the node's volume reconciler
runs as it would). A client (httpx, keep-alive, the token on every call) first creates the
volumes one after the other — the latency of each ``POST /v1/volumes`` — then, once every
volume is detached, lists them: ``GET /v1/volumes`` one request at a time, then from
:data:`CLIENTS` clients at once. For each phase: requests/s, p50 and p99 latency, and the node's
CPU (``utime + stime`` of the process: 100 % is one core, the most one trio process gets) per
second and per request, and what the node spends at rest with its volumes (its reconcilers'
resync of every volume), which the per-request figures include. The machine's load average is
printed beside: other work on a 2-core machine shows in every figure.

The node's own reconcilers keep it busy with 1,000 volumes (the last row of its part: it at
rest), so the lists are measured again against the API alone — ``python -m lhtrio.bench.api
STORE TOKEN``, :func:`lhtrio.api.serve_api` over the same store file in a process of its own,
no manager — which is what a list costs the API itself.

Run: ``nox -s bench -- api`` (``--quick``: 100 volumes, nothing recorded).
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import httpx
import trio

from lhtrio.bench._util import Server, child_process, record, stop_process, table

SIZE = 16 << 20
CLIENTS = 4
DEADLINE = 600.0
IDLE = 10.0  # seconds the node's CPU is measured at rest, between the phases


@attrs.frozen
class Phase:
    """What one phase measured: request latencies (s), its wall time (s), the node's CPU (s)."""

    name: str
    latencies: list[float]
    wall: float
    cpu: float
    size: int = 0  # bytes of one answer

    def row(self, rest: float = 0.0) -> list[object]:
        """The table's row; ``rest``: the node's CPU at rest (% of a core), taken out of the
        last column."""
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        count = len(ordered)
        net = (self.cpu - rest / 100 * self.wall) / count * 1000
        return [
            self.name,
            count,
            count / self.wall,
            statistics.median(ordered) * 1000,
            p99 * 1000,
            100 * self.cpu / self.wall,
            self.cpu / count * 1000,
            net,
        ]


def _start(base: Path) -> tuple[subprocess.Popen[str], str]:
    data = base / "data"
    command = [
        sys.executable, "-m", "lhtrio", "node", "--name", "bench", "--data-dir", str(data),
        "--store", f"sqlite:{base / 'store.db'}", "--api", "127.0.0.1:0",
        "--nbd", "127.0.0.1:0", "--port-range", "23000-23999",
    ]  # fmt: skip
    with (base / "node.log").open("a") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline().strip() for _ in range(3)]
    if not all(lines):
        process.wait()
        raise RuntimeError(f"the node did not start: see {base / 'node.log'}")
    return process, lines[2]


Call = Callable[[httpx.Client, int], None]


def _timed(node: Server, name: str, work: list[tuple[httpx.Client, range]], call: Call) -> Phase:
    """``call(client, index)`` for each index of each client's range, the clients at once (a
    thread each); the latency of every call, the wall time and the node's CPU."""
    latencies: list[float] = []
    lock = threading.Lock()

    def run(client: httpx.Client, indexes: range) -> None:
        for index in indexes:
            start = time.perf_counter()
            call(client, index)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=run, args=job) for job in work]
    cpu, start = node.cpu_seconds(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Phase(name, latencies, time.perf_counter() - start, node.cpu_seconds() - cpu)


def _settled(http: httpx.Client, count: int) -> None:
    """Wait (polling, with a deadline) until every volume is detached: the node idle again."""
    start = time.monotonic()
    while True:
        detached = http.get("/v1/volumes", params={"state": "detached"}).json()["data"]
        if len(detached) == count:
            return
        if time.monotonic() - start > DEADLINE:
            raise RuntimeError(f"{len(detached)} of {count} volumes detached after {DEADLINE} s")
        time.sleep(0.5)


def _lists(server: Server, url: str, headers: dict[str, str], lists: int) -> list[Phase]:
    """``GET /v1/volumes`` ``lists`` times from one client, then from :data:`CLIENTS`."""
    sizes: list[int] = []

    def list_all(client: httpx.Client, _: int) -> None:
        response = client.get("/v1/volumes")
        response.raise_for_status()
        sizes.append(len(response.content))

    clients = [httpx.Client(base_url=url, headers=headers, timeout=60) for _ in range(CLIENTS)]
    try:
        one = _timed(server, "GET /v1/volumes", [(clients[0], range(lists))], list_all)
        share = lists // CLIENTS
        many = _timed(
            server,
            f"GET /v1/volumes, {CLIENTS} clients",
            [(c, range(i * share, (i + 1) * share)) for i, c in enumerate(clients)],
            list_all,
        )
    finally:
        for client in clients:
            client.close()
    return [attrs.evolve(one, size=max(sizes)), many]


def _at_rest(server: Server) -> float:
    """The server's CPU over :data:`IDLE` seconds with nothing asked of it (% of a core)."""
    cpu, start = server.cpu_seconds(), time.perf_counter()
    time.sleep(IDLE)
    return 100 * (server.cpu_seconds() - cpu) / (time.perf_counter() - start)


def main(*, quick: bool = False) -> None:
    count = 100 if quick else 1000
    lists = 20 if quick else 200
    with tempfile.TemporaryDirectory(prefix="lhtrio-api-bench-") as scratch:
        base = Path(scratch)
        process, url = _start(base)
        node = Server(address=url, pid=process.pid)
        token = (base / "data" / "api-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:

                def create(client: httpx.Client, index: int) -> None:
                    body = {"name": f"b-{index:04d}", "size": str(SIZE), "numberOfReplicas": 1}
                    client.post("/v1/volumes", json=body).raise_for_status()

                created = _timed(node, "POST /v1/volumes", [(http, range(count))], create)
                _settled(http, count)
            time.sleep(2)  # (the node's last status writes after the volumes went detached)
            rest = _at_rest(node)
            listed = _lists(node, url, headers, lists)
        finally:
            stop_process(process)
        # the same store file served by the API alone: what a list costs the API itself
        with child_process(
            [sys.executable, "-m", "lhtrio.bench.api", str(base / "store.db"), token],
            log=base / "api.log",
        ) as alone:
            assert alone.stdout is not None
            api_url = alone.stdout.readline().strip()
            api = Server(address=api_url, pid=alone.pid)
            alone_rest = _at_rest(api)
            only = _lists(api, api_url, headers, lists)
    header = [
        "server", "request", "requests", "req/s", "p50 ms", "p99 ms", "its CPU %",
        "its CPU ms/req", "less rest, ms/req",
    ]  # fmt: skip
    rows = [
        ["node", *created.row()[:-1], ""],
        *(["node", *phase.row(rest)] for phase in listed),
        ["node", f"(none: at rest, {IDLE:.0f} s)", 0, "", "", "", rest, "", ""],
        *(["API alone", *phase.row(alone_rest)] for phase in only),
        ["API alone", f"(none: at rest, {IDLE:.0f} s)", 0, "", "", "", alone_rest, "", ""],
    ]
    title = (
        f"Admin API: one node on SQLite, {count} volumes (a list's answer "
        f"{listed[0].size / 1024:.0f} KiB); load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    text = table(title, header, rows)
    print(text)
    if not quick:
        record("api", text)


async def _serve_alone(store_url: str, token: str) -> None:
    """The admin API alone (no manager, no instances) over ``store_url``; prints its URL."""
    from lhtrio.api import serve_api  # noqa: PLC0415 - the child's part only
    from lhtrio.manager.objects import Objects  # noqa: PLC0415
    from lhtrio.manager.store.open import open_store  # noqa: PLC0415

    async with open_store(store_url) as store, trio.open_nursery() as nursery:
        url = await nursery.start(
            functools.partial(serve_api, Objects(store), "127.0.0.1", 0, token=token)
        )
        print(url, flush=True)


if __name__ == "__main__":  # python -m lhtrio.bench.api STORE_FILE TOKEN: the API alone
    trio.run(_serve_alone, f"sqlite:{sys.argv[1]}", sys.argv[2])
