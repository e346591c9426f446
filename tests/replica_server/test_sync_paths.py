"""The fast paths of a rebuild transfer: paged maps, compare-or-read splits, direct writes.

Pure functions of :mod:`lhtrio.replica.transfer` first (against block-set models), then whole
transfers between two replicas served in this process, driven as the engine drives them
(``set_rebuilding``, the same system snapshot on both, ``adopt``, ``sync_start``, ``sync_status``).
"""

from __future__ import annotations

import errno
import mmap
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import InvalidArgumentError
from lhtrio.net import RpcClient, open_rpc_client
from lhtrio.replica import transfer
from lhtrio.replica.layers import Layers
from lhtrio.replica.server import serve_replica
from lhtrio.replica.store import Replica
from lhtrio.wire import Data, Read, Write
from tests.replica.replica_helpers import data_blocks, fill
from tests.replica_server.rebuild_helpers import STAMP, VOLUME, begin, wait_sync

B = 4096
MiB = 1 << 20
SIZE = 8 * MiB
RB = "volume-snap-rb.img"


def as_blocks(ranges: Iterable[tuple[int, int]]) -> set[int]:
    return {
        block for offset, length in ranges for block in range(offset // B, (offset + length) // B)
    }


def as_ranges(blocks: set[int]) -> list[tuple[int, int]]:
    return transfer.merge((block * B, B) for block in sorted(blocks))


block_sets = st.sets(st.integers(0, 80), max_size=40)


# --- pure functions -------------------------------------------------------------------------------


@given(block_sets, block_sets)
def test_split_cuts_extents_at_what_the_target_holds(theirs: set[int], ours: set[int]) -> None:
    inside, outside = transfer.split(as_ranges(theirs), as_ranges(ours))
    assert inside == as_ranges(theirs & ours)  # merged and in order
    assert outside == as_ranges(theirs - ours)


@given(block_sets, block_sets, st.sampled_from([B, 4 * B, 16 * B]))
def test_paired_windows_put_both_lists_side_by_side(
    first: set[int], second: set[int], window: int
) -> None:
    second -= first
    pairs = transfer.paired_windows(as_ranges(first), as_ranges(second), window)
    assert as_blocks(r for a, _ in pairs for r in a) == first
    assert as_blocks(r for _, b in pairs for r in b) == second
    indices = []
    for a, b in pairs:
        assert a or b
        (index,) = {offset // window for offset, length in a + b} | {
            (offset + length - 1) // window for offset, length in a + b
        }
        indices.append(index)
    assert indices == sorted(set(indices))


def scratch(tmp_path: Path, blocks: Iterable[int], size: int = 32 * B) -> int:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    for block in blocks:
        os.pwrite(fd, fill(block, B), block * B)
    return fd


def test_punch_outside_a_region_punches_only_there(tmp_path: Path) -> None:
    fd = scratch(tmp_path, range(16))
    try:
        kept = transfer.punch_outside(fd, [(2 * B, 2 * B), (12 * B, B)], 8 * B, start=B)
        assert kept == [(2 * B, 2 * B)]
        assert data_blocks(tmp_path / "f") == {0, 2, 3, *range(8, 16)}
        # Nothing left to punch: a second pass changes nothing.
        assert transfer.punch_outside(fd, [(2 * B, 2 * B)], 8 * B, start=B) == [(2 * B, 2 * B)]
        assert os.pread(fd, B, 2 * B) == fill(2, B)
    finally:
        os.close(fd)


@pytest.fixture
def fragmented(tmp_path: Path) -> Replica:
    r = Replica.create(str(tmp_path / "src"), size=SIZE, volume=VOLUME, instance="src")
    for block in range(0, 40, 2):
        r.write(block * B, fill(block, B))
    r.write(MiB, fill(99, 3 * B))
    r.snapshot("rb", user_created=False, created=STAMP)
    return r


def test_file_map_pages_add_up_to_the_whole_map(fragmented: Replica) -> None:
    try:
        whole = transfer.file_map(fragmented.layers, RB)
        assert len(whole) == 21
        pages, offset = [], 0
        while page := transfer.file_map(fragmented.layers, RB, offset, 3):
            assert len(page) <= 3
            pages += page
            offset = page[-1][0] + page[-1][1]
        assert pages == whole
        assert transfer.file_map(fragmented.layers, RB, MiB + B) == [(MiB + B, 2 * B)]  # cut there
        assert transfer.file_map(fragmented.layers, RB, 2 * SIZE) == []
        for offset, limit in ((-1, None), (0, 0), (0, -5)):
            with pytest.raises(InvalidArgumentError):
                transfer.file_map(fragmented.layers, RB, offset, limit)
    finally:
        fragmented.close()


def test_write_ranges_direct_and_buffered_write_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 4 * MiB)
    try:
        direct = os.open(path, os.O_WRONLY | getattr(os, "O_DIRECT", 0))
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        direct = -1  # no direct I/O on this file system: the buffered fallback must do the same
    ranges = [
        (0, 100),  # unaligned: buffered, and every later range is unaligned in the buffer
        (B, 16 * B),
        (MiB, 2 * B),
    ]
    aligned = [(0, 16 * B), (20 * B, B), (MiB, 32 * B), (3 * MiB, 16 * B)]  # direct, buffered, ...
    rng = random.Random(3)
    try:
        with mmap.mmap(-1, 2 * MiB) as memory, memoryview(memory) as bounce:
            for batch in (ranges, aligned):
                data = rng.randbytes(sum(n for _, n in batch))
                transfer.write_ranges(fd, batch, memoryview(data), direct=direct, bounce=bounce)
                at = 0
                for offset, length in batch:
                    assert os.pread(fd, length, offset) == data[at : at + length]
                    at += length
    finally:
        if direct >= 0:
            os.close(direct)
        os.close(fd)
    assert data_blocks(path) == as_blocks([(0, B), *ranges[1:], *aligned])


def test_open_direct_falls_back_when_the_file_system_refuses(
    fragmented: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.open

    def no_direct(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "no direct I/O")
        return real(path, flags, *args, **kwargs)

    try:
        fd = transfer.open_direct(fragmented.layers, RB)
        if fd >= 0:
            os.close(fd)
        monkeypatch.setattr(os, "open", no_direct)
        assert transfer.open_direct(fragmented.layers, RB) == -1
    finally:
        fragmented.close()


# --- whole transfers ------------------------------------------------------------------------------


async def serve(nursery: trio.Nursery, path: Path) -> str:
    async def run(task_status: trio.TaskStatus[str]) -> None:
        await serve_replica(
            str(path), size=SIZE, volume=VOLUME, instance=path.name, task_status=task_status
        )

    address: str = await nursery.start(run)
    return address


async def rebuild(cs: RpcClient, ct: RpcClient, source: str) -> dict[str, Any]:
    """The engine's part, up to the end of the transfer: the final ``sync_status``."""
    disks, existing = await begin(cs, ct, "rb")
    await ct.call_control("sync_start", source=source, files=sorted(disks), existing=existing)
    return await wait_sync(ct)


async def test_a_map_of_many_pages_copies_and_compares_every_part(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "MAP_EXTENTS", 5)
    real_map = transfer.file_map
    pages: list[tuple[int, int | None]] = []

    def file_map(r: Layers, name: str, offset: int = 0, limit: int | None = None) -> Any:
        pages.append((offset, limit))
        return real_map(r, name, offset, limit)

    monkeypatch.setattr(transfer, "file_map", file_map)
    a, b = await serve(nursery, tmp_path / "a"), await serve(nursery, tmp_path / "b")
    rng = random.Random(5)
    async with (
        open_rpc_client(a, volume=VOLUME) as ca,
        open_rpc_client(b, volume=VOLUME) as cb,
    ):
        scattered = [(block * B, rng.randbytes(B)) for block in range(0, 600, 3)]
        dense = (3 * MiB, rng.randbytes(3 * MiB))  # spans windows; the target holds half of it
        for offset, data in [*scattered, dense]:
            await ca.call(Write(offset, data))
        # The target holds some of the same data, some stale data, and data where a has holes.
        await cb.call(Write(*scattered[0]))
        await cb.call(Write(scattered[1][0], b"\xee" * B))
        await cb.call(Write(B, b"\xee" * B))
        await cb.call(Write(3 * MiB, dense[1][: MiB + 64 * B]))
        await cb.call(Write(7 * MiB, b"\xee" * 2 * B))
        status = await rebuild(ca, cb, a)
        assert status["state"] == "done", status
        # Not sent: the first scattered block and the dense part b holds; the holes are punched.
        assert status["sent_bytes"] == (2 * MiB - 64 * B) + (len(scattered) - 1) * B
        assert len([p for p in pages if p[1] == 5]) > 40  # paged: 5 extents per call
        assert (tmp_path / "b" / RB).read_bytes() == (tmp_path / "a" / RB).read_bytes()
        assert data_blocks(tmp_path / "b" / RB) == data_blocks(tmp_path / "a" / RB)


@pytest.mark.parametrize("call", ["file_map", "diff"])
async def test_hostile_map_or_diff_answers_fail_the_transfer(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    if call == "file_map":
        monkeypatch.setattr(transfer, "file_map", lambda *args: [(8 * B, B), (0, B)])
    else:
        monkeypatch.setattr(transfer, "diff", lambda *args: [10**6])
    a, b = await serve(nursery, tmp_path / "a"), await serve(nursery, tmp_path / "b")
    async with (
        open_rpc_client(a, volume=VOLUME) as ca,
        open_rpc_client(b, volume=VOLUME) as cb,
    ):
        for client in (ca, cb):  # equal data on both: compared, so file_diff is asked
            await client.call(Write(0, fill(1, 2 * B)))
        status = await rebuild(ca, cb, a)
        assert status["state"] == "failed"
        assert ("file_map" if call == "file_map" else "file_diff") in status["error"]
        reply = await cb.call(Read(0, B))  # b keeps serving
        assert isinstance(reply, Data)
        assert reply.data == fill(1, B)


# --- the counters ---------------------------------------------------------------------------------


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes the target writes into its snapshot files (the data that crossed, nothing else)."""
    written = [0]
    real = transfer.write_ranges

    def write_ranges(fd: int, ranges: Any, data: memoryview, **kwargs: Any) -> None:
        written[0] += sum(n for _, n in ranges)
        real(fd, ranges, data, **kwargs)

    monkeypatch.setattr(transfer, "write_ranges", write_ranges)
    return written


def accounted(status: dict[str, Any]) -> int:
    parts = ("sent_bytes", "compared_bytes", "known_bytes", "skipped_bytes")
    return sum(status[part] for part in parts)


def data_of(directory: Path, files: Iterable[str]) -> int:
    """The data bytes of these files (``total_bytes`` is their allocation, which on ext4 also
    counts the blocks of large files' extent trees)."""
    return sum(len(data_blocks(directory / name)) * B for name in files)


async def test_the_counters_say_where_every_synced_byte_went(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16 #17: "sent 0 B for 360 MiB synced". Every byte of the source's data is sent,
    proved equal by digests, known equal from the away log, or in a file skipped whole, and
    the counters say which; ``sent_bytes`` is exactly what the target wrote."""
    written = count_writes(monkeypatch)
    a, b = await serve(nursery, tmp_path / "a"), await serve(nursery, tmp_path / "b")
    rng = random.Random(11)
    same = rng.randbytes(3 * MiB)
    async with (
        open_rpc_client(a, volume=VOLUME) as ca,
        open_rpc_client(b, volume=VOLUME) as cb,
    ):
        for client in (ca, cb):  # the data both received before b went away
            await client.call(Write(0, same))
        changed = [(block * B, rng.randbytes(B)) for block in range(0, 3 * MiB // B, 50)]
        for offset, data in [*changed, (5 * MiB, rng.randbytes(MiB))]:  # while b was away
            await ca.call(Write(offset, data))
        disks, existing = await begin(ca, cb, "rb")
        await cb.call_control("sync_start", source=a, files=sorted(disks), existing=existing)
        status = await wait_sync(cb)
        assert status["state"] == "done", status
        assert status["sent_bytes"] == written[0] == len(changed) * B + MiB
        assert status["compared_bytes"] == 3 * MiB - len(changed) * B
        assert status["known_bytes"] == status["skipped_bytes"] == 0
        assert accounted(status) == data_of(tmp_path / "a", disks) == 4 * MiB
        # Again, now that b holds everything: nothing is sent, and the status says why.
        written[0] = 0
        await cb.call_control("sync_start", source=a, files=sorted(disks), existing=[RB])
        status = await wait_sync(cb)
        assert status["sent_bytes"] == written[0] == 0
        assert status["compared_bytes"] == 4 * MiB
        # With an away log naming one changed block: the rest is known, that block is sent.
        await cb.call(Write(0, b"\xee" * B))  # b's head: not part of the transfer
        with (tmp_path / "b" / RB).open("r+b") as stale:  # as a lost write would leave it
            stale.write(b"\xee" * B)
        log = [(0, B)]
        await cb.call_control(
            "sync_start", source=a, files=[RB], existing=[RB], dirty=log, dirty_file=RB
        )
        status = await wait_sync(cb)
        assert status["sent_bytes"] == written[0] == B
        assert status["known_bytes"] == 4 * MiB - B
        assert accounted(status) == 4 * MiB
        assert (tmp_path / "b" / RB).read_bytes() == (tmp_path / "a" / RB).read_bytes()
        # Equal recorded checksums: the file is skipped whole.
        await ca.call_control("checksum", name=RB)
        await cb.call_control("sync_start", source=a, files=[RB], existing=[RB])
        assert (await wait_sync(cb))["skipped_bytes"] == 0  # b has no recorded checksum yet
        written[0] = 0
        await cb.call_control("sync_start", source=a, files=[RB], existing=[RB])
        status = await wait_sync(cb)
        assert status["skipped_files"] == 1
        assert status["skipped_bytes"] == status["total_bytes"] == accounted(status)
        assert status["sent_bytes"] == written[0] == 0


@pytest.mark.parametrize("seed", range(4))
async def test_sent_bytes_is_what_the_target_wrote_whatever_the_path(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random histories (new and existing files, stale and equal data, with or without a log):
    the counters add up, and ``sent_bytes`` is exactly the data written into the target."""
    written = count_writes(monkeypatch)
    rng = random.Random(seed)
    a, b = await serve(nursery, tmp_path / "a"), await serve(nursery, tmp_path / "b")
    async with (
        open_rpc_client(a, volume=VOLUME) as ca,
        open_rpc_client(b, volume=VOLUME) as cb,
    ):
        for step in range(rng.randrange(1, 4)):
            for _ in range(rng.randrange(1, 12)):
                offset = rng.randrange(SIZE // B) * B
                data = rng.randbytes(min(rng.choice([B, 16 * B, MiB]), SIZE - offset))
                await ca.call(Write(offset, data))
                if rng.random() < 0.7:
                    await cb.call(
                        Write(offset, data if rng.random() < 0.8 else b"\xee" * len(data))
                    )
            if rng.random() < 0.5:
                for client in (ca, cb):
                    await client.call_control("snapshot", name=f"p{step}", created=STAMP)
        disks, existing = await begin(ca, cb, "rb")
        dirty = rng.choice([None, [], [(0, SIZE)], [(MiB, 2 * MiB)]])
        await cb.call_control(
            "sync_start",
            source=a,
            files=sorted(disks),
            existing=existing,
            dirty=dirty,
            dirty_file=RB,
        )
        status = await wait_sync(cb)
        assert status["state"] == "done", status
        assert status["sent_bytes"] == written[0]
        assert accounted(status) == data_of(tmp_path / "a", disks)
