"""``lhtrio engine`` with 1 and 3 ``lhtrio replica`` processes, driven by real NBD clients."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import struct
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from lhtrio.errors import InvalidArgumentError
from lhtrio.net import open_rpc_client
from lhtrio.wire import Role
from tests.procs import Proc, ctl, engine, replica, run, uri

MiB = 1 << 20


@attrs.define
class Volume:
    name: str
    socket: Path
    engine: Proc
    replicas: list[Proc]
    dirs: list[Path]

    @property
    def uri(self) -> str:
        return uri(self.name, self.socket)


@asynccontextmanager
async def volume(
    tmp_path: Path,
    count: int,
    size: str = "64Mi",
    *,
    unix: bool = False,
    engine_args: tuple[str, ...] = (),
) -> AsyncIterator[Volume]:
    async with AsyncExitStack() as stack:
        dirs = [tmp_path / f"r{i}" for i in range(count)]
        replicas = [
            await stack.enter_async_context(replica(d, "vol", size, unix=unix)) for d in dirs
        ]
        socket = tmp_path / "nbd.sock"
        eng = await stack.enter_async_context(
            engine("vol", size, [r.address for r in replicas], socket, *engine_args)
        )
        yield Volume("vol", socket, eng, replicas, dirs)


@asynccontextmanager
async def replicated(
    dirs: list[Path], socket: Path, size: str | None = "64Mi"
) -> AsyncIterator[tuple[list[Proc], Proc]]:
    """A replica per directory (``size`` None: reopen them) and an engine over them."""
    async with AsyncExitStack() as stack:
        reps = [await stack.enter_async_context(replica(d, "vol", size)) for d in dirs]
        eng = await stack.enter_async_context(
            engine("vol", "64Mi", [r.address for r in reps], socket)
        )
        yield reps, eng


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll, with a deadline, for a state another process creates (nothing can signal it)."""
    with trio.fail_after(60):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.02)


def qemu_io(target: str, *commands: str) -> list[str]:
    args = ["qemu-io", "-f", "raw"]
    for command in commands:
        args += ["-c", command]
    return [*args, target]


@pytest.mark.parametrize(
    ("count", "listen", "link"),
    [
        (1, "tcp", "unix"),  # a replica on the engine's host: its same-host socket
        (3, "tcp", "unix"),
        (3, "tcp-only", "tcp"),  # lhtrio engine --no-local-sockets
        (3, "unix", "unix"),  # lhtrio replica --listen unix:PATH
    ],
)
async def test_qemu_io_patterns_aligned_and_unaligned(
    tmp_path: Path, count: int, listen: str, link: str
) -> None:
    unix = listen == "unix"
    engine_args = ("--no-local-sockets",) if listen == "tcp-only" else ()
    async with volume(tmp_path, count, unix=unix, engine_args=engine_args) as vol:
        out = await run(
            *qemu_io(
                vol.uri,
                "write -P 0xab 0 64k",
                "write -P 0xcd 100001 3333",  # unaligned at both ends
                "aio_write -P 0x11 1M 128k",
                "aio_write -P 0x22 2M 128k",
                "aio_flush",
                "read -P 0xab 0 64k",
                "read -P 0xcd 100001 3333",
                "read -P 0x00 100000 1",
                "read -P 0x00 103334 1",
                "read -P 0x11 1M 128k",
                "read -P 0x22 2M 128k",
            )
        )
        assert b"Pattern verification failed" not in out.stdout
        info = await ctl(vol.engine.address, "info")
        assert info["state"] == "healthy"
        assert [r["mode"] for r in info["replicas"]] == ["RW"] * count
        assert all(r["address"].startswith("unix:" if unix else "tcp:") for r in info["replicas"])
        assert [r["link"] for r in info["replicas"]] == [link] * count


@pytest.mark.parametrize("count", [1, 3])
async def test_qemu_img_convert_in_and_out_is_byte_identical(tmp_path: Path, count: int) -> None:
    source = tmp_path / "source.img"
    source.write_bytes(os.urandom(5 * MiB) + bytes(3 * MiB) + os.urandom(MiB + 512))
    async with volume(tmp_path, count, size="16Mi") as vol:
        await run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(source), vol.uri)
        back = tmp_path / "back.img"
        await run("qemu-img", "convert", "-f", "raw", "-O", "raw", vol.uri, str(back))
    data = back.read_bytes()
    assert len(data) == 16 * MiB
    assert data[: source.stat().st_size] == source.read_bytes()
    assert data[source.stat().st_size :] == bytes(len(data) - source.stat().st_size)


async def test_nbdinfo_map_shows_data_and_holes_after_writes_and_trim(tmp_path: Path) -> None:
    async with volume(tmp_path, 3) as vol:
        await run(*qemu_io(vol.uri, "write -P 1 0 64k", "write -P 2 1M 128k", "discard 0 32k"))
        out = await run("nbdinfo", "--map", "--json", vol.uri)
    extents = [(e["offset"], e["length"], e["type"]) for e in json.loads(out.stdout)]
    assert extents[:4] == [
        (0, 32 * 1024, 3),  # trimmed: hole, reads as zero
        (32 * 1024, 32 * 1024, 0),  # data
        (64 * 1024, MiB - 64 * 1024, 3),
        (MiB, 128 * 1024, 0),
    ]
    assert extents[4][0] == MiB + 128 * 1024
    assert extents[4][2] == 3


async def test_nbdcopy_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "in.img"
    source.write_bytes(os.urandom(8 * MiB))
    back = tmp_path / "out.img"
    async with volume(tmp_path, 3, size="8Mi") as vol:
        await run("nbdcopy", str(source), vol.uri)
        await run("nbdcopy", vol.uri, str(back))
    assert back.read_bytes() == source.read_bytes()


def fio(target: str, *extra: str) -> list[str]:
    return [
        "fio", "--name=verify", "--ioengine=nbd", f"--uri={target}", "--rw=randwrite",
        "--bs=4k", "--iodepth=16", "--size=16M", "--verify=crc32c", "--verify_fatal=1",
        "--do_verify=1", "--verify_state_save=0", "--output-format=terse", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("count", [1, 3])
async def test_fio_verify(tmp_path: Path, count: int) -> None:
    async with volume(tmp_path, count) as vol:
        await run(*fio(vol.uri))


async def test_sigkill_one_replica_during_fio_verify(tmp_path: Path) -> None:
    async with volume(tmp_path, 3) as vol:
        async with trio.open_nursery() as nursery:
            result: list[object] = []

            async def writer() -> None:
                result.append(await run(*fio(vol.uri, "--size=32M")))

            nursery.start_soon(writer)
            # Kill it once fio's writes reach it (its head file gets blocks), mid-run.
            await _wait_until(
                lambda: (tmp_path / "r1" / "volume-head-000.img").stat().st_blocks > 0
            )
            assert (await ctl(vol.engine.address, "info"))["state"] == "healthy"
            vol.replicas[1].kill()
        assert result  # fio exited 0: every block written verified
        info = await ctl(vol.engine.address, "info")
        assert info["state"] == "degraded"
        assert [r["mode"] for r in info["replicas"]] == ["RW", "ERR", "RW"]


async def test_a_stalled_replica_is_failed_while_the_engine_serves_queue_depth_1(
    tmp_path: Path,
) -> None:
    """SIGSTOP a replica under fio at queue depth 1, where the engine waits for the replicas'
    answers in place (``Volume.linger``): the stall timeout fails it, and every write verifies."""
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    socket = tmp_path / "nbd.sock"
    async with AsyncExitStack() as stack:
        reps = [await stack.enter_async_context(replica(d, "vol")) for d in dirs]
        eng = await stack.enter_async_context(
            engine("vol", "64Mi", [r.address for r in reps], socket, "--replica-timeout", "1")
        )
        stalled = reps[1].process.pid
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def writer() -> None:
                await run(*fio(uri("vol", socket), "--iodepth=1", "--size=8M"))
                done.set()

            nursery.start_soon(writer)
            await _wait_until(lambda: (dirs[1] / "volume-head-000.img").stat().st_blocks > 0)
            os.kill(stalled, signal.SIGSTOP)
            try:
                await done.wait()  # fio exited 0: every block verified
                # A write after the stall goes to every writer: it is answered only once the
                # stalled replica is failed (if fio's own writes did not get there first).
                await run(*qemu_io(uri("vol", socket), "write -P 3 60M 4k"))
                info = await ctl(eng.address, "info")
            finally:
                os.kill(stalled, signal.SIGCONT)
        assert [r["mode"] for r in info["replicas"]] == ["RW", "ERR", "RW"]
        assert info["state"] == "degraded"
        assert "stalled" in info["replicas"][1]["error"] or "ping" in info["replicas"][1]["error"]


async def test_all_replicas_killed_then_restarted(tmp_path: Path) -> None:
    socket = tmp_path / "nbd.sock"
    dirs = [tmp_path / f"r{i}" for i in range(2)]
    async with replicated(dirs, socket) as (reps, eng):
        await run(*qemu_io(uri("vol", socket), "write -P 0x5a 0 1M", "flush"))
        for r in reps:
            r.kill()
        # The client gets errors, not a hang.
        with trio.fail_after(60):
            failed = await run(*qemu_io(uri("vol", socket), "write -P 0x77 0 4k"), check=False)
        assert b"Input/output error" in failed.stderr + failed.stdout
        info = await ctl(eng.address, "info")
        assert info["state"] == "faulted"
        await eng.terminate()
    async with replicated(dirs, socket, None) as (reps, eng):
        out = await run(*qemu_io(uri("vol", socket), "read -P 0x5a 0 1M"))
        assert b"Pattern verification failed" not in out.stdout


async def test_replica_that_missed_writes_is_stale_on_restart(tmp_path: Path) -> None:
    socket = tmp_path / "nbd.sock"
    dirs = [tmp_path / f"r{i}" for i in range(2)]
    async with replicated(dirs, socket) as (reps, eng):
        await run(*qemu_io(uri("vol", socket), "write -P 1 0 64k", "flush"))
        reps[1].kill()
        # Not even flushed by the client: the engine flushes the survivor when it fails a replica.
        await run(*qemu_io(uri("vol", socket), "write -P 2 0 64k"))
        assert (await ctl(eng.address, "info"))["state"] == "degraded"
        for r in reps:
            r.kill()
        await eng.terminate()
    async with replicated(dirs, socket, None) as (reps, eng):
        replicas = await ctl(eng.address, "replica", "ls")
        assert [r["mode"] for r in replicas] == ["RW", "ERR"]
        assert "stale" in replicas[1]["error"]
        out = await run(*qemu_io(uri("vol", socket), "read -P 2 0 64k"))
        assert b"Pattern verification failed" not in out.stdout


async def test_a_start_that_cannot_reach_the_replica_holding_the_newest_writes_serves_nothing(
    tmp_path: Path,
) -> None:
    """r2 fails, then r1: r0 alone holds the last flushed writes. A start that reaches r1 and
    r2 only (r1's counter the highest of the two) must not serve r1's past: it waits for r0."""
    socket = tmp_path / "nbd.sock"
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    async with replicated(dirs, socket) as (reps, eng):
        await run(*qemu_io(uri("vol", socket), "write -P 1 0 64k", "flush"))
        reps[2].kill()
        await run(*qemu_io(uri("vol", socket), "write -P 2 0 64k", "flush"))
        reps[1].kill()
        await run(*qemu_io(uri("vol", socket), "write -P 3 0 64k", "flush"))
        gone = reps[0].address
        for r in reps:
            r.kill()
        await eng.terminate()
    async with AsyncExitStack() as stack:
        r1, r2 = [await stack.enter_async_context(replica(d, "vol", None)) for d in dirs[1:]]
        eng = await stack.enter_async_context(
            engine("vol", "64Mi", [gone, r1.address, r2.address], socket)
        )
        replicas = await ctl(eng.address, "replica", "ls")
        assert [r["mode"] for r in replicas] == ["ERR", "ERR", "ERR"]
        assert "waiting for r0" in replicas[1]["error"]
        failed = await run(*qemu_io(uri("vol", socket), "read -P 2 0 64k"), check=False)
        assert b"Input/output error" in failed.stderr + failed.stdout
        await eng.terminate()
    async with replicated(dirs, socket, None) as (reps, eng):
        replicas = await ctl(eng.address, "replica", "ls")
        assert [r["mode"] for r in replicas] == ["RW", "ERR", "ERR"]
        assert "not among the replicas that held every write" in replicas[1]["error"]
        out = await run(*qemu_io(uri("vol", socket), "read -P 3 0 64k"))
        assert b"Pattern verification failed" not in out.stdout


async def test_snapshot_revert_round_trip_through_the_cli(tmp_path: Path) -> None:
    async with volume(tmp_path, 3) as vol:
        control = vol.engine.address
        await run(*qemu_io(vol.uri, "write -P 0xa1 0 64k"))
        assert (await ctl(control, "snapshot", "create", "s1", "--label", "k=v")) == {"name": "s1"}
        await run(*qemu_io(vol.uri, "write -P 0xb2 0 64k"))
        snapshots = await ctl(control, "snapshot", "ls")
        assert [(s["name"], s["labels"]) for s in snapshots] == [("s1", {"k": "v"})]
        refused = await run(sys.executable, "-m", "lhtrio", "ctl", "--engine", control, "snapshot",
                            "revert", "s1", check=False)  # fmt: skip
        assert refused.returncode == 1
        assert b"stop the frontend" in refused.stderr
        assert (await ctl(control, "frontend", "stop"))["frontend"]["state"] == "stopped"
        await ctl(control, "snapshot", "revert", "s1")
        assert (await ctl(control, "frontend", "start"))["frontend"]["state"] == "running"
        out = await run(*qemu_io(vol.uri, "read -P 0xa1 0 64k"))
        assert b"Pattern verification failed" not in out.stdout
        for d in vol.dirs:
            assert (d / "volume-snap-s1.img").exists()


async def test_sigterm_closes_replicas_cleanly(tmp_path: Path) -> None:
    async with volume(tmp_path, 2) as vol:
        await run(*qemu_io(vol.uri, "write -P 3 0 1M"))
        assert await vol.engine.terminate() == 0
        for r in vol.replicas:
            r.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                assert await r.process.wait() == 0
    for d in vol.dirs:
        assert json.loads((d / "volume.meta").read_text())["Dirty"] is False


async def _wait_for(path: Path) -> None:
    """Wait for a file a FUSE mount creates."""
    await _wait_until(path.exists)


async def test_ext4_through_nbdfuse_and_a_loop_device(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test mounts a filesystem: run the suite as root"
    fuse_dir, mount_dir = tmp_path / "fuse", tmp_path / "mnt"
    fuse_dir.mkdir()
    mount_dir.mkdir()
    payload = os.urandom(5 * MiB)
    async with volume(tmp_path, 3, size="128Mi") as vol, trio.open_nursery() as nursery:
        fuse = await trio.lowlevel.open_process(["nbdfuse", str(fuse_dir), vol.uri])
        loop = ""
        try:
            await _wait_for(fuse_dir / "nbd")
            loop = (await run("losetup", "-f", "--show", str(fuse_dir / "nbd"))).stdout.decode()
            loop = loop.strip()
            await run("mkfs.ext4", "-q", loop)
            await run("mount", loop, str(mount_dir))
            (mount_dir / "hello.txt").write_text("hello lhtrio\n")
            (mount_dir / "data.bin").write_bytes(payload)
            await run("umount", str(mount_dir))
            await run("mount", loop, str(mount_dir))
            assert (mount_dir / "hello.txt").read_text() == "hello lhtrio\n"
            assert (mount_dir / "data.bin").read_bytes() == payload
            await run("umount", str(mount_dir))
            await run("fsck.ext4", "-n", "-f", loop)
        finally:
            with trio.CancelScope(shield=True):
                if await trio.Path(mount_dir).is_mount():
                    await run("umount", str(mount_dir), check=False)
                if loop:
                    await run("losetup", "-d", loop, check=False)
                await run("fusermount3", "-u", str(fuse_dir), check=False)
                with trio.fail_after(30):
                    await fuse.wait()
        nursery.cancel_scope.cancel()
        assert (await ctl(vol.engine.address, "info"))["state"] == "healthy"


async def _raw_transmission(socket: Path, export: bytes) -> trio.SocketStream:
    """Connect and finish a minimal fixed-newstyle handshake (EXPORT_NAME, NO_ZEROES)."""
    stream = await trio.open_unix_socket(str(socket))
    greeting = b""
    while len(greeting) < 18:
        greeting += await stream.receive_some(18 - len(greeting))
    assert greeting[:16] == b"NBDMAGICIHAVEOPT"
    await stream.send_all(
        struct.pack(">I", 3) + b"IHAVEOPT" + struct.pack(">II", 1, len(export)) + export
    )
    reply = b""
    while len(reply) < 10:
        reply += await stream.receive_some(10 - len(reply))
    return stream


def _garbage(rng: random.Random, size: int) -> bytes:
    """Random bytes, or request headers with the right magic and random everything else."""
    if rng.random() < 0.3:
        return rng.randbytes(rng.randrange(1, 200))
    out = b""
    for _ in range(rng.randrange(1, 6)):
        command = rng.choice([0, 1, 2, 3, 4, 6, 7, 5, 8, 99, 0xFFFF])
        flags = rng.choice([0, 1, 2, 4, 8, 0x20, 0xFFFF])
        # Valid writes land at or after 1 MiB; the first MiB holds the data we check.
        offset = rng.choice([MiB + rng.randrange(0, size - 2 * MiB), size - 1, size, 2**63 - 1])
        length = rng.choice([0, 1, 4096, 65536, 33 << 20, 2**32 - 1])
        out += struct.pack(
            ">IHHQQI", 0x25609513, flags, command, rng.getrandbits(64), offset, length
        )
        if command == 1 and length <= 65536:
            out += rng.randbytes(rng.choice([length, length // 2]))
    return out


async def test_malformed_nbd_input_never_crashes_the_engine_or_touches_data(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    async with volume(tmp_path, 2) as vol:
        await run(*qemu_io(vol.uri, "write -P 0x3c 0 1M", "flush"))
        for _ in range(150):
            if rng.random() < 0.2:  # garbage during the handshake
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    stream = await trio.open_unix_socket(str(vol.socket))
                    await stream.send_all(rng.randbytes(rng.randrange(1, 100)))
                    await stream.aclose()
                continue
            stream = await _raw_transmission(vol.socket, b"vol")
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(_garbage(rng, 64 * MiB))
            await stream.aclose()
        assert vol.engine.process.returncode is None
        out = await run(*qemu_io(vol.uri, "read -P 0x3c 0 1M"))
        assert b"Pattern verification failed" not in out.stdout
        info = await ctl(vol.engine.address, "info")
        assert info["state"] == "healthy"


async def test_expand_purge_and_replica_removal_through_the_cli(tmp_path: Path) -> None:
    async with volume(tmp_path, 2, size="16Mi") as vol:
        control = vol.engine.address
        await run(*qemu_io(vol.uri, "write -P 0x44 0 1M"))
        await ctl(control, "snapshot", "create", "keep")
        await ctl(control, "snapshot", "create", "drop")
        await run(*qemu_io(vol.uri, "write -P 0x55 1M 1M"))
        info = await ctl(control, "expand", "32Mi")
        assert info["size"] == 32 * MiB
        out = await run("nbdinfo", "--json", vol.uri)
        assert json.loads(out.stdout)["exports"][0]["export-size"] == 32 * MiB
        await run(*qemu_io(vol.uri, "read -P 0x44 0 1M", "read -P 0x55 1M 1M", "write -P 6 20M 1M"))

        await ctl(control, "snapshot", "rm", "drop")
        removed = {s["name"]: s["removed"] for s in await ctl(control, "snapshot", "ls")}
        assert removed["drop"] is True
        assert removed["keep"] is False
        await ctl(control, "snapshot", "purge")
        names = [s["name"] for s in await ctl(control, "snapshot", "ls")]
        assert "drop" not in names
        assert "keep" in names
        for d in vol.dirs:
            assert not (d / "volume-snap-drop.img").exists()
        await run(*qemu_io(vol.uri, "read -P 0x44 0 1M", "read -P 0x55 1M 1M", "read -P 6 20M 1M"))

        first = vol.replicas[0].address
        info = await ctl(control, "replica", "rm", first)
        assert [r["address"] for r in info["replicas"]] == [vol.replicas[1].address]
        refused = await run(
            sys.executable, "-m", "lhtrio", "ctl", "--engine", control, "replica", "rm",
            vol.replicas[1].address, check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert b"last RW replica" in refused.stderr
        await run(*qemu_io(vol.uri, "read -P 0x44 0 1M"))


async def test_hostile_names_through_the_cli_change_nothing(tmp_path: Path) -> None:
    async with volume(tmp_path, 2) as vol:
        control = vol.engine.address
        await run(*qemu_io(vol.uri, "write -P 0x61 0 64k"))
        before = {d: sorted(os.listdir(d)) for d in vol.dirs}
        for hostile in ("../x", "a/b", "-x", "x" * 65):
            result = await run(
                sys.executable, "-m", "lhtrio", "ctl", "--engine", control, "snapshot", "create",
                "--", hostile, check=False,
            )  # fmt: skip
            assert result.returncode == 2  # a usage error: the CLI checks names first
            assert b"invalid snapshot name" in result.stderr
        refused = await run(
            sys.executable, "-m", "lhtrio", "ctl", "--engine", control, "snapshot", "revert",
            "../../etc", check=False,
        )  # fmt: skip
        assert refused.returncode == 2
        # The engine refuses them itself too, before they reach a replica (another client).
        async with open_rpc_client(control, role=Role.ENGINE) as client:
            for hostile in ("../x", "a/b", "-x", "x" * 65, "\U0001f600" * 60, "a\nb"):
                with pytest.raises(InvalidArgumentError, match="invalid snapshot name"):
                    await client.call_control("snapshot_create", name=hostile)
            with pytest.raises(InvalidArgumentError, match="label"):
                await client.call_control(
                    "snapshot_create", name="s", labels={"k": "\x00" * 100_000}
                )
        info = await ctl(control, "info")
        assert info["state"] == "healthy"  # a bad request is the caller's error, not a replica's
        assert {d: sorted(os.listdir(d)) for d in vol.dirs} == before
        out = await run(*qemu_io(vol.uri, "read -P 0x61 0 64k"))
        assert b"Pattern verification failed" not in out.stdout
