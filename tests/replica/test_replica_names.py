from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import snapshot_name_problem
from lhtrio.replica import names
from lhtrio.replica.names import FileKind, classify


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("../x", "'/'"),
        ("a/b", "'/'"),
        ("/abs", "'/'"),
        ("-x", "starts with '-'"),
        ("--force", "starts with '-'"),
        ("a\0b", "control character"),
        ("a\nb", "control character"),
        ("\x7f", "control character"),
        (".", "relative directory"),
        ("..", "relative directory"),
        ("a..b", "'..'"),
        ("x" * 65, "65 characters"),
        ("\U0001f600" * 60, "240 bytes long in UTF-8, the limit is 226"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_hostile_names_are_refused(name: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match="snapshot name") as info:
        names.validate_name(name)
    assert problem in str(info.value)
    with pytest.raises(InvalidArgumentError):
        names.snapshot_file(name)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "é", "a\0b", "x" * 64, "_x"])
def test_volume_and_instance_names_follow_the_models_rules(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid volume name"):
        names.validate_name(name, what="volume")
    with pytest.raises(InvalidArgumentError, match="invalid instance name"):
        names.validate_name(name if len(name) < 64 else "x" * 129, what="instance")
    with pytest.raises(InvalidArgumentError, match="invalid node name"):
        names.validate_name(name if len(name) < 64 else "x" * 129, what="node")


def test_volume_and_instance_names_accepted() -> None:
    assert names.validate_name("vol-1.a_b", what="volume") == "vol-1.a_b"
    assert names.validate_name("x" * 63, what="volume") == "x" * 63
    assert names.validate_name("engine-" + "x" * 121, what="instance") == "engine-" + "x" * 121


def test_the_longest_accepted_name_makes_file_names_the_file_system_takes(tmp_path: Path) -> None:
    """Limits are in bytes of the longest file name made from a snapshot name: 226 bytes of
    name fit ``volume-snap-NAME.img.checksum.tmp`` in 255; one more byte does not."""
    longest = ("\U0001f600" * 56) + "ab"  # 226 bytes in 58 characters
    assert len(longest.encode()) == 226
    disk = names.snapshot_file(longest)
    for name in (names.tmp_file(names.checksum_file(disk)), names.tmp_file(names.meta_file(disk))):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(InvalidArgumentError, match="227 bytes"):
        names.snapshot_file(longest + "c")
    with pytest.raises(OSError, match="too long") as info:  # what the rule prevents
        (tmp_path / ("volume-snap-" + longest + "c.img.checksum.tmp")).write_bytes(b"")
    assert info.value.errno == errno.ENAMETOOLONG
    assert os.listdir(tmp_path)


@pytest.mark.parametrize("name", ["a", "x" * 64, "snap-1", "a.b", ".hidden", "UPPER_case", "é"])
def test_reasonable_names_are_accepted(name: str) -> None:
    assert names.validate_name(name) == name
    assert names.snapshot_file(name) == f"volume-snap-{name}.img"


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="expected a string"):
        names.validate_name(b"abc")  # type: ignore[arg-type]


def test_file_names() -> None:
    assert names.head_file(0) == "volume-head-000.img"
    assert names.head_file(12) == "volume-head-012.img"
    assert names.head_file(1234) == "volume-head-1234.img"
    assert names.head_number("volume-head-007.img") == 7
    assert names.head_number("volume-head-1234.img") == 1234
    assert names.head_number("volume-head-7.img") is None
    assert names.head_number("volume-head-0007.img") is None
    assert names.head_number("volume-snap-a.img") is None
    assert names.meta_file("volume-snap-a.img") == "volume-snap-a.img.meta"
    assert names.checksum_file("volume-snap-a.img") == "volume-snap-a.img.checksum"
    assert names.snapshot_name("volume-snap-a.img") == "a"
    assert names.snapshot_name("volume-snap-.img") is None
    assert names.snapshot_name("volume-snap--x.img") is None
    assert names.disk_file("a") == "volume-snap-a.img"
    assert names.disk_file("volume-snap-a.img") == "volume-snap-a.img"
    assert names.disk_file("volume-head-003.img") == "volume-head-003.img"
    with pytest.raises(InvalidArgumentError):
        names.disk_file("../etc")
    with pytest.raises(InvalidArgumentError):
        names.head_file(-1)


@pytest.mark.parametrize(
    ("filename", "kind", "disk"),
    [
        ("volume.meta", FileKind.VOLUME_META, ""),
        ("revision.counter", FileKind.REVISION_COUNTER, ""),
        ("volume-head-000.img", FileKind.HEAD_IMG, "volume-head-000.img"),
        ("volume-head-000.img.meta", FileKind.HEAD_META, "volume-head-000.img"),
        ("volume-head-000.img.checksum", FileKind.HEAD_CHECKSUM, "volume-head-000.img"),
        ("volume-snap-a.img", FileKind.SNAP_IMG, "volume-snap-a.img"),
        ("volume-snap-a.img.meta", FileKind.SNAP_META, "volume-snap-a.img"),
        ("volume-snap-a.img.checksum", FileKind.SNAP_CHECKSUM, "volume-snap-a.img"),
        ("volume-snap-b.img.img", FileKind.SNAP_IMG, "volume-snap-b.img.img"),
        ("volume-snap-x.meta.img", FileKind.SNAP_IMG, "volume-snap-x.meta.img"),
        ("volume.meta.tmp", FileKind.TMP, ""),
        ("volume-snap-a.img.meta.tmp", FileKind.TMP, "volume-snap-a.img"),
        ("volume-snap-a.img.tmp", FileKind.TMP, "volume-snap-a.img"),
        ("lhtrio-replica.json", FileKind.IDENTITY, ""),
        ("lhtrio-replica.json.tmp", FileKind.TMP, ""),
    ],
)
def test_classify_known(filename: str, kind: FileKind, disk: str) -> None:
    parsed = classify(filename)
    assert parsed is not None
    assert parsed.kind is kind
    assert parsed.disk == disk


@pytest.mark.parametrize(
    "filename",
    [
        "notes.txt",
        "volume.meta.tmp.tmp",
        "foo.tmp",
        "volume-snap-a.meta",
        "volume-snap-.img",
        "volume-snap--a.img",
        "volume-head-1.img",
        "volume-head-abc.img",
        "volume-delta-x.img",
        "volume-snap-a.img.snap_tmp",
        "volume-head-000.img.bak",
        "lost+found",
        "lhtrio-replica.json.bak",
        "volume-snap-a\x01b.img",
    ],
)
def test_classify_unknown(filename: str) -> None:
    assert classify(filename) is None


_names = st.text(min_size=1, max_size=64).filter(lambda n: snapshot_name_problem(n) is None)


@given(_names)
def test_snapshot_file_names_round_trip(name: str) -> None:
    disk = names.snapshot_file(name)
    assert names.snapshot_name(disk) == name
    for filename, kind in [
        (disk, FileKind.SNAP_IMG),
        (names.meta_file(disk), FileKind.SNAP_META),
        (names.checksum_file(disk), FileKind.SNAP_CHECKSUM),
        (names.tmp_file(names.meta_file(disk)), FileKind.TMP),
    ]:
        parsed = classify(filename)
        assert parsed is not None
        assert (parsed.kind, parsed.disk) == (kind, disk)


@given(st.text(max_size=80))
def test_validation_either_accepts_or_raises_the_error(name: str) -> None:
    try:
        names.validate_name(name)
    except InvalidArgumentError:
        return
    assert "/" not in name
    assert all(ord(c) >= 32 and not 0x7F <= ord(c) < 0xA0 for c in name)
    assert ".." not in name
    assert not name.startswith("-")
    assert 0 < len(name) <= 64
    assert len(name.encode()) <= 226
