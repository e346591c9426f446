"""Files stay sparse: writes allocate only what they touch, unmap and prune give space back."""

from __future__ import annotations

import os
from pathlib import Path

from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, data_blocks, fill, open_replica

MIB = 1 << 20


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_writes_allocate_only_their_blocks(tmp_path: Path) -> None:
    rdir = tmp_path / "r"
    with Replica.create(str(rdir), size=16 * MIB, volume=VOLUME, instance=INSTANCE) as r:
        head = rdir / "volume-head-000.img"
        assert os.stat(head).st_size == 16 * MIB
        assert allocated(head) == 0
        r.write(0, fill(1, BLOCK))
        r.write(10 * MIB, fill(2, 2 * BLOCK))
        r.write(12 * MIB + 100, b"x")  # read-modify-write of one whole block
        r.flush()
        assert data_blocks(head) == {0, 2560, 2561, 3072}
        assert allocated(head) == 4 * BLOCK
        fd = os.open(head, os.O_RDONLY)
        try:
            assert os.lseek(fd, 0, os.SEEK_HOLE) == BLOCK
            assert os.lseek(fd, BLOCK, os.SEEK_DATA) == 10 * MIB
        finally:
            os.close(fd)
        # Reading holes allocates nothing.
        assert r.read(0, 16 * MIB).count(0) == 16 * MIB - 2 * BLOCK - BLOCK - 1
        assert allocated(head) == 4 * BLOCK


def test_unmap_punches_holes_and_reports_freed_bytes(tmp_path: Path) -> None:
    rdir = tmp_path / "r"
    with Replica.create(str(rdir), size=MIB, volume=VOLUME, instance=INSTANCE) as r:
        head = rdir / "volume-head-000.img"
        r.write(0, fill(1, 8 * BLOCK))
        assert r.unmap(0, 100) == 0  # under 4 KiB: ignored
        assert r.unmap(100, BLOCK) == 0  # shrinks to nothing
        assert r.unmap(100, 3 * BLOCK) == 2 * BLOCK  # shrinks to blocks 1 and 2
        assert data_blocks(head) == {0, 3, 4, 5, 6, 7}
        assert r.read(BLOCK, 2 * BLOCK) == bytes(2 * BLOCK)
        assert r.read(0, BLOCK) == fill(1, BLOCK)
        assert r.unmap(4 * BLOCK, 4 * BLOCK) == 4 * BLOCK
        assert data_blocks(head) == {0, 3}
        assert allocated(head) == 2 * BLOCK
        assert r.unmap(0, MIB) == 2 * BLOCK
        assert allocated(head) == 0
        assert r.read(0, MIB) == bytes(MIB)


def test_unmap_reaches_removed_ancestors_only(tmp_path: Path) -> None:
    rdir = tmp_path / "r"
    with Replica.create(str(rdir), size=MIB, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, 4 * BLOCK))
        r.snapshot("kept")
        r.write(0, fill(2, 4 * BLOCK))
        r.snapshot("gone")
        r.write(0, fill(3, 2 * BLOCK))
        r.mark_removed("gone")
        freed = r.unmap(0, 4 * BLOCK)
        assert freed == 2 * BLOCK + 4 * BLOCK  # the head and the removed snapshot
        assert data_blocks(rdir / "volume-head-002.img") == set()
        assert data_blocks(rdir / "volume-snap-gone.img") == set()
        assert data_blocks(rdir / "volume-snap-kept.img") == {0, 1, 2, 3}
        # The trimmed blocks now read what lies below the trimmed layers.
        assert r.read(0, 4 * BLOCK) == fill(1, 4 * BLOCK)


def test_unmap_stops_at_a_fork(tmp_path: Path) -> None:
    rdir = tmp_path / "r"
    with Replica.create(str(rdir), size=MIB, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, BLOCK))
        r.snapshot("base")
        r.write(0, fill(2, BLOCK))
        r.snapshot("old")
        r.revert("base")  # base now has two children: old and the head
        r.mark_removed("base")
        r.write(0, fill(3, BLOCK))
        assert r.unmap(0, BLOCK) == BLOCK  # only the head
        assert data_blocks(rdir / "volume-snap-base.img") == {0}
        assert r.read(0, BLOCK) == fill(1, BLOCK)


def test_prune_and_coalesce_keep_files_sparse(tmp_path: Path) -> None:
    rdir = tmp_path / "r"
    with Replica.create(str(rdir), size=4 * MIB, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, 2 * BLOCK))
        r.snapshot("a")
        r.write(MIB, fill(2, BLOCK))
        r.snapshot("b")
        r.write(0, fill(3, BLOCK))
        r.write(3 * MIB, fill(4, BLOCK))
        r.mark_removed("a")
        r.mark_removed("b")
        view = r.read(0, 4 * MIB)
        r.purge()
        # a coalesced into b's name: {0, 1, 256}; then pruned where the head has data: {0}.
        assert data_blocks(rdir / "volume-snap-b.img") == {1, 256}
        assert allocated(rdir / "volume-snap-b.img") == 2 * BLOCK
        assert r.read(0, 4 * MIB) == view
    with open_replica(rdir) as again:
        assert again.read(0, 4 * MIB) == view


def test_expansion_leaves_old_layers_short(tmp_path: Path) -> None:
    rdir = tmp_path / "r"
    with Replica.create(str(rdir), size=MIB, volume=VOLUME, instance=INSTANCE) as r:
        r.write(MIB - BLOCK, fill(1, BLOCK))
        r.expand(2 * MIB)
        r.write(2 * MIB - BLOCK, fill(2, BLOCK))
        assert os.stat(rdir / f"volume-snap-expand-{2 * MIB}.img").st_size == MIB
        assert data_blocks(rdir / "volume-head-001.img") == {511}
        assert r.read(MIB - BLOCK, MIB + BLOCK) == fill(1, BLOCK) + bytes(MIB - BLOCK) + fill(
            2, BLOCK
        )
