"""The file operations of a rebuild without trio: ranges, hashing, the source's calls, adopt.

A *source* holds a chain with holes, a label, a system snapshot marked removed and the system
snapshot ``rb`` that the engine takes on both sides before a rebuild; a *target* (marked
rebuilding) has its own ``rb`` on top of whatever it held. Copying with the source functions
(:func:`copy_files`) is the sync of :mod:`lhtrio.replica.sync` minus the network.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import ConflictError, InvalidArgumentError, NotFoundError
from lhtrio.models.replica import FileInfo
from lhtrio.replica import fs, transfer
from lhtrio.replica.adopt import PlannedDisk
from lhtrio.replica.meta import DiskMeta
from lhtrio.replica.store import Replica
from lhtrio.replica.transfer import DIGEST_SIZE, MAX_BYTES, MAX_RANGES, WINDOW

from .replica_helpers import (
    BLOCK,
    INSTANCE,
    VOLUME,
    assert_clean,
    data_blocks,
    fill,
    open_replica,
    tree,
)

SIZE = 64 * BLOCK
S1 = "volume-snap-s1.img"
S2 = "volume-snap-s2.img"
RB = "volume-snap-rb.img"
STAMP = "2026-11-22T10:00:00Z"


# --- fixtures and helpers -------------------------------------------------------------------------


def build_source(r: Replica) -> None:
    r.write(0, fill(1, 8 * BLOCK))
    r.write(20 * BLOCK, fill(2, 4 * BLOCK))
    r.snapshot("s1", labels={"app": "db"}, created=STAMP)
    r.write(4 * BLOCK, fill(3, 2 * BLOCK))
    r.write(40 * BLOCK, fill(4, BLOCK))
    r.snapshot("s2", user_created=False, created=STAMP)
    r.mark_removed("s2")
    r.write(50 * BLOCK, fill(5, BLOCK))
    r.snapshot("rb", user_created=False)


@pytest.fixture
def sdir(tmp_path: Path) -> Path:
    return tmp_path / "source"


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    return tmp_path / "target"


@pytest.fixture
def src(sdir: Path) -> Iterator[Replica]:
    r = Replica.create(str(sdir), size=SIZE, volume=VOLUME, instance="source")
    build_source(r)
    try:
        yield r
    finally:
        r.close()


def new_target(tdir: Path, *, size: int = SIZE) -> Replica:
    r = Replica.create(str(tdir), size=size, volume=VOLUME, instance=INSTANCE)
    r.set_rebuilding(True)
    return r


@pytest.fixture
def tgt(tdir: Path) -> Iterator[Replica]:
    r = new_target(tdir)
    r.write(0, b"\xee" * (2 * BLOCK))  # stale data of the target's own: rb must lose it
    r.snapshot("rb", user_created=False)
    try:
        yield r
    finally:
        r.close()


def plan_of(r: Replica) -> dict[str, PlannedDisk]:
    """What the engine sends: every snapshot of ``r`` (not the head) with its file size."""
    info = r.info()
    return {
        name: PlannedDisk(
            meta=DiskMeta(
                name=name,
                parent=d.parent,
                removed=d.removed,
                user_created=d.user_created,
                created=d.created,
                labels=d.labels,
            ),
            size=d.size,
        )
        for name, d in info.disks.items()
        if name != info.head
    }


def graph(r: Replica) -> dict[str, Any]:
    """Every snapshot's metadata and size, and the chain below the head (head name left out)."""
    info = r.info()
    disks = {
        name: (d.parent, d.removed, d.user_created, d.created, d.labels, d.size)
        for name, d in info.disks.items()
        if name != info.head
    }
    return {"disks": disks, "chain": info.chain[1:], "parent": info.parent}


def copy_files(src: Replica, dst: Replica) -> None:
    """Fill ``dst``'s snapshot files from ``src``'s, window by window, holes punched; reload."""
    for name in plan_of(src):
        extents = transfer.file_map(src.layers, name)
        fd = transfer.open_snapshot(dst.layers, name, write=True)
        try:
            transfer.punch_outside(fd, extents, transfer.file_info(src.layers, name).size)
            for window in transfer.windows(extents):
                data = transfer.read_ranges(src.layers, name, window)
                transfer.write_ranges(fd, window, memoryview(data))
        finally:
            os.close(fd)
    dst.reload()


def scratch_file(tmp_path: Path, blocks: dict[int, bytes], size: int = 16 * BLOCK) -> int:
    """A sparse file of ``size`` bytes with data at the given blocks; returns an open fd."""
    fd = os.open(tmp_path / "scratch", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    for block, data in blocks.items():
        os.pwrite(fd, data, block * BLOCK)
    return fd


# --- ranges ---------------------------------------------------------------------------------------

MiB = 1 << 20


def test_windows_cut_extents_at_window_boundaries() -> None:
    assert transfer.windows([]) == []
    assert transfer.windows([(0, BLOCK), (2 * BLOCK, BLOCK), (3 * MiB, 6 * MiB)]) == [
        [(0, BLOCK), (2 * BLOCK, BLOCK)],
        [(3 * MiB, MiB)],
        [(4 * MiB, 2 * MiB)],
        [(6 * MiB, 2 * MiB)],
        [(8 * MiB, MiB)],
    ]
    assert transfer.windows([(BLOCK, 3 * BLOCK), (7 * BLOCK, BLOCK)], window=2 * BLOCK) == [
        [(BLOCK, BLOCK)],
        [(2 * BLOCK, 2 * BLOCK)],
        [(7 * BLOCK, BLOCK)],
    ]


@st.composite
def extent_lists(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Sorted, disjoint, block-aligned extents (SEEK_DATA never reports adjacent ones)."""
    gaps = draw(st.lists(st.tuples(st.integers(1, 600), st.integers(1, 600)), max_size=12))
    extents, pos = [], 0
    for gap, length in gaps:
        pos += gap * BLOCK
        extents.append((pos, length * BLOCK))
        pos += length * BLOCK
    return extents


@given(extent_lists(), st.sampled_from([BLOCK, 16 * BLOCK, WINDOW]))
def test_windows_partition_the_extents(extents: list[tuple[int, int]], window: int) -> None:
    groups = transfer.windows(extents, window)
    assert all(groups)
    assert transfer.merge(r for group in groups for r in group) == extents
    indices = []
    for group in groups:
        (index,) = {offset // window for offset, _ in group}
        assert all((offset + length - 1) // window == index for offset, length in group)
        indices.append(index)
    assert indices == sorted(set(indices))  # one group per window, in order


def test_blocks_and_merge() -> None:
    assert transfer.blocks([(0, 3 * BLOCK), (8 * BLOCK, BLOCK)]) == [
        [(0, BLOCK)],
        [(BLOCK, BLOCK)],
        [(2 * BLOCK, BLOCK)],
        [(8 * BLOCK, BLOCK)],
    ]
    assert transfer.blocks([]) == []
    assert transfer.merge([]) == []
    assert transfer.merge([(0, BLOCK), (BLOCK, BLOCK), (3 * BLOCK, BLOCK), (4 * BLOCK, 2)]) == [
        (0, 2 * BLOCK),
        (3 * BLOCK, BLOCK + 2),
    ]


def test_check_ranges_accepts_ranges_inside_the_file() -> None:
    assert transfer.check_ranges([], 0, what="t") == 0
    assert transfer.check_ranges([(0, 1), (BLOCK, BLOCK), (0, 2 * BLOCK)], 2 * BLOCK, what="t") == (
        3 * BLOCK + 1
    )
    assert transfer.check_ranges([(0, MAX_BYTES)], MAX_BYTES, what="t") == MAX_BYTES


@pytest.mark.parametrize(
    ("ranges", "match"),
    [
        ([(-1, BLOCK)], "outside the file"),
        ([(0, 0)], "outside the file"),
        ([(BLOCK, -BLOCK)], "outside the file"),
        ([(BLOCK, 3 * BLOCK + 1)], "outside the file"),
        ([(4 * BLOCK, 1)], "outside the file"),
        ([(0, 1)] * (MAX_RANGES + 1), f"at most {MAX_RANGES}"),
        ([(0, 4 * BLOCK)] * (MAX_BYTES // (4 * BLOCK) + 1), f"at most {MAX_BYTES} per call"),
    ],
)
def test_check_ranges_refuses(ranges: list[tuple[int, int]], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        transfer.check_ranges(ranges, 4 * BLOCK, what="file_read")


# --- hashing and copying --------------------------------------------------------------------------


def test_digests_hash_each_group_with_holes_as_zeros(tmp_path: Path) -> None:
    fd = scratch_file(tmp_path, {1: fill(1, BLOCK), 2: fill(2, BLOCK)})
    try:
        groups = [[(0, 2 * BLOCK)], [(2 * BLOCK, BLOCK), (BLOCK, 10)], [(8 * BLOCK, BLOCK)], []]
        expected = [
            bytes(BLOCK) + fill(1, BLOCK),
            fill(2, BLOCK) + fill(1, BLOCK)[:10],
            bytes(BLOCK),
            b"",
        ]
        got = transfer.digests(fd, groups)
    finally:
        os.close(fd)
    assert got == b"".join(hashlib.sha256(data).digest()[:DIGEST_SIZE] for data in expected)
    assert transfer.digests(-1, []) == b""


def test_write_ranges_and_punch_outside(tmp_path: Path) -> None:
    fd = scratch_file(tmp_path, {b: fill(b, BLOCK) for b in range(16)})
    try:
        transfer.write_ranges(
            fd,
            [(BLOCK, 2 * BLOCK), (8 * BLOCK, BLOCK)],
            memoryview(b"a" * 2 * BLOCK + b"b" * BLOCK),
        )
        transfer.punch_outside(fd, [(BLOCK, 2 * BLOCK), (8 * BLOCK, BLOCK)], 16 * BLOCK)
        assert data_blocks(tmp_path / "scratch") == {1, 2, 8}
        assert os.pread(fd, 16 * BLOCK, 0) == (
            bytes(BLOCK) + b"a" * 2 * BLOCK + bytes(5 * BLOCK) + b"b" * BLOCK + bytes(7 * BLOCK)
        )
        transfer.punch_outside(fd, [(0, 16 * BLOCK)], 16 * BLOCK)  # nothing outside: no change
        assert data_blocks(tmp_path / "scratch") == {1, 2, 8}
        transfer.punch_outside(fd, [], 16 * BLOCK)
        assert data_blocks(tmp_path / "scratch") == set()
        assert os.fstat(fd).st_size == 16 * BLOCK
    finally:
        os.close(fd)


# --- the source's calls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("volume-head-003.img", InvalidArgumentError),  # the head (after three snapshots)
        ("volume.meta", InvalidArgumentError),
        ("revision.counter", InvalidArgumentError),
        (S1 + ".meta", InvalidArgumentError),
        (S1 + ".checksum", InvalidArgumentError),
        (S1 + ".tmp", InvalidArgumentError),
        ("../x", InvalidArgumentError),
        ("volume-snap-../x.img", InvalidArgumentError),
        ("volume-snap-a/b.img", InvalidArgumentError),
        ("", InvalidArgumentError),
        ("s1", InvalidArgumentError),  # a snapshot name, not a file name
        ("volume-snap-ghost.img", NotFoundError),
        ("volume-snap-stray.img", NotFoundError),  # on disk, but not in the graph
    ],
)
def test_open_snapshot_serves_only_snapshot_files_of_the_graph(
    src: Replica, sdir: Path, name: str, error: type[Exception]
) -> None:
    assert src.info().head == "volume-head-003.img"
    (sdir / "volume-snap-stray.img").write_bytes(b"secret")
    before = tree(sdir)
    with pytest.raises(error):
        transfer.open_snapshot(src.layers, name)
    for call in (transfer.file_info, transfer.file_map):
        with pytest.raises(error):
            call(src.layers, name)
    with pytest.raises(error):
        transfer.read_ranges(src.layers, name, [(0, BLOCK)])
    with pytest.raises(error):
        transfer.diff(src.layers, name, [[(0, BLOCK)]], bytes(DIGEST_SIZE))
    assert tree(sdir) == before


def test_open_snapshot_is_read_only_unless_asked(src: Replica) -> None:
    fd = transfer.open_snapshot(src.layers, S1)
    try:
        assert os.pread(fd, 4, 0) == fill(1, 4)
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.pwrite(fd, b"x", 0)
    finally:
        os.close(fd)
    fd = transfer.open_snapshot(src.layers, S1, write=True)
    try:
        assert os.pwrite(fd, b"x", 0) == 1
    finally:
        os.close(fd)


def test_file_info_and_map(src: Replica, sdir: Path) -> None:
    info = transfer.file_info(src.layers, S1)
    st_ = os.stat(sdir / S1)
    assert info == FileInfo(name=S1, size=SIZE, allocated=st_.st_blocks * 512, checksum="")
    assert info.allocated >= 12 * BLOCK
    assert transfer.file_map(src.layers, S1) == [(0, 8 * BLOCK), (20 * BLOCK, 4 * BLOCK)]
    assert transfer.file_map(src.layers, S2) == [(4 * BLOCK, 2 * BLOCK), (40 * BLOCK, BLOCK)]
    assert transfer.file_map(src.layers, RB) == [(50 * BLOCK, BLOCK)]


def test_file_info_reports_the_recorded_checksum_while_valid(src: Replica, sdir: Path) -> None:
    recorded = src.checksum(S1)
    assert transfer.file_info(src.layers, S1).checksum == recorded.checksum != ""
    assert transfer.file_info(src.layers, S2).checksum == ""  # never hashed
    (sdir / (S2 + ".checksum")).write_bytes(b"{not json")  # a damaged cache is no checksum
    assert transfer.file_info(src.layers, S2).checksum == ""
    os.utime(sdir / S1)  # any change of the file's ctime invalidates the record
    assert transfer.file_info(src.layers, S1).checksum == ""


def test_record_checksum_is_valid_until_the_file_changes(src: Replica) -> None:
    fd = transfer.open_snapshot(src.layers, S2, write=True)
    try:
        assert transfer.recorded_checksum(src.layers, S2, fd) == ""
        transfer.record_checksum(src.layers, S2, fd, "cafe", "sha512")
        assert transfer.recorded_checksum(src.layers, S2, fd) == "cafe"
        assert src.checksum(S2).method == "sha512"
        os.pwrite(fd, b"change", 0)
        assert transfer.recorded_checksum(src.layers, S2, fd) == ""
    finally:
        os.close(fd)


def test_read_ranges_concatenates_and_reads_holes_as_zeros(src: Replica, sdir: Path) -> None:
    content = (sdir / S1).read_bytes()
    ranges = [(20 * BLOCK, BLOCK), (0, 10), (10 * BLOCK, BLOCK), (SIZE - 1, 1)]
    got = transfer.read_ranges(src.layers, S1, ranges)
    assert bytes(got) == b"".join(content[o : o + n] for o, n in ranges)
    assert got[10 + BLOCK : 10 + 2 * BLOCK] == bytes(BLOCK)
    assert transfer.read_ranges(src.layers, S1, []) == b""


@pytest.mark.parametrize(
    "ranges",
    [[(0, BLOCK), (SIZE, 1)], [(-BLOCK, BLOCK)], [(0, 0)], [(0, SIZE)] * 200, [(0, 1)] * 9000],
)
def test_read_ranges_refuses_bad_ranges(src: Replica, ranges: list[tuple[int, int]]) -> None:
    with pytest.raises(InvalidArgumentError, match="file_read"):
        transfer.read_ranges(src.layers, S1, ranges)


def test_diff_names_the_groups_that_differ(src: Replica, sdir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.write_bytes((sdir / S1).read_bytes())
    groups = [
        *transfer.windows(transfer.file_map(src.layers, S1), 8 * BLOCK),
        [(60 * BLOCK, BLOCK)],
    ]
    assert len(groups) == 3
    fd = os.open(copy, os.O_RDWR)
    try:
        assert transfer.diff(src.layers, S1, groups, transfer.digests(fd, groups)) == []
        os.pwrite(fd, b"!", 21 * BLOCK + 5)
        os.pwrite(fd, b"!", 60 * BLOCK)  # a hole on the source: data here differs too
        assert transfer.diff(src.layers, S1, groups, transfer.digests(fd, groups)) == [1, 2]
        ours = transfer.digests(fd, groups)
    finally:
        os.close(fd)
    with pytest.raises(InvalidArgumentError, match="digest bytes"):
        transfer.diff(src.layers, S1, groups, ours[:-1])
    with pytest.raises(InvalidArgumentError, match="outside the file"):
        transfer.diff(src.layers, S1, [[(SIZE - BLOCK, 2 * BLOCK)]], ours[:DIGEST_SIZE])


# --- adopt ----------------------------------------------------------------------------------------


def test_adopt_creates_the_source_snapshots_and_copies_fill_them(
    src: Replica, tgt: Replica, sdir: Path, tdir: Path
) -> None:
    assert tgt.adopt(plan_of(src)) == [RB]
    assert graph(tgt) == graph(src)
    assert tgt.info().chain[1:] == (RB, S2, S1)
    for name in (S1, S2):  # new files: sparse and sized, their .meta the source's verbatim
        assert data_blocks(tdir / name) == set()
        assert os.stat(tdir / name).st_size == SIZE
        assert (tdir / (name + ".meta")).read_bytes() == (sdir / (name + ".meta")).read_bytes()
    assert (tdir / (RB + ".meta")).read_bytes() == (sdir / (RB + ".meta")).read_bytes()
    assert tgt.info().rebuilding

    copy_files(src, tgt)
    assert tgt.read(0, SIZE) == src.read(0, SIZE)
    assert tgt.allocation(0, SIZE) == src.allocation(0, SIZE)
    for name in (S1, S2, RB):
        assert data_blocks(tdir / name) == data_blocks(sdir / name)
        assert (tdir / name).read_bytes() == (sdir / name).read_bytes()
    tgt.write(63 * BLOCK, b"new head data")  # the head kept working through it all
    view = tgt.read(0, SIZE)
    tgt.close()
    with open_replica(tdir) as again:
        assert graph(again) == graph(src)
        assert again.read(0, SIZE) == view


def test_adopt_again_changes_nothing(src: Replica, tgt: Replica, tdir: Path) -> None:
    plan = plan_of(src)
    tgt.adopt(plan)
    copy_files(src, tgt)
    before = tree(tdir)
    assert tgt.adopt(plan) == [RB, S1, S2]
    assert tree(tdir) == before
    assert tgt.read(0, SIZE) == src.read(0, SIZE)


def test_adopt_rewrites_and_resizes_snapshots_both_have(tmp_path: Path, tdir: Path) -> None:
    with Replica.create(str(tmp_path / "s"), size=SIZE // 2, volume=VOLUME, instance="s") as src:
        src.write(0, fill(1, BLOCK))
        src.snapshot("s1", user_created=False, labels={"k": "source"}, created=STAMP)
        src.expand(SIZE)
        src.snapshot("rb", user_created=False, created=STAMP)
        tgt = new_target(tdir)
        try:
            tgt.snapshot("s1", labels={"k": "target"}, created="2026-11-22T11:00:00Z")
            tgt.snapshot("rb", created=STAMP)  # user_created differs
            expansion = f"volume-snap-expand-{SIZE}.img"
            assert tgt.adopt(plan_of(src)) == [RB, S1]
            assert graph(tgt) == graph(src)
            assert tgt.info().chain[1:] == (RB, expansion, S1)
            assert os.stat(tdir / S1).st_size == SIZE // 2  # was SIZE: truncated
            assert os.stat(tdir / expansion).st_size == SIZE // 2  # the old head, pre-expansion
            copy_files(src, tgt)
            assert tgt.read(0, SIZE) == src.read(0, SIZE)
        finally:
            tgt.close()
        with open_replica(tdir) as again:
            assert graph(again) == graph(src)


def test_adopt_deletes_snapshots_only_the_target_has(src: Replica, tdir: Path, sdir: Path) -> None:
    tgt = new_target(tdir)
    try:
        tgt.write(0, fill(7, BLOCK))
        tgt.snapshot("old")
        tgt.write(BLOCK, fill(8, BLOCK))
        tgt.snapshot("x")
        tgt.write(2 * BLOCK, fill(9, BLOCK))
        tgt.snapshot("y")
        tgt.revert("x")  # y is a branch off x now
        tgt.checksum("volume-snap-x.img")
        tgt.snapshot("rb", user_created=False)
        assert "volume-snap-x.img.checksum" in os.listdir(tdir)
        assert tgt.adopt(plan_of(src)) == [RB]
        assert graph(tgt) == graph(src)
        head = tgt.info().head
        expected = {
            "volume.meta",
            "revision.counter",
            "lhtrio-replica.json",
            "volume.intent",
            head,
            head + ".meta",
        }
        for name in (S1, S2, RB):
            expected |= {name, name + ".meta"}
        assert set(os.listdir(tdir)) == expected
        copy_files(src, tgt)
        assert tgt.read(0, SIZE) == src.read(0, SIZE)
    finally:
        tgt.close()
    with open_replica(tdir) as again:
        assert graph(again) == graph(src)
        assert set(os.listdir(tdir)) == expected


def _bad_plans(plan: dict[str, PlannedDisk]) -> Iterator[tuple[str, dict[str, PlannedDisk]]]:
    def with_disk(name: str, **changes: Any) -> dict[str, PlannedDisk]:
        meta = attrs.evolve(plan[name].meta, **changes.pop("meta", {}))
        return plan | {name: attrs.evolve(plan[name], meta=meta, **changes)}

    yield "is not in the plan", with_disk(S1, meta={"parent": "volume-snap-ghost.img"})
    yield "cycle", with_disk(S1, meta={"parent": RB})
    yield "does not fit", with_disk(S2, size=SIZE + BLOCK)
    yield "does not fit", with_disk(S2, size=SIZE - 1)
    yield "does not fit", with_disk(S2, size=-BLOCK)
    yield "not a snapshot file name", with_disk(S1, meta={"name": S2})
    yield "larger than its child", with_disk(S2, size=SIZE - BLOCK)  # S1 is SIZE: no shrinking
    yield "invalid value", with_disk(S1, meta={"labels": {"app": "\x01" * 100_000}})
    yield "labels given", with_disk(S1, meta={"labels": {f"k{i}": "" for i in range(65)}})
    for bad in ("../x", "volume-head-009.img", "volume.meta", "volume-snap-../x.img"):
        moved = attrs.evolve(plan[S1], meta=attrs.evolve(plan[S1].meta, name=bad))
        yield "not a snapshot file name", plan | {bad: moved}
    long = {
        f"volume-snap-c{i}.img": PlannedDisk(
            meta=attrs.evolve(
                plan[S1].meta, name=f"volume-snap-c{i}.img", parent=f"volume-snap-c{i + 1}.img"
            ),
            size=SIZE,
        )
        for i in range(250)
    }
    long["volume-snap-c249.img"] = attrs.evolve(
        long["volume-snap-c249.img"],
        meta=attrs.evolve(long["volume-snap-c249.img"].meta, parent=""),
    )
    on_top = attrs.evolve(plan[RB].meta, parent="volume-snap-c0.img")
    yield "more than 250", long | {RB: attrs.evolve(plan[RB], meta=on_top)}


def test_adopt_refuses_a_bad_plan_and_changes_nothing(
    src: Replica, tgt: Replica, tdir: Path
) -> None:
    plan = plan_of(src)
    tgt.write(10 * BLOCK, b"head")
    view = tgt.read(0, SIZE)
    before_graph = graph(tgt)
    before = tree(tdir)
    cases = list(_bad_plans(plan))
    assert len(cases) == 14
    for match, bad in cases:
        with pytest.raises(InvalidArgumentError, match=match):
            tgt.adopt(bad)
        assert tree(tdir) == before, match
    without_rb = {name: disk for name, disk in plan.items() if name != RB}
    with pytest.raises(ConflictError, match=r"head's parent volume-snap-rb\.img is not among"):
        tgt.adopt(without_rb)
    assert tree(tdir) == before
    assert graph(tgt) == before_graph
    assert tgt.read(0, SIZE) == view
    tgt.adopt(plan)  # still usable
    assert graph(tgt) == graph(src)


def test_adopt_refused_unless_marked_rebuilding(src: Replica, tdir: Path) -> None:
    with Replica.create(str(tdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as tgt:
        tgt.snapshot("rb", user_created=False)
        before = tree(tdir)
        with pytest.raises(ConflictError, match="not marked rebuilding"):
            tgt.adopt(plan_of(src))
        assert tree(tdir) == before
        tgt.set_rebuilding(True)
        tgt.set_rebuilding(False)
        with pytest.raises(ConflictError, match="not marked rebuilding"):
            tgt.adopt(plan_of(src))


def test_reload_sees_files_filled_underneath(src: Replica, tgt: Replica) -> None:
    tgt.adopt(plan_of(src))
    # adopt moves no data: rb keeps the target's blocks until the sync, the new s1 is empty
    assert tgt.read(0, 6 * BLOCK) == b"\xee" * 2 * BLOCK + bytes(4 * BLOCK)
    tgt.write(3 * BLOCK, b"h" * BLOCK)  # the head's data wins over anything filled below
    fd = transfer.open_snapshot(tgt.layers, S1, write=True)
    try:
        os.pwrite(fd, b"s" * 3 * BLOCK, 2 * BLOCK)
    finally:
        os.close(fd)
    tgt.reload()
    assert tgt.read(2 * BLOCK, 4 * BLOCK) == b"s" * BLOCK + b"h" * BLOCK + b"s" * BLOCK + bytes(
        BLOCK
    )


# --- adopt, crashed at every step -----------------------------------------------------------------


class Crash(BaseException):
    pass


def inject(mp: pytest.MonkeyPatch, crash_at: int) -> list[str]:
    """Raise Crash at the ``crash_at``-th file-system step; returns the steps taken so far."""
    steps: list[str] = []

    def wrap(module: Any, name: str, *, only: Any = None) -> None:
        real = getattr(module, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            if only is None or only(*args, **kwargs):
                steps.append(name)
                if len(steps) - 1 == crash_at:
                    raise Crash(f"{name} #{crash_at}")
            return real(*args, **kwargs)

        mp.setattr(module, name, step)

    for name in ("write_atomic", "unlink_if_exists", "fsync_dir"):
        wrap(fs, name)
    for name in ("rename", "ftruncate", "fsync", "fdatasync"):
        wrap(os, name)
    wrap(os, "open", only=lambda path, flags, *a, **k: bool(flags & os.O_CREAT))
    return steps


def build_crash_target(tdir: Path) -> None:
    """A target with a shared snapshot and target-only ones (a branch, a checksum); closed."""
    with new_target(tdir) as tgt:
        tgt.write(0, fill(7, 4 * BLOCK))
        tgt.snapshot("s1", created=STAMP)  # shared, but its metadata differs from the source's
        tgt.write(BLOCK, fill(8, BLOCK))
        tgt.snapshot("x")
        tgt.write(2 * BLOCK, fill(9, BLOCK))
        tgt.snapshot("y")
        tgt.revert("x")
        tgt.checksum("volume-snap-x.img")
        tgt.write(3 * BLOCK, fill(10, BLOCK))
        tgt.snapshot("rb", user_created=False)


def crash_target(template: Path, tdir: Path) -> Replica:
    shutil.rmtree(tdir, ignore_errors=True)
    shutil.copytree(template, tdir)
    tgt = open_replica(tdir)
    tgt.write(5 * BLOCK, fill(11, BLOCK))  # unflushed head data: adopt flushes it first
    return tgt


def assert_consistent(tdir: Path, r: Replica) -> None:
    assert r.info().rebuilding
    assert_clean(tdir, r)
    assert r.read(5 * BLOCK, BLOCK) == fill(11, BLOCK)  # the head's data survived


def test_adopt_crash_anywhere_leaves_a_replica_that_opens(
    src: Replica, tdir: Path, tmp_path: Path
) -> None:
    template = tmp_path / "template"
    build_crash_target(template)
    plan = plan_of(src)
    reference = crash_target(template, tdir)
    reference.adopt(plan)
    expected = graph(reference)
    expected_files = set(os.listdir(tdir))
    reference.close()
    assert expected == graph(src)
    seen: set[str] = set()
    for crash_at in itertools.count():
        tgt = crash_target(template, tdir)
        with pytest.MonkeyPatch.context() as mp:
            steps = inject(mp, crash_at)
            try:
                tgt.adopt(plan)
            except Crash:
                crashed = True
            else:
                crashed = False
        if not crashed:
            tgt.close()
            break
        seen.add(steps[crash_at])
        tgt.abandon()
        with open_replica(tdir) as again:  # Replica.open validates everything
            assert_consistent(tdir, again)
            had = sorted(set(again.info().disks) & set(plan))
            assert {RB, S1} <= set(had)
            assert again.adopt(plan) == had
            assert graph(again) == expected, crash_at
            assert set(os.listdir(tdir)) == expected_files, crash_at
    assert crash_at > 30
    assert seen == {
        "write_atomic",
        "unlink_if_exists",
        "fsync_dir",
        "rename",
        "ftruncate",
        "fsync",
        "fdatasync",
        "open",
    }
