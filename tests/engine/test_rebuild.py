"""Online rebuild and salvage with real processes: ``lhtrio replica``/``engine``/``ctl``, fio."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from lhtrio.net import open_rpc_client
from tests.engine.test_engine_clients import _wait_until, fio, qemu_io
from tests.procs import Proc, ctl, engine, replica, run, uri

MiB = 1 << 20


class Cluster:
    """Replicas on Unix sockets (a restarted replica keeps its address) and one engine."""

    def __init__(self, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.tmp_path = tmp_path
        self.stack = stack
        self.socket = tmp_path / "nbd.sock"
        self.uri = uri("vol", self.socket)
        self.replicas: dict[str, Proc] = {}
        self.engine: Proc | None = None

    def dir(self, name: str) -> Path:
        return self.tmp_path / name

    async def start_replica(self, name: str, size: str | None = "64Mi") -> str:
        proc = await self.stack.enter_async_context(replica(self.dir(name), "vol", size, unix=True))
        self.replicas[name] = proc
        return proc.address

    async def start_engine(self, *names: str, extra: tuple[str, ...] = ()) -> str:
        addresses = [f"unix:{self.dir(n)}.sock" for n in names]
        proc = await self.stack.enter_async_context(
            engine("vol", "64Mi", addresses, self.socket, "--replica-timeout", "4", *extra)
        )
        self.engine = proc
        return proc.address

    @property
    def control(self) -> str:
        assert self.engine is not None
        return self.engine.address

    async def add(self, name: str, *extra: str) -> Any:
        return await ctl(self.control, "replica", "add", f"unix:{self.dir(name)}.sock", *extra)

    async def modes(self) -> list[str]:
        return [r["mode"] for r in await ctl(self.control, "replica", "ls")]


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        yield Cluster(tmp_path, stack)


async def _rebuild_state(control: str) -> dict[str, Any]:
    async with open_rpc_client(control, client="test") as client:
        status: dict[str, Any] = await client.call_control("rebuild_status")
    return status


async def _until_rebuild_ends(control: str) -> dict[str, Any]:
    async with open_rpc_client(control, client="test") as client:
        with trio.fail_after(60):
            while True:
                status: dict[str, Any] = await client.call_control("rebuild_status", wait=1.0)
                if status["state"] in ("done", "failed"):
                    return status


async def test_a_replica_added_during_fio_verify_alone_serves_every_block(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        for name in ("r0", "r1", "r2"):
            await c.start_replica(name)
        await c.start_engine("r0", "r1")
        job = fio(c.uri, "--size=24M", "--rate_iops=1500")  # about 4 s of writes, then verify
        fio_done = trio.Event()
        rebuilt: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def writer() -> None:
                await run(*job)
                fio_done.set()

            nursery.start_soon(writer)
            await _wait_until(lambda: (c.dir("r0") / "volume-head-000.img").stat().st_blocks > 0)
            rebuilt.append(await c.add("r2"))
            assert not fio_done.is_set()  # the rebuild ran while fio was writing
        result = rebuilt[0]
        assert result["state"] == "done", result
        assert 0 < result["sent_bytes"] <= result["total_bytes"]
        assert await c.modes() == ["RW", "RW", "RW"]
        c.replicas["r0"].kill()
        c.replicas["r1"].kill()
        # fio re-reads every block it wrote and checks its crc32c: served by r2 alone.
        await run(*fio(c.uri, "--size=24M", "--verify_only"))
        info = await ctl(c.control, "info")
        assert info["state"] == "degraded"
        assert [r["mode"] for r in info["replicas"]] == ["ERR", "ERR", "RW"]


async def test_a_returning_replica_is_rebuilt_by_sending_only_what_changed(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.start_replica("r0")
        await c.start_replica("r1")
        await c.start_engine("r0", "r1")
        await run(*qemu_io(c.uri, "write -P 1 0 32M", "flush"))
        c.replicas["r1"].kill()
        # 10 % of the data's blocks change while r1 is down: a 1.6 MiB run and 410 scattered
        # 4 KiB blocks (every 20th block), which touch every 2 MiB window.
        changes = ["write -P 2 4M 1600k"]
        changes += [f"write -P 3 {block * 4096} 4k" for block in range(0, 8192, 20)]
        await run(*qemu_io(c.uri, *changes, "flush"))
        assert await c.modes() == ["RW", "ERR"]
        await c.start_replica("r1", None)
        result = await c.add("r1")
        assert result["state"] == "done", result
        assert result["delta"] is True  # the engine's away log said where r1 may differ
        assert result["total_bytes"] >= 32 * MiB
        changed = len({*range(1024, 1024 + 400), *range(0, 8192, 20)}) * 4096
        assert changed <= result["sent_bytes"] < 0.2 * result["total_bytes"]
        expected = tmp_path / "expected.img"
        await run("nbdcopy", c.uri, str(expected))
        c.replicas["r0"].kill()
        assert await c.modes() == ["ERR", "RW"]
        served = tmp_path / "served.img"
        await run("nbdcopy", c.uri, str(served))
        assert served.read_bytes() == expected.read_bytes()


async def _start_rebuild(control: str, address: str) -> dict[str, Any]:
    """``replica_add`` straight over RPC: returns as soon as the target is WO."""
    async with open_rpc_client(control, client="test") as client:
        status: dict[str, Any] = await client.call_control("replica_add", address=address)
    return status


async def test_killing_the_target_or_the_source_mid_rebuild_fails_it_cleanly_and_a_retry_works(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        for name in ("r0", "r1", "r2"):
            await c.start_replica(name)
        await c.start_engine("r0", "r1")
        await run(*qemu_io(c.uri, "write -P 9 0 16M"))
        job = fio(c.uri, "--size=16M", "--offset=32M", "--rate_iops=1500")
        fio_done = trio.Event()

        async def writer() -> None:
            await run(*job)  # writes all along; fails the test if a block does not verify
            fio_done.set()

        # Replicas restarted inside must stop before the nursery does: their own stack.
        async with trio.open_nursery() as nursery, AsyncExitStack() as c.stack:
            nursery.start_soon(writer)

            # The target dies right after it became WO: it cannot have finished.
            await _start_rebuild(c.control, f"unix:{c.dir('r2')}.sock")
            c.replicas["r2"].kill()
            status = await _until_rebuild_ends(c.control)
            assert status["state"] == "failed"
            assert await c.modes() == ["RW", "RW", "ERR"]

            # The retry reuses what the first attempt left in r2's directory.
            await c.start_replica("r2", None)
            assert (await c.add("r2"))["state"] == "done"
            assert await c.modes() == ["RW", "RW", "RW"]

            # The source dies mid-rebuild: freeze the target, kill the source, let it go on.
            await ctl(c.control, "replica", "rm", f"unix:{c.dir('r2')}.sock")
            await _start_rebuild(c.control, f"unix:{c.dir('r2')}.sock")
            target = c.replicas["r2"].process.pid
            os.kill(target, signal.SIGSTOP)
            source = (await _rebuild_state(c.control))["source"]
            assert source == f"unix:{c.dir('r0')}.sock"
            c.replicas["r0"].kill()
            os.kill(target, signal.SIGCONT)
            status = await _until_rebuild_ends(c.control)
            assert status["state"] == "failed"
            assert "r0" in status["error"] or "source" in status["error"], status
            assert await c.modes() == ["ERR", "RW", "ERR"]

            # Retry from the remaining replica.
            assert (await c.add("r2"))["state"] == "done"
            assert await c.modes() == ["ERR", "RW", "RW"]
            await fio_done.wait()
            c.replicas["r1"].kill()
            await run(*qemu_io(c.uri, "read -P 9 0 16M"))
            await run(*fio(c.uri, "--size=16M", "--offset=32M", "--verify_only"))


async def test_failed_rebuilds_leave_no_system_snapshot_on_the_healthy_replicas(
    tmp_path: Path,
) -> None:
    """A target that dies at every attempt (its disk fails, and the manager retries): each
    attempt takes a system snapshot on every replica, holding what was written since the last.
    The engine purges them when a rebuild fails, as when it succeeds; kept, they filled the
    healthy replicas' disks in the chaos runs' read-error schedules."""
    async with cluster(tmp_path) as c:
        for name in ("r0", "r1", "r2"):
            await c.start_replica(name)
        await c.start_engine("r0", "r1")
        async with AsyncExitStack() as c.stack:  # (the restarted r2 stops before the engine)
            for attempt in range(3):
                await run(*qemu_io(c.uri, f"write -P {attempt + 1} 0 4M"))
                await _start_rebuild(c.control, f"unix:{c.dir('r2')}.sock")
                c.replicas["r2"].kill()
                assert (await _until_rebuild_ends(c.control))["state"] == "failed"
                await c.start_replica("r2", None)
            assert await c.modes() == ["RW", "RW", "ERR"]

            def snapshots(name: str) -> int:
                return sum(f.startswith("volume-snap-") for f in os.listdir(c.dir(name)))

            # Each purge leaves the newest system snapshot's file, pruned (the head shadows
            # it), until the next: 2 files (.img, .meta) on each, where there were 6.
            with trio.fail_after(30):  # the purge runs after the failure: look, with a deadline
                while snapshots("r0") > 2 or snapshots("r1") > 2:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            await run(*qemu_io(c.uri, "read -P 3 0 4M"))
            assert (await c.add("r2"))["state"] == "done"  # and r2 still comes back


async def test_ctl_salvage_serves_a_faulted_volume_from_the_newest_replica(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.start_replica("r0")
        await c.start_replica("r1")
        await c.start_engine("r0", "r1")
        await run(*qemu_io(c.uri, "write -P 1 0 1M", "flush"))
        c.replicas["r1"].kill()
        await run(*qemu_io(c.uri, "write -P 2 0 1M", "flush"))
        c.replicas["r0"].kill()
        failed = await run(*qemu_io(c.uri, "read 0 4k"), check=False)
        assert b"Input/output error" in failed.stdout + failed.stderr
        assert (await ctl(c.control, "info"))["state"] == "faulted"
        await c.start_replica("r0", None)
        await c.start_replica("r1", None)
        result = await ctl(c.control, "salvage")
        assert result["address"] == f"unix:{c.dir('r0')}.sock"
        assert "newest persisted revision counter" in result["reason"]
        assert result["info"]["state"] == "degraded"
        await run(*qemu_io(c.uri, "read -P 2 0 1M"))
        # The other one is rebuilt from the salvaged replica.
        assert (await c.add("r1"))["state"] == "done"
        assert (await ctl(c.control, "info"))["state"] == "healthy"


async def test_engine_salvage_flag_serves_a_replica_whose_rebuild_did_not_finish(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        address = await c.start_replica("r0")
        async with open_rpc_client(address, volume="vol") as client:
            await client.call_control("set_rebuilding", rebuilding=True)
        await c.start_engine("r0")
        info = await ctl(c.control, "info")
        assert info["state"] == "faulted"
        assert "did not finish" in info["replicas"][0]["error"]
        assert c.engine is not None
        await c.engine.terminate()
        await c.start_engine("r0", extra=("--salvage",))
        assert (await ctl(c.control, "info"))["state"] == "healthy"
        await run(*qemu_io(c.uri, "write -P 4 0 64k", "read -P 4 0 64k"))
