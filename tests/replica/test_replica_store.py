from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NoSpaceError,
    NotFoundError,
    OutOfRangeError,
    ShuttingDownError,
    StorageError,
)
from lhtrio.models.replica import ActionKind, RemovalAction
from lhtrio.replica import fs
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, fill, open_replica, tree


def volume_meta(path: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads((path / "volume.meta").read_bytes())
    return result


def test_create_layout(rdir: Path) -> None:
    r = Replica.create(str(rdir), size=16 * BLOCK, volume=VOLUME, instance=INSTANCE)
    try:
        assert sorted(os.listdir(rdir)) == [
            "lhtrio-replica.json",
            "revision.counter",
            "volume-head-000.img",
            "volume-head-000.img.meta",
            "volume.intent",
            "volume.meta",
        ]
        assert json.loads((rdir / "lhtrio-replica.json").read_bytes()) == {
            "volume": VOLUME,
            "instance": INSTANCE,
        }
        assert json.loads((rdir / "volume-head-000.img.meta").read_bytes())["Size"] == 16 * BLOCK
        assert os.stat(rdir / "volume-head-000.img").st_size == 16 * BLOCK
        assert os.stat(rdir / "volume-head-000.img").st_blocks == 0
        meta = volume_meta(rdir)
        assert meta["Dirty"] is True
        assert meta["Head"] == "volume-head-000.img"
        assert meta["Size"] == 16 * BLOCK
        assert (rdir / "revision.counter").read_bytes() == b"0".ljust(4096, b"\0")
        assert r.volume == VOLUME
        assert r.instance == INSTANCE
        assert r.size == 16 * BLOCK
    finally:
        r.close()
    assert volume_meta(rdir)["Dirty"] is False


def test_create_refuses_bad_arguments(tmp_path: Path) -> None:
    for size in (0, -4096, 1000, 4097):
        with pytest.raises(InvalidArgumentError, match="multiple of 4096"):
            Replica.create(str(tmp_path / "a"), size=size, volume=VOLUME, instance=INSTANCE)
    with pytest.raises(InvalidArgumentError, match="volume name"):
        Replica.create(str(tmp_path / "a"), size=BLOCK, volume="../x", instance=INSTANCE)
    with pytest.raises(InvalidArgumentError, match="instance name"):
        Replica.create(str(tmp_path / "a"), size=BLOCK, volume=VOLUME, instance="-i")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_bytes(b"")
    with pytest.raises(AlreadyExistsError, match="not empty"):
        Replica.create(str(tmp_path / "full"), size=BLOCK, volume=VOLUME, instance=INSTANCE)
    assert os.listdir(tmp_path / "full") == ["x"]
    with pytest.raises(NotFoundError):
        Replica.open(str(tmp_path / "missing"), volume=VOLUME, instance=INSTANCE)
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        Replica.open(str(tmp_path / "full" / "x"), volume=VOLUME, instance=INSTANCE)


def test_create_in_existing_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    Replica.create(str(tmp_path / "empty"), size=BLOCK, volume=VOLUME, instance=INSTANCE).close()
    with pytest.raises(AlreadyExistsError):
        Replica.create(str(tmp_path / "empty"), size=BLOCK, volume=VOLUME, instance=INSTANCE)


def test_directory_is_locked_while_open(replica: Replica, rdir: Path) -> None:
    before = tree(rdir)
    with pytest.raises(ConflictError, match="in use"):
        open_replica(rdir)
    assert tree(rdir) == before


def test_aligned_and_unaligned_io(replica: Replica) -> None:
    replica.write(0, fill(1, 2 * BLOCK))
    assert replica.read(0, 2 * BLOCK) == fill(1, 2 * BLOCK)
    replica.write(100, b"hello")
    expected = bytearray(fill(1, 2 * BLOCK))
    expected[100:105] = b"hello"
    assert replica.read(0, 2 * BLOCK) == expected
    # Spanning three blocks, unaligned at both ends, into blocks nobody wrote.
    replica.write(3 * BLOCK - 10, fill(2, 2 * BLOCK + 20))
    assert replica.read(3 * BLOCK - 10, 2 * BLOCK + 20) == fill(2, 2 * BLOCK + 20)
    assert replica.read(2 * BLOCK, BLOCK - 10) == bytes(BLOCK - 10)
    assert replica.read(5 * BLOCK + 10, BLOCK - 10) == bytes(BLOCK - 10)
    # Unaligned start, aligned end, and the other way round.
    replica.write(10 * BLOCK + 1, fill(3, BLOCK - 1))
    replica.write(12 * BLOCK, fill(4, BLOCK + 7))
    assert replica.read(10 * BLOCK, BLOCK) == b"\0" + fill(3, BLOCK - 1)
    assert replica.read(12 * BLOCK, BLOCK + 8) == fill(4, BLOCK + 7) + b"\0"
    # Buffers of every kind.
    replica.write(20 * BLOCK, bytearray(b"x" * BLOCK))
    replica.write(21 * BLOCK, memoryview(b"y" * 2 * BLOCK)[BLOCK:])
    buf = bytearray(3 * BLOCK)
    replica.read_into(20 * BLOCK, memoryview(buf)[BLOCK:])
    assert buf == bytes(BLOCK) + b"x" * BLOCK + b"y" * BLOCK
    assert replica.revision_counter == 7


def test_zero_length_and_out_of_range(replica: Replica, rdir: Path) -> None:
    replica.write(0, fill(1, BLOCK))
    replica.flush()
    before = tree(rdir)
    size = replica.size
    assert replica.read(size, 0) == b""
    replica.write(size, b"")
    for offset, length in [(-1, 1), (size - 1, 2), (size, 1), (2**62, BLOCK)]:
        with pytest.raises(OutOfRangeError, match="outside volume vol"):
            replica.write(offset, b"z" * length)
        with pytest.raises(OutOfRangeError):
            replica.read(offset, length)
        with pytest.raises(OutOfRangeError):
            replica.unmap(offset, length)
    with pytest.raises(OutOfRangeError):
        replica.read(0, -1)
    replica.flush()
    assert tree(rdir) == before
    assert replica.revision_counter == 1


def test_closed_replica_refuses_everything(rdir: Path) -> None:
    r = Replica.create(str(rdir), size=4 * BLOCK, volume=VOLUME, instance=INSTANCE)
    r.close()
    r.close()
    assert r.closed
    with pytest.raises(ShuttingDownError):
        r.write(0, b"x")
    with pytest.raises(ShuttingDownError):
        r.read(0, 1)
    with pytest.raises(ShuttingDownError):
        r.unmap(0, BLOCK)
    for call in (r.flush, r.info, lambda: r.snapshot("a"), lambda: r.checksum("a")):
        with pytest.raises(ShuttingDownError):
            call()


def test_context_manager_and_reopen(rdir: Path) -> None:
    with Replica.create(str(rdir), size=8 * BLOCK, volume=VOLUME, instance=INSTANCE) as r:
        r.write(BLOCK, fill(9, BLOCK))
    assert volume_meta(rdir)["Dirty"] is False
    with open_replica(rdir) as r:
        assert volume_meta(rdir)["Dirty"] is True
        assert r.read(BLOCK, BLOCK) == fill(9, BLOCK)
        assert r.revision_counter == 1


def test_snapshot_layout_and_reads_through_the_chain(replica: Replica, rdir: Path) -> None:
    replica.write(0, fill(1, 4 * BLOCK))
    replica.snapshot("s1", created="2026-11-22T10:00:00Z", labels={"k": "v"})
    replica.write(BLOCK, fill(2, BLOCK))
    replica.snapshot("s2", user_created=False)
    replica.write(2 * BLOCK + 5, b"abc")
    names = sorted(os.listdir(rdir))
    assert names == [
        "lhtrio-replica.json",
        "revision.counter",
        "volume-head-002.img",
        "volume-head-002.img.meta",
        "volume-snap-s1.img",
        "volume-snap-s1.img.meta",
        "volume-snap-s2.img",
        "volume-snap-s2.img.meta",
        "volume.intent",
        "volume.meta",
    ]
    s1 = json.loads((rdir / "volume-snap-s1.img.meta").read_bytes())
    assert s1 == {
        "Name": "volume-snap-s1.img",
        "Parent": "",
        "Removed": False,
        "UserCreated": True,
        "Created": "2026-11-22T10:00:00Z",
        "Labels": {"k": "v"},
        "Size": 64 * BLOCK,
    }
    head = json.loads((rdir / "volume-head-002.img.meta").read_bytes())
    assert head["Parent"] == "volume-snap-s2.img"
    assert volume_meta(rdir)["Parent"] == "volume-snap-s2.img"
    expected = bytearray(fill(1, 4 * BLOCK))
    expected[BLOCK : 2 * BLOCK] = fill(2, BLOCK)
    expected[2 * BLOCK + 5 : 2 * BLOCK + 8] = b"abc"
    assert replica.read(0, 4 * BLOCK) == expected
    info = replica.info()
    assert info.chain == ("volume-head-002.img", "volume-snap-s2.img", "volume-snap-s1.img")
    assert info.disks["volume-snap-s1.img"].children == ("volume-snap-s2.img",)
    assert info.disks["volume-snap-s1.img"].labels == {"k": "v"}
    assert info.disks["volume-snap-s1.img"].allocated == 4 * BLOCK
    assert info.disks["volume-snap-s2.img"].user_created is False
    assert info.head_allocated == BLOCK
    assert info.dirty is True
    assert info.sector_size == 512
    assert info.revision_counter == 3
    assert info.persisted_revision_counter == 2  # the snapshot flushed; "abc" came after
    replica.close()
    with open_replica(rdir) as again:
        assert again.read(0, 4 * BLOCK) == expected


def test_snapshot_refusals(replica: Replica, rdir: Path) -> None:
    replica.snapshot("s1")
    before = tree(rdir)
    with pytest.raises(AlreadyExistsError, match="s1"):
        replica.snapshot("s1")
    with pytest.raises(InvalidArgumentError, match="bare snapshot name"):
        replica.snapshot("volume-snap-s1.img")
    for bad in ("../x", "a/b", "-x", "a\0", "x" * 65, ""):
        with pytest.raises(InvalidArgumentError):
            replica.snapshot(bad)
    with pytest.raises(InvalidArgumentError, match="bare snapshot name"):
        replica.snapshot("volume-head-009.img")
    with pytest.raises(InvalidArgumentError, match="RFC 3339"):
        replica.snapshot("t", created="yesterday")
    with pytest.raises(InvalidArgumentError, match="label 'a'"):
        replica.snapshot("t", labels={"a": 1})  # type: ignore[dict-item]
    assert tree(rdir) == before


def test_mark_removed(replica: Replica, rdir: Path) -> None:
    replica.snapshot("s1")
    with pytest.raises(InvalidArgumentError, match="head"):
        replica.mark_removed(replica.info().head)
    replica.mark_removed("missing")  # no-op
    replica.mark_removed("s1")
    replica.mark_removed("volume-snap-s1.img")
    assert json.loads((rdir / "volume-snap-s1.img.meta").read_bytes())["Removed"] is True
    assert replica.prepare_remove("s1") == [
        RemovalAction(
            kind=ActionKind.PRUNE, source="volume-snap-s1.img", target="volume-head-001.img"
        )
    ]


def test_purge_merges_and_keeps_the_view(replica: Replica, rdir: Path) -> None:
    replica.write(0, fill(1, 8 * BLOCK))
    replica.snapshot("a")
    replica.write(BLOCK, fill(2, BLOCK))
    replica.snapshot("b")
    replica.write(2 * BLOCK, fill(3, BLOCK))
    replica.snapshot("c", user_created=False)
    replica.write(2 * BLOCK, fill(4, 2 * BLOCK))
    expected = replica.read(0, 8 * BLOCK)
    replica.mark_removed("a")
    replica.mark_removed("b")
    seen: list[tuple[int, int]] = []
    replica.purge(lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    info = replica.info()
    assert info.chain == ("volume-head-003.img", "volume-snap-c.img")
    assert info.disks["volume-snap-c.img"].removed is True
    assert replica.read(0, 8 * BLOCK) == expected
    # c was merged with a and b, then pruned where the head has data (blocks 2 and 3).
    assert info.disks["volume-snap-c.img"].allocated == 6 * BLOCK
    assert not any(name.endswith(".tmp") for name in os.listdir(rdir))
    replica.close()
    with open_replica(rdir) as again:
        assert again.read(0, 8 * BLOCK) == expected


def test_revert_keeps_newer_snapshots_as_a_branch(replica: Replica) -> None:
    replica.write(0, fill(1, BLOCK))
    replica.snapshot("a")
    replica.write(0, fill(2, BLOCK))
    replica.snapshot("b")
    replica.write(0, fill(3, BLOCK))
    replica.revert("a")
    assert replica.read(0, BLOCK) == fill(1, BLOCK)
    info = replica.info()
    assert info.chain == ("volume-head-003.img", "volume-snap-a.img")
    assert info.disks["volume-snap-a.img"].children == ("volume-head-003.img", "volume-snap-b.img")
    assert "volume-head-002.img" not in info.disks
    replica.revert("b")
    assert replica.read(0, BLOCK) == fill(2, BLOCK)
    replica.mark_removed("a")
    with pytest.raises(ConflictError, match="removed"):
        replica.revert("a")
    with pytest.raises(NotFoundError):
        replica.revert("zz")
    with pytest.raises(InvalidArgumentError, match="head"):
        replica.revert(replica.info().head)


def test_expand(replica: Replica, rdir: Path) -> None:
    size = replica.size
    replica.write(size - BLOCK, fill(1, BLOCK))
    for bad in (size - BLOCK, size + 1, -1):
        with pytest.raises(InvalidArgumentError):
            replica.expand(bad)
    replica.expand(size)  # no-op
    assert replica.info().chain == ("volume-head-000.img",)
    replica.expand(2 * size)
    assert replica.size == 2 * size
    info = replica.info()
    snap = info.disks[f"volume-snap-expand-{2 * size}.img"]
    assert snap.user_created is False
    assert snap.labels == {"replica-expansion": str(2 * size)}
    assert os.stat(rdir / f"volume-snap-expand-{2 * size}.img").st_size == size
    assert os.stat(rdir / info.head).st_size == 2 * size
    assert replica.read(size - BLOCK, 2 * BLOCK) == fill(1, BLOCK) + bytes(BLOCK)
    replica.write(2 * size - 3, b"end")
    assert replica.read(2 * size - 3, 3) == b"end"
    replica.close()
    with open_replica(rdir) as again:
        assert again.size == 2 * size
        assert again.read(size - BLOCK, BLOCK) == fill(1, BLOCK)


def test_remove_disk(replica: Replica) -> None:
    replica.write(0, fill(1, BLOCK))
    replica.snapshot("a")
    replica.write(BLOCK, fill(2, BLOCK))
    replica.snapshot("b")
    replica.revert("a")
    with pytest.raises(ConflictError, match="2 children"):
        replica.remove_disk("a")
    replica.remove_disk("b")  # a leaf of the old branch
    assert "volume-snap-b.img" not in replica.info().disks
    with pytest.raises(ConflictError, match="has a child"):
        replica.remove_disk("a")
    with pytest.raises(InvalidArgumentError, match="head"):
        replica.remove_disk(replica.info().head)
    replica.remove_disk("a", force=True)  # re-parents the head; a's data is gone
    info = replica.info()
    assert info.chain == (info.head,)
    assert info.parent == ""
    assert replica.read(0, BLOCK) == bytes(BLOCK)


def test_actions_one_by_one(replica: Replica) -> None:
    replica.write(0, fill(1, 2 * BLOCK))
    replica.snapshot("a")
    replica.write(BLOCK, fill(2, BLOCK))
    replica.snapshot("b")
    expected = replica.read(0, 2 * BLOCK)
    with pytest.raises(ConflictError, match="not marked removed"):
        replica.coalesce("a", "b")
    replica.mark_removed("a")
    with pytest.raises(InvalidArgumentError, match="not a child"):
        replica.coalesce("b", "a")
    actions = replica.prepare_remove("a")
    assert [a.kind for a in actions] == [ActionKind.COALESCE, ActionKind.REPLACE]
    replica.coalesce("a", "b")
    replica.coalesce("a", "b")  # idempotent
    assert replica.read(0, 2 * BLOCK) == expected
    replica.replace("b", "a")
    assert replica.info().chain == (replica.info().head, "volume-snap-b.img")
    assert replica.read(0, 2 * BLOCK) == expected
    replica.mark_removed("b")
    (prune,) = replica.prepare_remove("b")
    replica.write(0, fill(3, BLOCK))
    replica.apply(prune)
    assert replica.info().disks["volume-snap-b.img"].allocated == BLOCK
    assert replica.read(0, 2 * BLOCK) == fill(3, BLOCK) + expected[BLOCK:]


def test_checksum(replica: Replica, rdir: Path) -> None:
    replica.write(BLOCK, fill(1, BLOCK))
    replica.snapshot("a")
    with pytest.raises(InvalidArgumentError, match="head"):
        replica.checksum(replica.info().head)
    with pytest.raises(NotFoundError):
        replica.checksum("zz")
    first = replica.checksum("a")
    assert first.method == "blake2b-256"
    assert len(first.checksum) == 64
    assert first.silently_corrupted is False
    assert first.change_time == os.stat(rdir / "volume-snap-a.img").st_ctime_ns
    record = json.loads((rdir / "volume-snap-a.img.checksum").read_bytes())
    assert record["checksum"] == first.checksum
    assert replica.checksum("a") == first  # cached: ctime unchanged
    # Same content hashes the same in another file: holes count as zeros.
    replica.snapshot("b")
    assert replica.checksum("b").checksum != first.checksum
    # A recorded hash that no longer matches an unchanged file: silent corruption.
    record["checksum"] = "00" * 32
    (rdir / "volume-snap-a.img.checksum").write_text(json.dumps(record))
    assert replica.checksum("a").checksum == "00" * 32  # not rehashed without force
    forced = replica.checksum("a", force=True)
    assert forced.silently_corrupted is True
    assert forced.checksum == "00" * 32
    # A damaged record is just recomputed.
    (rdir / "volume-snap-a.img.checksum").write_text("garbage")
    assert replica.checksum("a").checksum == first.checksum
    # A changed file (new ctime) is hashed again.
    replica.mark_removed("a")
    replica.purge()
    assert not (rdir / "volume-snap-a.img.checksum").exists()


def test_set_rebuilding_and_counter(replica: Replica, rdir: Path) -> None:
    replica.set_rebuilding(True)
    assert volume_meta(rdir)["Rebuilding"] is True
    assert replica.info().rebuilding is True
    replica.set_rebuilding(False)
    assert volume_meta(rdir)["Rebuilding"] is False
    replica.write(0, b"x")
    replica.set_revision_counter(10)
    assert replica.revision_counter == 10
    assert (rdir / "revision.counter").read_bytes().rstrip(b"\0") == b"10"
    with pytest.raises(InvalidArgumentError):
        replica.set_revision_counter(-1)


def test_failed_snapshot_rolls_back(replica: Replica, rdir: Path) -> None:
    replica.write(0, fill(1, BLOCK))
    replica.flush()
    before = tree(rdir)

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "link", no_space)
        with pytest.raises(NoSpaceError, match="snapshot s1"):
            replica.snapshot("s1")
    assert tree(rdir) == before
    assert replica.failed == ""
    replica.write(BLOCK, fill(2, BLOCK))
    replica.snapshot("s1")
    assert replica.read(0, 2 * BLOCK) == fill(1, BLOCK) + fill(2, BLOCK)


def test_commit_that_may_not_be_durable_fails_the_replica(replica: Replica, rdir: Path) -> None:
    replica.write(0, fill(1, BLOCK))
    real = fs.write_atomic

    def dir_sync_fails(dir_fd: int, name: str, data: bytes) -> None:
        real(dir_fd, name, data)
        if name == "volume.meta":
            raise fs.NotDurableError(errno.EIO, "Input/output error")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fs, "write_atomic", dir_sync_fails)
        with pytest.raises(StorageError, match="must be rebuilt"):
            replica.snapshot("s1")
    assert "must be rebuilt" in replica.failed
    with pytest.raises(StorageError, match="must be rebuilt"):
        replica.snapshot("s2")
    with pytest.raises(StorageError, match="must be rebuilt"):
        replica.flush()
    with pytest.raises(StorageError, match="must be rebuilt"):
        replica.mark_removed("x")
    assert replica.info().head == "volume-head-000.img"  # memory never moved on
    with pytest.raises(StorageError):
        replica.close()
    with open_replica(rdir) as again:  # the commit took effect on disk
        assert again.info().chain == ("volume-head-001.img", "volume-snap-s1.img")
        assert again.read(0, BLOCK) == fill(1, BLOCK)
