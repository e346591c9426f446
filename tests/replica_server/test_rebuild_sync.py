"""Online rebuild between replicas served in this process: adopt, ``sync_*``, the ``file_*`` calls.

Each replica is a real ``serve_replica`` on loopback with a real directory of sparse files; the test
plays the engine: mark the target rebuilding, take the same system snapshot on both, ``adopt`` the
source's graph, ``sync_start``, wait with ``sync_status``, ``reload``.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from lhtrio.errors import (
    ConflictError,
    ConnectionLostError,
    ErrorCode,
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    StorageError,
)
from lhtrio.net import RpcClient, open_rpc_client
from lhtrio.replica import service as replica_service
from lhtrio.replica import transfer
from lhtrio.replica.server import serve_replica
from lhtrio.replica.transfer import DIGEST_SIZE, MAX_RANGES
from lhtrio.wire import Call, Data, Read, Unmap, Write
from tests.replica.replica_helpers import data_blocks, fill, tree
from tests.replica_server.rebuild_helpers import STAMP, VOLUME, begin, plan, wait_sync

MiB = 1 << 20
BLOCK = 4096
SIZE = 8 * MiB
S1 = "volume-snap-s1.img"
S2 = "volume-snap-s2.img"


# --- replicas served in this process, and the engine's side of a rebuild --------------------------


@attrs.define(eq=False)
class Served:
    """One ``serve_replica`` task; ``scope.cancel()`` stops it (it closes the replica cleanly)."""

    path: Path
    address: str
    scope: trio.CancelScope
    stopped: trio.Event

    async def stop(self) -> None:
        self.scope.cancel()
        with trio.fail_after(5):
            await self.stopped.wait()


async def serve(nursery: trio.Nursery, path: Path, *, size: int | None = SIZE) -> Served:
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[str]) -> None:
        try:
            with scope:
                await serve_replica(
                    str(path), size=size, volume=VOLUME, instance=path.name, task_status=task_status
                )
        finally:
            stopped.set()

    address: str = await nursery.start(run)
    return Served(path=path, address=address, scope=scope, stopped=stopped)


async def write(client: RpcClient, *writes: tuple[int, bytes]) -> None:
    await client.call_many([Write(offset, data) for offset, data in writes])


async def read_all(client: RpcClient) -> bytes:
    reply = await client.call(Read(0, SIZE))
    assert isinstance(reply, Data)
    return bytes(reply.data)


def graph(info: dict[str, Any]) -> dict[str, Any]:
    return {"disks": plan(info), "chain": info["chain"][1:], "parent": info["parent"]}


async def sync(
    target: RpcClient, source: Served, disks: dict[str, Any], existing: list[str]
) -> dict[str, Any]:
    status = await target.call_control(
        "sync_start", source=source.address, files=sorted(disks), existing=existing
    )
    assert status["state"] == "syncing"
    assert status["files"] == len(disks)
    return await wait_sync(target)


async def rebuild(
    source: Served, cs: RpcClient, ct: RpcClient, snapshot: str = "rb"
) -> dict[str, Any]:
    """A whole rebuild of the target from ``source``; returns the final transfer status."""
    disks, existing = await begin(cs, ct, snapshot)
    status = await sync(ct, source, disks, existing)
    assert status["state"] == "done", status
    assert status["files_done"] == status["files"] == len(disks)
    assert status["done_bytes"] == status["total_bytes"]
    assert status["error"] == ""
    rebuilt = await ct.call_control("reload")
    assert graph(rebuilt) == graph(await cs.call_control("info"))
    return status


async def assert_same(cs: RpcClient, source: Path, ct: RpcClient, target: Path) -> None:
    """Same bytes, same allocation (holes stay holes), same snapshot files and metadata."""
    assert await read_all(ct) == await read_all(cs)
    assert await ct.call_control("allocation", offset=0, length=SIZE) == await cs.call_control(
        "allocation", offset=0, length=SIZE
    )
    info = await cs.call_control("info")
    assert graph(await ct.call_control("info")) == graph(info)
    for name in plan(info):
        assert data_blocks(target / name) == data_blocks(source / name), name
        assert (target / name).read_bytes() == (source / name).read_bytes(), name
        assert (target / (name + ".meta")).read_bytes() == (source / (name + ".meta")).read_bytes()


def sent_for(directory: Path, names: list[str]) -> int:
    """The data bytes of these snapshot files (what a full copy sends)."""
    return sum(len(data_blocks(directory / name)) * BLOCK for name in names)


def hook_reads(monkeypatch: pytest.MonkeyPatch, on_call: Callable[[int], None]) -> None:
    """Run ``on_call(n)`` in the source's worker thread before its n-th ``file_read`` (from 1)."""
    real = transfer.read_ranges
    calls = [0]

    def read_ranges(*args: Any) -> bytearray:
        calls[0] += 1
        on_call(calls[0])
        return real(*args)

    monkeypatch.setattr(transfer, "read_ranges", read_ranges)


async def build_chain(client: RpcClient) -> None:
    """Snapshots with holes; one removed for good (coalesced), one marked removed, a branch."""
    await write(client, (0, fill(1, 256 << 10)), (3 * MiB, fill(2, 8 << 10)))
    await write(client, (5 * MiB, fill(3, 512 << 10)))
    await client.call_control("snapshot", name="s1", labels={"tier": "gold"})
    await write(client, (64 << 10, fill(4, 64 << 10)), (7 * MiB, fill(5, BLOCK)))
    await client.call_control("snapshot", name="gone")
    await write(client, (6 * MiB, fill(6, 16 << 10)))
    await client.call_control("snapshot", name="s2", user_created=False)
    await client.call_control("remove", name="gone")  # coalesced into s2, file deleted
    await write(client, (MiB, fill(7, BLOCK)))
    await client.call_control("snapshot", name="br")
    await client.call_control("revert", name="s2")  # br is a branch now
    await write(client, (2 * MiB, fill(8, BLOCK)))
    await client.call_control("snapshot", name="s3")
    await client.call_control("mark_removed", name="s3")
    await write(client, (4 * MiB, fill(9, 2 * BLOCK)))
    await client.call(Unmap(4 * MiB, BLOCK))  # a hole inside what becomes the rebuild snapshot


# --- full copy, delta, skip -----------------------------------------------------------------------


async def test_full_copy_of_a_chain_keeps_data_holes_and_metadata(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    a = await serve(nursery, tmp_path / "a")
    b = await serve(nursery, tmp_path / "b")
    c = await serve(nursery, tmp_path / "c")
    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
        open_rpc_client(c.address, volume=VOLUME) as cc,
    ):
        await build_chain(ca)
        await write(cb, (0, b"\xee" * 2 * BLOCK), (5 * MiB, b"\xee" * BLOCK))  # stale target data
        status = await rebuild(a, ca, cb)
        info = await ca.call_control("info")
        files = sorted(plan(info))
        assert files == [
            "volume-snap-br.img",
            "volume-snap-rb.img",
            S1,
            S2,
            "volume-snap-s3.img",
        ]
        assert info["disks"]["volume-snap-s3.img"]["removed"]
        assert status["skipped_files"] == 0
        assert status["total_bytes"] == sum(info["disks"][name]["allocated"] for name in files)
        assert status["sent_bytes"] == sent_for(a.path, files)  # data only, never a hole
        await assert_same(ca, a.path, cb, b.path)
        assert not (b.path / "volume-snap-gone.img").exists()
        # The rebuilt replica is a complete source in turn.
        await rebuild(b, cb, cc, "rb2")
        await assert_same(cb, b.path, cc, c.path)
        assert await read_all(cc) == await read_all(ca)
        # The engine clears the flag; the rebuilt replica reopens from its directory.
        await cb.call_control("set_rebuilding", rebuilding=False)
        expected = await read_all(ca)
    await b.stop()
    b = await serve(nursery, tmp_path / "b", size=None)
    async with open_rpc_client(b.address, volume=VOLUME) as cb:
        assert await read_all(cb) == expected
        assert not (await cb.call_control("info"))["rebuilding"]


async def test_delta_sends_only_changed_blocks(nursery: trio.Nursery, tmp_path: Path) -> None:
    a = await serve(nursery, tmp_path / "a")
    b = await serve(nursery, tmp_path / "b")
    rng = random.Random(7)
    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
    ):
        # The engine wrote the same data to both; both took the same snapshot.
        old, new = (0, rng.randbytes(3 * MiB)), (4 * MiB, rng.randbytes(2 * MiB))
        for client in (ca, cb):
            await write(client, old)
            await client.call_control("snapshot", name="s1", created=STAMP)
            await write(client, new)
        # Then b went away, and a received 10% of the blocks anew.
        allocated = [*range(0, 3 * MiB, BLOCK), *range(4 * MiB, 6 * MiB, BLOCK)]
        changed = rng.sample(allocated, len(allocated) // 10)
        await write(ca, *[(offset, fill(offset // BLOCK, BLOCK)) for offset in changed])
        status = await rebuild(a, ca, cb)
        assert status["total_bytes"] >= len(allocated) * BLOCK
        assert status["sent_bytes"] == len(changed) * BLOCK
        assert status["sent_bytes"] < 0.2 * status["total_bytes"]
        assert status["skipped_files"] == 0  # no recorded checksums: compared, not skipped
        await assert_same(ca, a.path, cb, b.path)


async def test_files_with_equal_recorded_checksums_are_skipped(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    a = await serve(nursery, tmp_path / "a")
    b = await serve(nursery, tmp_path / "b")
    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
    ):
        await write(ca, (0, fill(1, 64 * BLOCK)))
        await ca.call_control("snapshot", name="s1")
        await write(ca, (MiB, fill(2, 64 * BLOCK)))
        await ca.call_control("snapshot", name="s2")
        sums = {
            name: (await ca.call_control("checksum", name=name))["checksum"] for name in (S1, S2)
        }
        first = await rebuild(a, ca, cb)
        assert first["skipped_files"] == 0
        assert first["sent_bytes"] == 128 * BLOCK
        for name in (S1, S2):  # the source's checksum, recorded for the received file
            assert (await cb.call_control("checksum", name=name))["checksum"] == sums[name]
        # s2 changes behind b's back: its recorded checksum is stale, the file is compared.
        fd = os.open(b.path / S2, os.O_WRONLY)
        try:
            os.pwrite(fd, b"rot" * BLOCK, MiB + 8 * BLOCK)
        finally:
            os.close(fd)
        second = await rebuild(a, ca, cb, "rb2")
        assert second["files"] == 4
        assert second["skipped_files"] == 1  # s1
        assert second["sent_bytes"] == 3 * BLOCK  # the three blocks of s2 that rotted
        assert second["done_bytes"] == second["total_bytes"]
        await assert_same(ca, a.path, cb, b.path)
        assert (await cb.call_control("checksum", name=S2))["checksum"] == sums[S2]
        third = await rebuild(a, ca, cb, "rb3")
        assert (third["skipped_files"], third["sent_bytes"]) == (2, 0)


# --- the source's calls, attacked -----------------------------------------------------------------


Hostile = tuple[str, dict[str, Any], type[LhtrioError]]


def hostile_calls(head: str) -> list[Hostile]:
    inside = [[0, BLOCK]]
    digest = bytes(DIGEST_SIZE)
    cases: list[Hostile] = [
        ("file_read", {"name": S1, "ranges": [[SIZE - BLOCK, 2 * BLOCK]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[SIZE, 1]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[1 << 63, 1]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[-BLOCK, BLOCK]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[BLOCK, -BLOCK]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[0, 0]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[0, SIZE]] * 5}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[0, 1]] * (MAX_RANGES + 1)}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [[0, 1, 2]]}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": [["0", 1]]}, InvalidArgumentError),
        ("file_read", {"name": S1}, InvalidArgumentError),
        ("file_read", {"name": S1, "ranges": inside, "evil": 1}, InvalidArgumentError),
        (
            "file_diff",
            {"name": S1, "groups": [inside], "digests": digest[1:]},
            InvalidArgumentError,
        ),
        (
            "file_diff",
            {"name": S1, "groups": [[[SIZE - 1, 2]]], "digests": digest},
            InvalidArgumentError,
        ),
    ]
    for name, error in [
        ("../x", InvalidArgumentError),
        ("volume-snap-../x.img", InvalidArgumentError),
        ("/etc/passwd", InvalidArgumentError),
        (head, InvalidArgumentError),
        ("volume.meta", InvalidArgumentError),
        ("revision.counter", InvalidArgumentError),
        (S1 + ".meta", InvalidArgumentError),
        (S1 + ".checksum", InvalidArgumentError),
        ("volume-snap-nope.img", NotFoundError),
    ]:
        cases += [
            ("file_read", {"name": name, "ranges": inside}, error),
            ("file_diff", {"name": name, "groups": [inside], "digests": digest}, error),
            ("file_info", {"name": name}, error),
            ("file_map", {"name": name}, error),
        ]
    return cases


async def test_hostile_file_calls_get_errors_and_change_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    a = await serve(nursery, tmp_path / "a")
    async with open_rpc_client(a.address, volume=VOLUME) as ca:
        await write(ca, (0, fill(1, 64 * BLOCK)))
        await ca.call_control("snapshot", name="s1")
        await ca.call_control("checksum", name="s1")
        await write(ca, (0, b"head" * BLOCK))
        head = (await ca.call_control("info"))["head"]
        before = tree(a.path)
        cases = hostile_calls(head)
        for call, args, error in cases:
            with pytest.raises(error) as caught:
                await ca.call(Call(call, args))
            assert type(caught.value) is error, (call, args)
            assert caught.value.remote
            assert caught.value.code is (
                ErrorCode.NOT_FOUND if error is NotFoundError else ErrorCode.INVALID_ARGUMENT
            )
        assert tree(a.path) == before
        # The connection and the replica still work, and a proper read gets the file's bytes.
        reply = await ca.call(Call("file_read", {"name": S1, "ranges": [[BLOCK, 8], [0, 4]]}))
        assert isinstance(reply, Data)
        assert bytes(reply.data) == fill(1, 64 * BLOCK)[BLOCK : BLOCK + 8] + fill(1, 4)
        assert (await read_all(ca))[:8] == b"headhead"


# --- failures, cancel, refusals -------------------------------------------------------------------


async def test_source_dying_mid_transfer_fails_the_sync_and_a_retry_succeeds(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await serve(nursery, tmp_path / "a")
    b = await serve(nursery, tmp_path / "b")
    source_scope = a.scope
    both_reading = threading.Barrier(2, timeout=10)

    def kill_source(n: int) -> None:
        # The first two reads of the first file wait for each other, then the source stops:
        # several windows are in flight when the connection goes.
        if n <= 2:
            both_reading.wait()
        if n == 2:
            trio.from_thread.run_sync(source_scope.cancel)

    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
    ):
        for n in range(3):  # three files with data in every 2 MiB window
            await write(
                ca, *[(offset + n * BLOCK, fill(n, BLOCK)) for offset in range(0, SIZE, MiB)]
            )
            await ca.call_control("snapshot", name=f"s{n}")
        expected = await read_all(ca)
        disks, existing = await begin(ca, cb, "rb")
        hook_reads(monkeypatch, kill_source)
        status = await sync(cb, a, disks, existing)
        assert status["state"] == "failed"
        assert "lost" in status["error"]
        assert status["files_done"] < status["files"]
        info = await cb.call_control("info")  # the target kept serving through it
        assert info["rebuilding"]
    await a.stop()
    a = await serve(nursery, tmp_path / "a", size=None)  # the source restarts
    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
    ):
        disks, existing = await begin(ca, cb, "rb2")
        assert set(existing) == set(disks)  # every file arrived in the first attempt's adopt
        status = await sync(cb, a, disks, existing)
        assert status["state"] == "done", status
        await cb.call_control("reload")
        assert await read_all(cb) == expected
        await assert_same(ca, a.path, cb, b.path)


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (
            ExceptionGroup(
                "windows in flight",
                [
                    ConnectionLostError("connection to the source lost"),
                    ExceptionGroup("nested", [ConnectionLostError("lost as well")]),
                ],
            ),
            "connection to the source lost",
        ),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (StorageError("disk of the target failed"), "disk of the target failed"),
    ],
)
async def test_a_failed_transfer_is_reported_and_the_target_keeps_serving(
    nursery: trio.Nursery,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    error: str,
) -> None:
    async def failing_pull(*args: Any, **kwargs: Any) -> None:
        await trio.lowlevel.checkpoint()
        raise raised

    monkeypatch.setattr(replica_service, "pull", failing_pull)
    b = await serve(nursery, tmp_path / "b")
    async with open_rpc_client(b.address, volume=VOLUME) as cb:
        await cb.call_control("set_rebuilding", rebuilding=True)
        await cb.call_control("sync_start", source="tcp://127.0.0.1:9", files=[], existing=[])
        status = await wait_sync(cb)
        assert (status["state"], status["error"]) == ("failed", error)
        assert (await cb.call_control("info"))["rebuilding"]


async def test_sync_cancel_and_what_is_refused_while_syncing(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await serve(nursery, tmp_path / "a")
    b = await serve(nursery, tmp_path / "b")
    reading = trio.Event()
    release = threading.Event()

    def hold_first(n: int) -> None:
        if n == 1:
            trio.from_thread.run_sync(reading.set)
            release.wait(10)

    hook_reads(monkeypatch, hold_first)
    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
    ):
        assert (await cb.call_control("sync_status", wait=5))["state"] == "idle"
        await write(ca, (0, fill(1, 64 * BLOCK)), (3 * MiB, fill(2, 64 * BLOCK)))
        disks, existing = await begin(ca, cb, "rb")
        args = {"source": a.address, "files": sorted(disks), "existing": existing}
        await cb.call_control("sync_start", **args)
        try:
            with trio.fail_after(5):
                await reading.wait()
            assert (await cb.call_control("sync_status"))["state"] == "syncing"
            with pytest.raises(ConflictError, match="receiving files already"):
                await cb.call_control("sync_start", **args)
            with pytest.raises(ConflictError, match="receiving files already"):
                await cb.call_control("adopt", disks=disks)
            with pytest.raises(ConflictError, match="still receiving files") as caught:
                await cb.call_control("reload")
            assert caught.value.code is ErrorCode.CONFLICT
            await cb.call_control("sync_cancel")
            status = await wait_sync(cb)
        finally:
            release.set()
        assert (status["state"], status["error"]) == ("cancelled", "cancelled")
        assert status["files_done"] < status["files"]
        # A cancelled transfer can start again; the source is not held any more.
        status = await sync(cb, a, disks, existing)
        assert status["state"] == "done", status
        await cb.call_control("reload")
        await assert_same(ca, a.path, cb, b.path)
        assert (await cb.call_control("sync_cancel"))["state"] == "done"  # nothing to cancel


async def test_rebuild_calls_refused_unless_rebuilding(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    a = await serve(nursery, tmp_path / "a")
    b = await serve(nursery, tmp_path / "b")
    async with (
        open_rpc_client(a.address, volume=VOLUME) as ca,
        open_rpc_client(b.address, volume=VOLUME) as cb,
    ):
        for client in (ca, cb):
            await client.call_control("snapshot", name="rb", user_created=False, created=STAMP)
        disks = plan(await ca.call_control("info"))
        before = tree(b.path)
        with pytest.raises(ConflictError, match="not marked rebuilding") as caught:
            await cb.call_control("adopt", disks=disks)
        assert caught.value.code is ErrorCode.CONFLICT
        with pytest.raises(ConflictError, match="not marked rebuilding"):
            await cb.call_control("sync_start", source=a.address, files=sorted(disks), existing=[])
        with pytest.raises(InvalidArgumentError, match="bad arguments"):
            await cb.call_control("sync_start", source=a.address, files=[1, 2], existing=[])
        with pytest.raises(InvalidArgumentError, match="bad creation time"):
            await cb.call_control(
                "adopt",
                disks={name: disk | {"created": "yesterday"} for name, disk in disks.items()},
            )
        assert (await cb.call_control("sync_status"))["state"] == "idle"
        assert tree(b.path) == before
