"""The main job: ``lhtrio cluster --tour`` — three node processes on the embedded store, driven
through the admin API over real HTTP, qemu-io through NBD — exits 0 having shown every step."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.procs import run

STEPS = (
    "detached, with a replica on each node",
    "attached on node1, healthy",
    "degraded",
    "I/O goes on while degraded",
    "healthy again (node3's replica rebuilt in place)",
    "every pattern reads back",
    "deleted",
    "tour done",
)


async def test_the_cluster_tour_runs_to_its_end(tmp_path: Path) -> None:
    result = await run(sys.executable, "-m", "lhtrio", "cluster", "--tour", "--dir", str(tmp_path))
    out = result.stdout.decode()
    positions = [out.find(step) for step in STEPS]
    assert -1 not in positions, out
    assert positions == sorted(positions), out  # in this order
    assert (tmp_path / "node1" / "api-token").stat().st_mode & 0o777 == 0o600
