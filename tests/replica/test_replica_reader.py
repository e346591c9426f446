"""Reading a snapshot without an engine (``lhtrio.replica.reader``), checked against a model.

The model keeps every layer as a dict of 4 KiB blocks, exactly as the store writes them (an
unaligned write puts the whole patched block into the head; an unmap removes the head's blocks,
which then read from the layers below). A snapshot's own view is its layer's blocks; the view
through the chain is the overlay of its layer over its ancestors'.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhtrio.errors import (
    ConflictError,
    CorruptMetadataError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    ShuttingDownError,
)
from lhtrio.replica import open_snapshot_reader
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, fill, open_replica

BLOCKS = 64
SIZE = BLOCKS * BLOCK


class Model:
    """The replica's layers as dicts of blocks (oldest first; the head is the last)."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.size = replica.size
        self.layers: list[dict[int, bytes]] = [{}]
        self.names: list[str] = []  # the snapshot of each layer but the head's
        self.sizes: list[int] = []  # the volume's size when each snapshot was taken

    def view(self, upto: int) -> bytearray:
        """The volume as seen through layers ``0..upto``, ``size`` bytes."""
        out = bytearray(self.size)
        for layer in self.layers[: upto + 1]:
            for block, data in layer.items():
                out[block * BLOCK : (block + 1) * BLOCK] = data
        return out

    def write(self, offset: int, data: bytes) -> None:
        self.replica.write(offset, data)
        current = self.view(len(self.layers) - 1)
        current[offset : offset + len(data)] = data
        for block in range(offset // BLOCK, (offset + len(data) - 1) // BLOCK + 1):
            self.layers[-1][block] = bytes(current[block * BLOCK : (block + 1) * BLOCK])

    def unmap(self, offset: int, length: int) -> None:
        self.replica.unmap(offset, length)
        for block in range(offset // BLOCK, (offset + length) // BLOCK):
            self.layers[-1].pop(block, None)

    def snapshot(self, name: str) -> None:
        self.replica.snapshot(name)
        self.names.append(name)
        self.sizes.append(self.size)
        self.layers.append({})

    def expand(self, size: int) -> None:
        self.replica.expand(size)
        self.names.append(f"expand-{size}")
        self.sizes.append(self.size)
        self.layers.append({})
        self.size = size

    def expected(self, name: str, *, through_chain: bool) -> tuple[list[tuple[int, int]], bytes]:
        """The extents and the bytes of snapshot ``name`` in one view."""
        i = self.names.index(name)
        size = self.sizes[i]
        layers = self.layers[: i + 1] if through_chain else [self.layers[i]]
        blocks = sorted({b for layer in layers for b in layer if b * BLOCK < size})
        extents: list[tuple[int, int]] = []
        for block in blocks:
            if extents and extents[-1][0] + extents[-1][1] == block * BLOCK:
                extents[-1] = (extents[-1][0], extents[-1][1] + BLOCK)
            else:
                extents.append((block * BLOCK, BLOCK))
        data = bytearray(size)
        for layer in layers:
            for block, content in layer.items():
                if block * BLOCK < size:
                    data[block * BLOCK : (block + 1) * BLOCK] = content
        return extents, bytes(data)


def check(rdir: Path, model: Model, name: str, *, through_chain: bool) -> None:
    extents, data = model.expected(name, through_chain=through_chain)
    with open_snapshot_reader(rdir, name, through_chain=through_chain) as reader:
        assert reader.size == len(data)
        assert reader.extents() == extents
        assert reader.read(0, reader.size) == data
        rng = random.Random(name)
        for _ in range(20):  # unaligned pieces, each read on its own
            offset = rng.randrange(reader.size)
            length = rng.randrange(min(3 * BLOCK, reader.size - offset) + 1)
            assert reader.read(offset, length) == data[offset : offset + length]
        reader.check()


def opened(directory: Path, name: str, *, through_chain: bool) -> None:
    """Open and close a reader (for the refusals)."""
    with open_snapshot_reader(directory, name, through_chain=through_chain):
        pass


@pytest.fixture
def chain(rdir: Path) -> Iterator[Model]:
    """Three snapshots over each other, with overwrites, an unaligned write and an unmap."""
    replica = Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE)
    model = Model(replica)
    model.write(0, fill(1, 4 * BLOCK))  # blocks 0-3
    model.write(40 * BLOCK, fill(2, BLOCK))
    model.snapshot("s1")
    model.write(2 * BLOCK, fill(3, 4 * BLOCK))  # blocks 2-5: over s1's 2-3
    model.write(10 * BLOCK + 100, fill(4, 50))  # one patched block
    model.write(30 * BLOCK, fill(5, 2 * BLOCK))
    model.unmap(30 * BLOCK, BLOCK)  # block 30 leaves the head again
    model.snapshot("s2")
    model.write(3 * BLOCK, fill(6, BLOCK))
    model.write(63 * BLOCK, fill(7, BLOCK))  # the last block
    model.write(41 * BLOCK, fill(8, BLOCK))  # next to s1's block 40: one extent through s3
    model.snapshot("s3")
    model.write(0, fill(9, 8 * BLOCK))  # the head: in no snapshot
    try:
        yield model
    finally:
        replica.close()


@pytest.mark.parametrize("through_chain", [False, True])
@pytest.mark.parametrize("name", ["s1", "s2", "s3"])
def test_extents_and_bytes_of_every_snapshot(
    chain: Model, rdir: Path, name: str, through_chain: bool
) -> None:
    check(rdir, chain, name, through_chain=through_chain)


def test_the_views_differ_as_a_backup_needs(chain: Model, rdir: Path) -> None:
    """Own view: only the blocks written while it was the head; through the chain: all of them."""
    with open_snapshot_reader(rdir, "s2", through_chain=False) as own:
        assert own.layers == ("volume-snap-s2.img",)
        assert own.extents() == [(2 * BLOCK, 4 * BLOCK), (10 * BLOCK, BLOCK), (31 * BLOCK, BLOCK)]
        assert own.read(0, BLOCK) == bytes(BLOCK)  # s1's data, not s2's
    with open_snapshot_reader(rdir, "volume-snap-s2.img", through_chain=True) as full:
        assert full.snapshot == "s2"
        assert full.layers == ("volume-snap-s1.img", "volume-snap-s2.img")
        assert full.extents() == [(0, 6 * BLOCK), (10 * BLOCK, BLOCK), (31 * BLOCK, BLOCK),
                                  (40 * BLOCK, BLOCK)]  # fmt: skip
        assert full.read(0, BLOCK) == fill(1, BLOCK)


def test_a_purged_snapshot_is_merged_into_its_child(chain: Model, rdir: Path) -> None:
    """Purging s2 coalesces it into s3: s3 reads the same through the chain, its own file now
    holds s2's blocks too, and s2 is gone."""
    before = {through: chain.expected("s3", through_chain=through) for through in (False, True)}
    chain.replica.mark_removed("s2")
    with pytest.raises(ConflictError, match="marked removed"):
        opened(rdir, "s2", through_chain=True)
    chain.replica.purge()
    with pytest.raises(NotFoundError, match="has no snapshot s2"):
        opened(rdir, "s2", through_chain=True)
    i = chain.names.index("s2")
    merged = {**chain.layers[i], **chain.layers[i + 1]}
    del chain.layers[i : i + 2], chain.names[i], chain.sizes[i]
    chain.layers.insert(i, merged)
    assert chain.expected("s3", through_chain=True) == before[True]
    assert chain.expected("s3", through_chain=False) != before[False]
    for through in (False, True):
        check(rdir, chain, "s3", through_chain=through)
        check(rdir, chain, "s1", through_chain=through)


def test_a_volume_expanded_after_a_snapshot(rdir: Path) -> None:
    with Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as replica:
        model = Model(replica)
        model.write(BLOCK, fill(1, 2 * BLOCK))
        model.write(63 * BLOCK, fill(2, BLOCK))
        model.snapshot("small")
        model.expand(2 * SIZE)
        model.write(63 * BLOCK, fill(3, 2 * BLOCK))  # across the old end
        model.write(100 * BLOCK, fill(4, BLOCK))
        model.snapshot("large")
        for name in ("small", f"expand-{2 * SIZE}", "large"):
            for through in (False, True):
                check(rdir, model, name, through_chain=through)
    with open_snapshot_reader(rdir, "large", through_chain=True) as large:
        assert large.size == 2 * SIZE
        assert large.layers == (
            "volume-snap-small.img",
            f"volume-snap-expand-{2 * SIZE}.img",
            "volume-snap-large.img",
        )
        assert large.read(SIZE - BLOCK, 3 * BLOCK) == fill(3, 2 * BLOCK) + bytes(BLOCK)
        buf = bytearray(b"\xff" * 4 * BLOCK)  # past the older layers' end: zeros, not the buffer
        large.read_into(SIZE + BLOCK, memoryview(buf))
        assert buf == bytes(4 * BLOCK)
    with open_snapshot_reader(rdir, "small", through_chain=True) as small:
        assert small.size == SIZE
        with pytest.raises(OutOfRangeError, match="outside snapshot small"):
            small.read(SIZE - BLOCK, 2 * BLOCK)


def digest(path: Path) -> dict[str, str]:
    """Every file's name, content hash, size and mtime (the "nothing changed" record)."""
    out = {}
    for name in sorted(os.listdir(path)):
        st = os.stat(path / name, follow_symlinks=False)
        content = hashlib.sha256((path / name).read_bytes()).hexdigest()
        out[name] = f"{content} {st.st_size} {st.st_mtime_ns} {st.st_mode:o}"
    return out


def test_reading_changes_nothing_not_even_leftovers(chain: Model, rdir: Path) -> None:
    """A dirty directory with a crash leftover: Replica.open would remove the leftover and
    rewrite volume.meta; the reader leaves every byte as it was."""
    chain.replica.abandon()
    (rdir / "volume.meta.tmp").write_bytes(b"half-written")
    before = digest(rdir)
    for name in ("s1", "s2", "s3"):
        for through in (False, True):
            with open_snapshot_reader(rdir, name, through_chain=through) as reader:
                reader.read(0, reader.size)
                reader.extents()
                reader.check()
    for snapshot in ("../x", "nope", "volume-head-003.img"):
        with pytest.raises((InvalidArgumentError, NotFoundError)):
            opened(rdir, snapshot, through_chain=True)
    assert digest(rdir) == before
    assert (rdir / "volume.meta.tmp").exists()


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("../x", InvalidArgumentError, r"replica directory .*: invalid snapshot name '\.\./x'"),
        ("a/b", InvalidArgumentError, "snapshot name"),
        ("", InvalidArgumentError, "snapshot name"),
        ("volume-snap-../x.img", InvalidArgumentError, "snapshot name"),
        ("volume-head-003.img", InvalidArgumentError, "is the volume head"),
        ("nope", NotFoundError, r"volume-snap-nope\.img: replica .* has no snapshot nope"),
        ("volume-snap-nope.img", NotFoundError, "has no snapshot nope"),
    ],
)
def test_refuses_bad_and_unknown_names(
    chain: Model, rdir: Path, name: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        opened(rdir, name, through_chain=False)


def test_refuses_damaged_metadata_naming_the_file(chain: Model, rdir: Path) -> None:
    chain.replica.close()
    meta = rdir / "volume-snap-s1.img.meta"
    meta.write_bytes(meta.read_bytes().replace(b'"Removed":false', b'"Removed":0'))
    with pytest.raises(CorruptMetadataError, match=r"volume-snap-s1\.img\.meta: field Removed"):
        opened(rdir, "s3", through_chain=False)
    meta.unlink()
    with pytest.raises(CorruptMetadataError, match=r"volume-snap-s1\.img: the snapshot has no"):
        opened(rdir, "s3", through_chain=True)
    with pytest.raises(NotFoundError, match="does not exist"):
        opened(rdir / "missing", "s1", through_chain=True)


def test_refuses_a_replica_being_rebuilt(chain: Model, rdir: Path) -> None:
    chain.replica.set_rebuilding(True)
    with pytest.raises(ConflictError, match=r"volume\.meta: the replica is being rebuilt"):
        opened(rdir, "s1", through_chain=True)


def test_beside_a_running_replica(chain: Model, rdir: Path) -> None:
    """The replica keeps its directory open (and locked) and keeps working: snapshots, writes
    and a purge of another snapshot leave the reader's bytes and its check alone; marking the
    snapshot removed, or a rebuild, makes the check fail."""
    replica = chain.replica
    extents, data = chain.expected("s1", through_chain=True)
    with open_snapshot_reader(rdir, "s1", through_chain=True) as reader:
        replica.write(0, fill(9, 2 * BLOCK))
        replica.snapshot("s4")
        replica.mark_removed("s3")
        replica.purge()  # s4 is coalesced into s3, which takes its name
        assert reader.read(0, reader.size) == data
        assert reader.extents() == extents
        reader.check()
        replica.mark_removed("s1")
        with pytest.raises(ConflictError, match=r"s1 .* was marked removed while it was read"):
            reader.check()
    with open_snapshot_reader(rdir, "s2", through_chain=False) as reader:
        replica.set_rebuilding(True)
        with pytest.raises(ConflictError, match="started a rebuild"):
            reader.check()
        replica.set_rebuilding(False)
        reader.check()
    with pytest.raises(ShuttingDownError, match="closed"):
        reader.read(0, BLOCK)


def test_check_sees_a_snapshot_file_that_changed(chain: Model, rdir: Path) -> None:
    with open_snapshot_reader(rdir, "s2", through_chain=True) as reader:
        reader.check()
        os.truncate(rdir / "volume-snap-s1.img", SIZE)  # behind lhtrio's back: ctime changes
        with pytest.raises(ConflictError, match=r"volume-snap-s1\.img changed"):
            reader.check()


def test_the_same_through_a_reopened_replica(chain: Model, rdir: Path) -> None:
    """The reader's view of the newest snapshot is what the replica reads after a revert to it."""
    replica = chain.replica
    replica.revert("s3")
    with open_snapshot_reader(rdir, "s3", through_chain=True) as reader:
        assert reader.read(0, reader.size) == replica.read(0, replica.size)
    replica.close()
    with open_replica(rdir) as again:
        assert again.read(0, again.size) == chain.expected("s3", through_chain=True)[1]
