"""``lhtrio node --api`` as a process, as probes, Prometheus and ``curl -N`` see it: ``/healthz``
and ``/readyz`` answer without a token, ``/metrics`` needs it (as a scrape configured with the
node's token sends it) and shows the node, and SIGTERM ends an open watch stream cleanly (curl
exits 0) and the node exits at once, not after hypercorn's grace period."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from lhtrio.api.server import GRACEFUL_TIMEOUT
from tests.api.sse_client import curl
from tests.api.test_node_process import first_lines

pytestmark = pytest.mark.real


async def test_probes_metrics_and_a_watch_of_a_node_process(tmp_path: Path) -> None:
    proc = await trio.lowlevel.open_process(
        [
            sys.executable, "-m", "lhtrio", "node", "--name", "n1", "--data-dir",
            str(tmp_path / "data"), "--store", f"sqlite:{tmp_path / 'store.db'}",
            "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0", "--port-range", "32400-32499",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with trio.fail_after(60):
            _, _, url = await first_lines(proc, 3)
        token = (tmp_path / "data" / "api-token").read_text().strip()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/healthz")).text == "ok\n"
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.text) == (200, "ok\n")
            assert (await client.get("/metrics")).status_code == 401
            metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            names = {f.name for f in text_string_to_metric_families(metrics.text)}
            for name in (
                "lhtrio_node_storage_capacity_bytes",
                "lhtrio_disk_capacity_bytes",
                "lhtrio_process_resident_memory_bytes",
                "lhtrio_process_open_fds",
                "lhtrio_process_cpu_seconds",  # (a counter: its family has no _total)
                "lhtrio_trio_tasks_living",
            ):
                assert name in names, sorted(names)

        async with curl(f"{url}/v1/watch?kind=Node", token=token) as stream:
            added = await stream.next()
            assert (added.event, added.data["object"]["metadata"]["name"]) == ("ADDED", "n1")
            assert (await stream.next()).event == "BOOKMARK"
            started = trio.current_time()
            proc.terminate()
            assert await stream.rest() == b""  # the body ended cleanly: curl exits 0
            with trio.fail_after(GRACEFUL_TIMEOUT):
                assert await proc.wait() == 0
            assert trio.current_time() - started < GRACEFUL_TIMEOUT / 2
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
