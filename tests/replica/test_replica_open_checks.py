"""What open checks beyond parsing: the head's parent, every layer's size, the directory's owner.

Each refusal names the files and both values, and leaves the directory byte for byte as it was;
each legitimate state (an expansion, a revert before it, a purge after it, a rebuild, the crash
of a forced removal or of a coalesce) still opens.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from lhtrio.errors import (
    ConflictError,
    CorruptMetadataError,
    IdentityMismatchError,
    InvalidArgumentError,
)
from lhtrio.replica import fs
from lhtrio.replica.adopt import PlannedDisk
from lhtrio.replica.server import open_or_create
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, fill, open_replica, tree

MiB = 1 << 20
SIZE = 4 * MiB
VM = "volume.meta"
S1 = "volume-snap-s1.img"
S2 = "volume-snap-s2.img"


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_bytes())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_sizes(rdir: Path) -> None:
    """Make the directory look as one written before lhtrio recorded sizes."""
    for meta in rdir.glob("*.img.meta"):
        data = json.loads(meta.read_bytes())
        data.pop("Size", None)
        meta.write_text(json.dumps(data))


def refused(rdir: Path, *fragments: str) -> str:
    """Open must fail with CorruptMetadataError naming ``fragments``, and change nothing."""
    before = tree(rdir)
    with pytest.raises(CorruptMetadataError) as info:
        open_replica(rdir)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert tree(rdir) == before
    return message


# --- the head's parent ----------------------------------------------------------------------------


def two_snapshots(rdir: Path) -> bytes:
    """s1 <- s2 <- head, with data in each; closed cleanly. Returns what the volume reads."""
    with Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, 2 * BLOCK))
        r.snapshot("s1")
        r.write(BLOCK, fill(2, 2 * BLOCK))
        r.snapshot("s2")
        r.write(3 * BLOCK, fill(3, BLOCK))
        return r.read(0, 4 * BLOCK)


def test_a_head_meta_that_lost_its_parent_is_refused_not_repaired(rdir: Path) -> None:
    """Issue 16 #6: the head's .meta Parent emptied while volume.meta names s2 (not removed)."""
    two_snapshots(rdir)
    edit_json(rdir / "volume-head-002.img.meta", Parent="")
    message = refused(rdir, VM, "volume-head-002.img.meta", S2, "(none)")
    assert "names volume-snap-s2.img as the parent" in message
    assert json.loads((rdir / VM).read_bytes())["Parent"] == S2  # the evidence is kept


def test_volume_meta_naming_another_snapshot_is_refused(rdir: Path) -> None:
    two_snapshots(rdir)
    edit_json(rdir / VM, Parent=S1)
    refused(rdir, VM, "volume-head-002.img.meta", S1, S2)


def test_volume_meta_naming_a_removed_snapshot_of_another_parent_is_refused(rdir: Path) -> None:
    """Marked removed is not enough: its parent must be the head's (the forced removal's state)."""
    two_snapshots(rdir)
    edit_json(rdir / "volume-snap-s1.img.meta", Removed=True)
    edit_json(rdir / VM, Parent=S1)  # s1's parent is "", the head's is s2
    refused(rdir, VM, S1, S2)


class Crash(BaseException):
    pass


def test_a_forced_removal_that_crashed_before_volume_meta_is_completed(
    rdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one legitimate mismatch: the head re-parented, volume.meta not yet written."""
    two_snapshots(rdir)
    r = open_replica(rdir)
    real = fs.write_atomic

    def crash_at_volume_meta(dir_fd: int, name: str, data: bytes) -> None:
        if name == VM:
            raise Crash
        real(dir_fd, name, data)

    with monkeypatch.context() as mp:
        mp.setattr(fs, "write_atomic", crash_at_volume_meta)
        with pytest.raises(Crash):
            r.remove_disk("s2", force=True)
    r.abandon()
    assert json.loads((rdir / VM).read_bytes())["Parent"] == S2
    assert json.loads((rdir / "volume-head-002.img.meta").read_bytes())["Parent"] == S1
    with open_replica(rdir) as again:
        assert again.info().parent == S1
        assert again.is_removed(S2)  # a removed leaf now: the next purge deletes it
    assert json.loads((rdir / VM).read_bytes())["Parent"] == S1


# --- sizes ----------------------------------------------------------------------------------------


def never_expanded(rdir: Path) -> bytes:
    """s1 holds data up to the end of the volume; s2 and the head hold some more."""
    with Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, BLOCK))
        r.write(3 * MiB, fill(2, BLOCK))
        r.write(SIZE - BLOCK, fill(3, BLOCK))
        r.snapshot("s1")
        r.write(BLOCK, fill(4, BLOCK))
        r.snapshot("s2")
        return r.read(0, SIZE)


@pytest.mark.parametrize(
    ("disk", "length"),
    [(S1, 0), (S1, 2 * MiB), (S1, SIZE - BLOCK), (S2, 0), (S2, 2 * MiB)],
    ids=["s1 to 0", "s1 to 2 MiB", "s1 one block less", "s2 to 0", "s2 to 2 MiB"],
)
def test_a_truncated_snapshot_file_is_refused(rdir: Path, disk: str, length: int) -> None:
    """Issue 16 #5: a shorter layer would read as zeros where its data was."""
    never_expanded(rdir)
    os.truncate(rdir / disk, length)
    message = refused(rdir, disk, f"{length} bytes", str(SIZE))
    assert "truncated" in message


def test_a_snapshot_smaller_than_its_child_is_refused_without_recorded_sizes(rdir: Path) -> None:
    """A directory written before sizes were recorded: only "never larger than its child"."""
    never_expanded(rdir)
    drop_sizes(rdir)
    with open_replica(rdir):  # still opens
        pass
    os.truncate(rdir / S2, 2 * MiB)  # now s1 (4 MiB) is larger than its child s2
    refused(rdir, S1, f"larger than its child {S2}", str(2 * MiB))


def test_a_recorded_size_larger_than_the_volume_is_refused(rdir: Path) -> None:
    never_expanded(rdir)
    edit_json(rdir / "volume-snap-s1.img.meta", Size=2 * SIZE)
    refused(rdir, "volume-snap-s1.img.meta", f"Size {2 * SIZE}")


def test_after_an_expansion_older_layers_are_smaller_and_open(rdir: Path) -> None:
    with Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as r:
        r.write(SIZE - BLOCK, fill(1, BLOCK))
        r.snapshot("s1")
        r.expand(2 * SIZE)
        r.write(2 * SIZE - BLOCK, fill(2, BLOCK))
        r.snapshot("s2")
        view = r.read(0, 2 * SIZE)
    assert os.path.getsize(rdir / S1) == SIZE
    assert os.path.getsize(rdir / f"volume-snap-expand-{2 * SIZE}.img") == SIZE
    assert os.path.getsize(rdir / S2) == 2 * SIZE
    with open_replica(rdir) as r:
        assert r.read(0, 2 * SIZE) == view
        r.revert("s1")  # a new head of the current size on top of a smaller snapshot
        revert_view = r.read(0, 2 * SIZE)
    with open_replica(rdir) as r:
        assert r.read(0, 2 * SIZE) == revert_view
    # A truncation of a pre-expansion layer is still found.
    os.truncate(rdir / S1, 2 * MiB)
    refused(rdir, S1, f"{2 * MiB} bytes", f"records {SIZE}")


def test_a_purge_after_an_expansion_leaves_smaller_layers_without_a_marker(rdir: Path) -> None:
    """The expansion snapshot is coalesced into its child: nothing names the growth any more,
    the recorded sizes still say which length each file must have."""
    with Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, BLOCK))
        r.snapshot("s1")
        r.expand(2 * SIZE)
        r.write(SIZE, fill(2, BLOCK))
        r.snapshot("s2")
        r.purge()
        view = r.read(0, 2 * SIZE)
        assert sorted(n for n in r.info().disks if n.startswith("volume-snap-")) == [S1, S2]
    with open_replica(rdir) as r:
        assert r.read(0, 2 * SIZE) == view
    os.truncate(rdir / S2, SIZE)  # as long as s1, but it must be the volume's size
    refused(rdir, S2, f"{SIZE} bytes", f"records {2 * SIZE}")


def test_a_coalesce_that_extended_its_file_and_crashed_opens(
    rdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coalesce extends the removed parent to its child's size, then records it: a crash in
    between leaves a file longer than its .meta says, which open recognises."""
    with Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE) as r:
        r.write(0, fill(1, BLOCK))
        r.expand(2 * SIZE)
        r.write(SIZE, fill(2, BLOCK))
        r.snapshot("s2")
        view = r.read(0, 2 * SIZE)
    expansion = f"volume-snap-expand-{2 * SIZE}.img"
    r = open_replica(rdir)
    r.mark_removed(expansion)
    real = fs.write_atomic

    def crash_at_meta(dir_fd: int, name: str, data: bytes) -> None:
        if name == expansion + ".meta":
            raise Crash
        real(dir_fd, name, data)

    with monkeypatch.context() as mp:
        mp.setattr(fs, "write_atomic", crash_at_meta)
        with pytest.raises(Crash):
            r.coalesce(expansion, S2)
    r.abandon()
    assert os.path.getsize(rdir / expansion) == 2 * SIZE
    assert json.loads((rdir / (expansion + ".meta")).read_bytes())["Size"] == SIZE
    with open_replica(rdir) as again:
        assert again.read(0, 2 * SIZE) == view
        again.purge()
        assert again.read(0, 2 * SIZE) == view
    with open_replica(rdir) as again:
        assert again.read(0, 2 * SIZE) == view


def planned(r: Replica) -> dict[str, PlannedDisk]:
    from lhtrio.replica.meta import DiskMeta

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


def test_a_rebuilt_replica_gets_the_source_sizes_and_opens(tmp_path: Path) -> None:
    source = Replica.create(str(tmp_path / "a"), size=SIZE, volume=VOLUME, instance="a")
    target = Replica.create(str(tmp_path / "b"), size=SIZE, volume=VOLUME, instance="b")
    try:
        source.write(0, fill(1, BLOCK))
        source.snapshot("s1")
        for r in (source, target):
            r.expand(2 * SIZE)
        target.set_rebuilding(True)
        for r in (source, target):
            r.snapshot("rb", user_created=False)
        target.adopt(planned(source))
        for name, disk in planned(source).items():
            assert os.path.getsize(tmp_path / "b" / name) == disk.size, name
        target.set_rebuilding(False)
    finally:
        source.close()
        target.close()
    with Replica.open(str(tmp_path / "b"), volume=VOLUME, instance="b") as again:
        assert again.info().disks[S1].size == SIZE


def test_a_rebuilding_replica_opens_with_sizes_apart_but_cannot_leave_the_rebuild(
    rdir: Path,
) -> None:
    """An adopt that crashed between resizing a file and rewriting its .meta: nothing serves
    from a rebuilding replica, so it opens (a new rebuild fixes it); clearing the flag checks."""
    never_expanded(rdir)
    with open_replica(rdir) as r:
        r.set_rebuilding(True)
    os.truncate(rdir / S1, 2 * MiB)
    with open_replica(rdir) as r:
        with pytest.raises(ConflictError, match="cannot leave the rebuild") as info:
            r.set_rebuilding(False)
        assert S1 in str(info.value)
        assert r.rebuilding
        assert not r.failed
    os.truncate(rdir / S1, SIZE)
    with open_replica(rdir) as r:
        r.set_rebuilding(False)
    with open_replica(rdir) as r:
        assert not r.rebuilding


# --- the directory's owner ------------------------------------------------------------------------


def test_a_directory_of_another_volume_is_refused(rdir: Path) -> None:
    """Issue 16 #13: a directory created for volume ``other`` served as ``vol1``."""
    with Replica.create(str(rdir), size=SIZE, volume="other", instance="r1") as r:
        r.write(0, fill(1, BLOCK))
    before = tree(rdir)
    with pytest.raises(IdentityMismatchError) as info:
        Replica.open(str(rdir), volume="vol1", instance="r1")
    message = str(info.value)
    assert "belongs to volume other" in message
    assert "not to volume vol1" in message
    assert str(rdir) in message
    assert tree(rdir) == before
    with pytest.raises(IdentityMismatchError, match="not to volume vol9"):
        open_or_create(str(rdir), size=SIZE, volume="vol9", instance="r1")
    assert tree(rdir) == before
    with Replica.open(str(rdir), volume="other", instance="r1") as r:
        assert r.read(0, BLOCK) == fill(1, BLOCK)


def test_a_directory_of_another_instance_is_refused(rdir: Path) -> None:
    Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance="r1").close()
    before = tree(rdir)
    with pytest.raises(IdentityMismatchError, match=r"instance r1.*instance r2"):
        Replica.open(str(rdir), volume=VOLUME, instance="r2")
    assert tree(rdir) == before


def test_a_directory_without_a_record_is_adopted_with_a_warning(
    rdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    never_expanded(rdir)
    (rdir / "lhtrio-replica.json").unlink()  # as written before the record existed
    with caplog.at_level(logging.WARNING), open_replica(rdir):
        pass
    assert "had no identity record" in caplog.text
    assert json.loads((rdir / "lhtrio-replica.json").read_bytes()) == {
        "volume": VOLUME,
        "instance": INSTANCE,
    }
    with pytest.raises(IdentityMismatchError):
        Replica.open(str(rdir), volume="someone-else", instance=INSTANCE)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"volume": "v"}', b'{"volume": "../x", "instance": "i"}', b"[]"],
)
def test_a_damaged_identity_record_is_refused(rdir: Path, content: bytes) -> None:
    never_expanded(rdir)
    (rdir / "lhtrio-replica.json").write_bytes(content)
    refused(rdir, "lhtrio-replica.json")


def test_an_identity_record_that_is_a_symlink_is_refused(rdir: Path, tmp_path: Path) -> None:
    never_expanded(rdir)
    elsewhere = tmp_path / "elsewhere.json"
    (rdir / "lhtrio-replica.json").rename(elsewhere)
    (rdir / "lhtrio-replica.json").symlink_to(elsewhere)
    refused(rdir, "lhtrio-replica.json", "not a regular file")


def test_names_are_checked_before_the_directory_is_touched(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="volume name"):
        Replica.create(str(tmp_path / "r"), size=SIZE, volume="", instance=INSTANCE)
    with pytest.raises(InvalidArgumentError, match="instance name"):
        Replica.create(str(tmp_path / "r"), size=SIZE, volume=VOLUME, instance="-x")
    assert not (tmp_path / "r").exists()
