"""``lhtrio verify run`` against a real engine with three real replicas, over NBD (TCP and Unix).

The checker must pass a healthy volume, catch a block rolled back behind its back (an older value
of the block's own, written and flushed by someone else: what a lost write looks like), carry on
through a restarted engine, and refuse bad input without writing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from lhtrio.verify.model import NEVER, History, ViolationKind, check, encode_block
from lhtrio.verify.nbd import NbdTarget, open_nbd, parse_uri
from lhtrio.verify.workload import WorkloadConfig, read_back, run_writers, verify
from tests.procs import engine, replica, run, uri

pytestmark = pytest.mark.real

SIZE = "4Mi"


async def test_a_healthy_volume_passes_and_a_rolled_back_block_is_caught(tmp_path: Path) -> None:
    socket = tmp_path / "nbd.sock"
    async with (
        replica(tmp_path / "r0", "vol", SIZE) as r0,
        replica(tmp_path / "r1", "vol", SIZE) as r1,
        engine("vol", SIZE, [r0.address, r1.address], socket),
    ):
        target = parse_uri(uri("vol", socket))
        config = WorkloadConfig(blocks=64, writers=3, depth=4, seed=1)
        history, report, progress = await verify(target, config, duration=1.0, run=5)
        assert report.ok, report.violations
        assert report.blocks == 64
        assert report.durable_writes > 50
        assert report.acked_flushes > 5
        assert progress.connections == 3
        assert progress.broken == 0

        # Roll one block back to an older value of its own and flush: the checker names it.
        block, older, newest = next(
            (b, ws[0], ws[-1])
            for b in range(64)
            if len(ws := [w for w in history.writes if b in w.blocks]) > 2
        )
        assert older.acked < newest.invoked
        async with open_nbd(target) as client:
            stale = encode_block(run=history.run, block=block, stamp=older.stamp)
            await client.write(block * 4096, stale)
            await client.flush()
        reads = await read_back(target, 64)
        violations = check(history, reads).violations
        assert [(v.block, v.kind) for v in violations] == [(block, ViolationKind.STALE)]


async def test_the_cli_reports_and_exits_zero_on_a_healthy_volume(tmp_path: Path) -> None:
    async with (
        replica(tmp_path / "r0", "vol", SIZE) as r0,
        engine("vol", SIZE, [r0.address], tmp_path / "nbd.sock"),
    ):
        cmd = [sys.executable, "-m", "lhtrio", "verify", "run", "--uri"]
        result = await run(
            *cmd,
            uri("vol", tmp_path / "nbd.sock"),
            "--blocks",
            "32",
            "--duration",
            "0.5",
            "--writers",
            "2",
            "--seed",
            "3",
        )
        out = result.stdout.decode()
        assert "violations       0" in out
        assert "blocks checked   32" in out
        # A second run over the same blocks starts from what the first left: still clean.
        result = await run(
            *cmd, uri("vol", tmp_path / "nbd.sock"), "--blocks", "32", "--duration", "0.3"
        )
        assert "violations       0" in result.stdout.decode()


async def test_bad_input_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    socket = tmp_path / "nbd.sock"
    async with (
        replica(tmp_path / "r0", "vol", SIZE) as r0,
        engine("vol", SIZE, [r0.address], socket),
    ):
        cmd = [sys.executable, "-m", "lhtrio", "verify", "run", "--uri"]
        too_many = await run(*cmd, uri("vol", socket), "--blocks", "2048", check=False)
        assert too_many.returncode == 1
        assert too_many.stderr.decode() == (
            "error: 2048 blocks of 4096 bytes do not fit in "
            f"nbd+unix:///vol?socket={socket} (4194304 bytes): ask for at most 1024\n"
        )
        for bad in ("http://x/vol", "nbd:///vol", "nbd+unix:///vol"):
            result = await run(*cmd, bad, check=False)
            assert result.returncode == 2, bad
            assert "--uri" in result.stderr.decode()
        nobody = await run(*cmd, f"nbd+unix:///vol?socket={tmp_path / 'none.sock'}", check=False)
        assert nobody.returncode == 1
        assert nobody.stderr.decode().startswith("error: cannot connect to nbd+unix:///vol")
        wrong = await run(*cmd, uri("other", socket), check=False)
        assert wrong.returncode == 1
        assert wrong.stderr.decode().startswith("error: nbd+unix:///other?socket=")
        assert "refused export 'other'" in wrong.stderr.decode()
        for result in (too_many, nobody, wrong):
            assert "Traceback" not in result.stderr.decode()
        # Nothing was written: the volume still reads zeros.
        reads = await read_back(parse_uri(uri("vol", socket)), 1024)
        assert not any(data.strip(b"\0") for data in reads.values())


async def test_writers_carry_on_through_a_lost_connection(tmp_path: Path) -> None:
    """The engine restarted under the writers: they reconnect; the check still passes."""
    socket = tmp_path / "nbd.sock"
    async with replica(tmp_path / "r0", "vol", SIZE) as r0:
        target = NbdTarget(export="vol", socket=str(socket))
        history = History(run=9, blocks=32)
        config = WorkloadConfig(blocks=32, writers=2, depth=4, seed=2)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            async with engine("vol", SIZE, [r0.address], socket):
                nursery.start_soon(run_writers, target, history, config, stop)
                with trio.fail_after(30):
                    while sum(f.acked != NEVER for f in history.flushes) < 5:  # noqa: ASYNC110
                        await trio.sleep(0.01)
            acked = len(history.flushes)
            async with engine("vol", SIZE, [r0.address], socket):
                with trio.fail_after(30):
                    while sum(f.acked != NEVER for f in history.flushes) < acked + 5:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                stop.set()
                report = check(history, await read_back(target, 32))
    assert report.ok, report.violations
