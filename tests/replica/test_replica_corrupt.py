"""A failed open names the file and the problem, and leaves the directory exactly as it was."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lhtrio.errors import CorruptMetadataError
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, fill, open_replica, tree

SIZE = 16 * BLOCK


def build(rdir: Path) -> None:
    """head-002 → snap b → snap a, with data, cleanly closed; plus a checksum and a tmp."""
    r = Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE)
    r.write(0, fill(1, 2 * BLOCK))
    r.snapshot("a")
    r.write(BLOCK, fill(2, BLOCK))
    r.snapshot("b")
    r.write(3 * BLOCK, fill(3, BLOCK))
    r.checksum("a")
    r.close()


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_bytes())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_key(path: Path, key: str) -> None:
    data = json.loads(path.read_bytes())
    del data[key]
    path.write_text(json.dumps(data))


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


VM = "volume.meta"
HEAD_META = "volume-head-002.img.meta"
A_META = "volume-snap-a.img.meta"
B_META = "volume-snap-b.img.meta"

Case = tuple[str, Callable[[Path], object], str, str]

CASES: list[Case] = [
    ("volume.meta missing", lambda d: (d / VM).unlink(), VM, "missing"),
    ("volume.meta empty", lambda d: (d / VM).write_bytes(b""), VM, "empty"),
    ("volume.meta truncated", lambda d: truncate(d / VM, 30), VM, "not valid JSON"),
    ("volume.meta garbage", lambda d: (d / VM).write_bytes(b"\x00\xff" * 9), VM, "valid JSON"),
    ("volume.meta is a list", lambda d: (d / VM).write_text("[1]"), VM, "JSON object"),
    ("Size as a string", lambda d: edit_json(d / VM, Size="65536"), VM, "field Size"),
    ("Size not aligned", lambda d: edit_json(d / VM, Size=SIZE + 512), VM, "multiple of 4096"),
    ("Size negative", lambda d: edit_json(d / VM, Size=-4096), VM, "positive multiple"),
    (
        "Size differs from head",
        lambda d: edit_json(d / VM, Size=2 * SIZE),
        "volume-head-002.img",
        "bytes",
    ),
    ("SectorSize 4096", lambda d: edit_json(d / VM, SectorSize=4096), VM, "SectorSize"),
    ("Dirty missing", lambda d: drop_key(d / VM, "Dirty"), VM, "missing field(s) Dirty"),
    ("unexpected key", lambda d: edit_json(d / VM, Extra=1), VM, "unexpected field(s) Extra"),
    ("backing file", lambda d: edit_json(d / VM, BackingFilePath="/x"), VM, "backing files"),
    ("Head not a head", lambda d: edit_json(d / VM, Head="../../etc/passwd"), VM, "Head"),
    ("Head file missing", lambda d: edit_json(d / VM, Head="volume-head-003.img"), VM, "missing"),
    ("Parent hostile", lambda d: edit_json(d / VM, Parent="/etc/passwd"), VM, "Parent"),
    ("counter missing", lambda d: (d / "revision.counter").unlink(), "revision.counter", "missing"),
    (
        "counter short",
        lambda d: (d / "revision.counter").write_bytes(b"12"),
        "revision.counter",
        "2 bytes long",
    ),
    (
        "counter garbage",
        lambda d: (d / "revision.counter").write_bytes(b"x" * 4096),
        "revision.counter",
        "digits",
    ),
    ("head meta truncated", lambda d: truncate(d / HEAD_META, 20), HEAD_META, "valid JSON"),
    ("head meta missing", lambda d: (d / HEAD_META).unlink(), HEAD_META, "missing"),
    ("snap meta truncated", lambda d: truncate(d / A_META, 40), A_META, "valid JSON"),
    ("snap meta empty", lambda d: (d / A_META).write_bytes(b""), A_META, "empty"),
    ("Created garbled", lambda d: edit_json(d / A_META, Created="noon"), A_META, "Created"),
    ("Labels wrong", lambda d: edit_json(d / A_META, Labels=[1]), A_META, "Labels"),
    ("Removed wrong", lambda d: edit_json(d / A_META, Removed="no"), A_META, "Removed"),
    (
        "parent missing",
        lambda d: edit_json(d / B_META, Parent="volume-snap-zz.img"),
        B_META,
        "volume-snap-zz.img does not exist",
    ),
    (
        "parent is a head",
        lambda d: edit_json(d / B_META, Parent="volume-head-002.img"),
        B_META,
        "not a snapshot file",
    ),
    (
        "parent is a path",
        lambda d: edit_json(d / B_META, Parent="../x/volume-snap-a.img"),
        B_META,
        "not a snapshot file",
    ),
    (
        "cycle",
        lambda d: edit_json(d / A_META, Parent="volume-snap-b.img"),
        ".img.meta",
        "cycle",
    ),
    ("unknown file", lambda d: (d / "notes.txt").write_text("hi"), "notes.txt", "unknown file"),
    ("unknown tmp", lambda d: (d / "foo.tmp").write_text("hi"), "foo.tmp", "unknown file"),
    ("a directory", lambda d: (d / "volume-snap-z.img").mkdir(), "volume-snap-z.img", "regular"),
    (
        "a symlink",
        lambda d: (d / "volume-snap-z.img").symlink_to("/etc/passwd"),
        "volume-snap-z.img",
        "regular",
    ),
    (
        "img without meta",
        lambda d: (d / "volume-snap-z.img").write_bytes(b""),
        "volume-snap-z.img",
        "has no volume-snap-z.img.meta",
    ),
    (
        "chain img missing",
        lambda d: (d / "volume-snap-a.img").unlink(),
        "volume-snap-a.img",
        "missing",
    ),
    (
        "snapshot too large",
        lambda d: os.truncate(d / "volume-snap-a.img", 2 * SIZE),
        "volume-snap-a.img",
        "larger than the volume",
    ),
    (
        "snapshot truncated",
        lambda d: os.truncate(d / "volume-snap-a.img", 2 * BLOCK),
        "volume-snap-a.img",
        f"is {2 * BLOCK} bytes, but volume-snap-a.img.meta records {SIZE}",
    ),
    (
        "head parent mismatch",
        lambda d: edit_json(d / VM, Parent="volume-snap-a.img"),
        HEAD_META,
        "names volume-snap-a.img as the parent",
    ),
    (
        "stray head",
        lambda d: (d / "volume-head-007.img").write_bytes(b""),
        "volume-head-007.img",
        "unexpected head file",
    ),
]


@pytest.mark.parametrize(("label", "corrupt", "names", "problem"), CASES, ids=[c[0] for c in CASES])
def test_corrupt_open_changes_nothing(
    rdir: Path, label: str, corrupt: Callable[[Path], object], names: str, problem: str
) -> None:
    build(rdir)
    corrupt(rdir)
    before = tree(rdir)
    with pytest.raises(CorruptMetadataError) as info:
        open_replica(rdir)
    message = str(info.value)
    assert str(rdir) in message
    assert names in message
    assert problem in message
    assert tree(rdir) == before


def test_chain_longer_than_250(rdir: Path) -> None:
    build(rdir)
    when = "2026-11-22T10:00:00Z"
    previous = "volume-snap-b.img"
    for i in range(249):  # a, b and the head make 252
        disk = f"volume-snap-x{i}.img"
        (rdir / disk).write_bytes(b"")
        meta = {
            "Name": disk,
            "Parent": previous,
            "Removed": False,
            "UserCreated": True,
            "Created": when,
            "Labels": None,
        }
        (rdir / f"{disk}.meta").write_text(json.dumps(meta))
        previous = disk
    edit_json(rdir / HEAD_META, Parent=previous)
    before = tree(rdir)
    with pytest.raises(CorruptMetadataError, match="more than 250") as info:
        open_replica(rdir)
    assert str(rdir) in str(info.value)
    assert ".img.meta" in str(info.value)
    assert tree(rdir) == before


def test_a_failed_open_leaves_leftovers_in_place(rdir: Path) -> None:
    """Leftovers are only removed once the whole directory validated."""
    build(rdir)
    (rdir / "volume.meta.tmp").write_text("half")
    edit_json(rdir / A_META, Created="noon")
    before = tree(rdir)
    with pytest.raises(CorruptMetadataError):
        open_replica(rdir)
    assert tree(rdir) == before


def test_longhorn_meta_name_is_not_trusted(rdir: Path) -> None:
    """Name is re-derived from the file name (the meta may be a head's hard link)."""
    build(rdir)
    edit_json(rdir / A_META, Name="volume-head-000.img")
    with open_replica(rdir) as r:
        assert "volume-snap-a.img" in r.info().disks


def test_good_directory_opens_and_reads(rdir: Path) -> None:
    build(rdir)
    with open_replica(rdir) as r:
        data = r.read(0, 4 * BLOCK)
        assert data == fill(1, BLOCK) + fill(2, BLOCK) + bytes(BLOCK) + fill(3, BLOCK)
        assert r.revision_counter == 3
