"""The main job: ``lhtrio cluster --tour`` — three node processes on the embedded store (or on a
real etcd, ``--store etcd://...``), driven through the admin API over real HTTP, qemu-io through
NBD — exits 0 having shown every step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lhtrio.cli import cli
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
    check_tour(result.stdout.decode(), tmp_path)
    assert f"store sqlite:{tmp_path / 'store.db'}" in result.stdout.decode()


async def test_the_cluster_tour_runs_on_etcd(tmp_path: Path, etcd_url: str) -> None:
    args = ["cluster", "--tour", "--dir", str(tmp_path), "--store", etcd_url]
    result = await run(sys.executable, "-m", "lhtrio", *args)
    check_tour(result.stdout.decode(), tmp_path)
    assert f"store {etcd_url}" in result.stdout.decode()
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize(
    ("store", "says"), [("memory:", "cannot share it"), ("etcd://x", "bad etcd member")]
)
def test_a_store_the_nodes_cannot_share_is_refused(tmp_path: Path, store: str, says: str) -> None:
    result = CliRunner().invoke(cli, ["cluster", "--dir", str(tmp_path), "--store", store])
    assert result.exit_code == 2
    assert says in result.output
    assert list(tmp_path.iterdir()) == []  # nothing started


def check_tour(out: str, tmp_path: Path) -> None:
    positions = [out.find(step) for step in STEPS]
    assert -1 not in positions, out
    assert positions == sorted(positions), out  # in this order
    assert (tmp_path / "node1" / "api-token").stat().st_mode & 0o777 == 0o600
