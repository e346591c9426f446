"""The write-intent map (lhtrio.replica.intent): durable marks, generations, clearing, format."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhtrio.errors import CorruptMetadataError, StorageError
from lhtrio.replica.intent import HEADER, REGION, WriteIntent

NAME = "volume.intent"
SIZE = 10 * REGION + 4096  # the last region is partial


@pytest.fixture
def dir_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _on_disk(path: Path) -> bytes:
    return (path / NAME).read_bytes()[HEADER:]


def test_a_new_map_marks_nothing_and_a_missing_one_marks_everything(
    tmp_path: Path, dir_fd: int
) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    fresh = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    assert fresh.runs() == []
    assert _on_disk(tmp_path) == bytes(11)
    fresh.close()
    os.unlink(tmp_path / NAME)
    legacy = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    assert legacy.runs() == [(0, 11 * REGION)]
    assert _on_disk(tmp_path) == b"\x01" * 11  # recorded at once: a crash keeps it
    legacy.close()


def test_a_write_marks_its_regions_durably_before_returning(tmp_path: Path, dir_fd: int) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    intent = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    intent.note(REGION - 4096, 8192)  # across the boundary of regions 0 and 1
    intent.note(5 * REGION, 1)
    assert intent.runs() == [(0, 2 * REGION), (5 * REGION, REGION)]
    assert _on_disk(tmp_path) == b"\x01\x01\x00\x00\x00\x01" + bytes(5)
    intent.close()


def test_clearing_keeps_what_was_written_in_the_last_two_generations(dir_fd: int) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    intent = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    intent.note(0, 4096)  # generation 1
    intent.rotate()
    intent.note(REGION, 4096)  # generation 2
    assert intent.clear() == 2  # both written within the last two generations
    intent.rotate()
    assert intent.clear() == 1  # region 0 was last written two rotations ago
    assert intent.runs() == [(REGION, REGION)]
    intent.rotate()
    assert intent.clear() == 0
    intent.note(0, 4096)
    assert intent.clear(everything=True) == 0
    assert intent.runs() == []
    intent.close()


def test_a_region_written_after_a_rotation_is_never_cleared_by_that_sweep(dir_fd: int) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    intent = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    intent.note(3 * REGION, 4096)
    intent.rotate()
    intent.rotate()
    intent.note(3 * REGION, 4096)  # written again after the sweep's rotation
    assert intent.clear() == 1
    assert intent.runs() == [(3 * REGION, REGION)]
    intent.close()


def test_the_map_grows_with_the_volume_and_reopens(tmp_path: Path, dir_fd: int) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    intent = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    intent.note(0, 1)
    intent.resize(20 * REGION)
    intent.note(19 * REGION, 1)
    intent.close()
    again = WriteIntent.open(dir_fd, NAME, 20 * REGION, where=NAME)
    assert again.runs() == [(0, REGION), (19 * REGION, REGION)]
    again.close()
    # An expansion that committed before the map grew: the new regions are unmarked.
    bigger = WriteIntent.open(dir_fd, NAME, 30 * REGION, where=NAME)
    assert bigger.runs() == [(0, REGION), (19 * REGION, REGION)]
    bigger.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"not a map" + data[9:],
        lambda data: data[:HEADER] + b"\x02" + data[HEADER + 1 :],
        lambda data: data + b"\x00",
        lambda data: data.replace(b"region=4194304", b"region=1048576"),
        lambda data: data[: HEADER - 1],
    ],
    ids=["bad-header", "bad-byte", "too-long", "other-region-size", "truncated"],
)
def test_a_damaged_map_is_refused_by_name_and_left_alone(
    tmp_path: Path, dir_fd: int, damage: object
) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    path = tmp_path / NAME
    broken = damage(path.read_bytes())  # type: ignore[operator]
    path.write_bytes(broken)
    with pytest.raises(CorruptMetadataError, match=r"volume\.intent.*remove it|region size"):
        WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)
    assert path.read_bytes() == broken


def test_a_mark_that_cannot_be_made_durable_fails_for_good(
    dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    WriteIntent.create(dir_fd, NAME, SIZE, where=NAME)
    intent = WriteIntent.open(dir_fd, NAME, SIZE, where=NAME)

    def broken_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("lhtrio.replica.intent.os.fdatasync", broken_sync)
    with pytest.raises(StorageError, match=r"write intent.*must be rebuilt"):
        intent.note(0, 4096)
    monkeypatch.undo()
    with pytest.raises(StorageError, match="must be rebuilt"):
        intent.note(REGION, 4096)  # sticky: the earlier mark may not be durable
    intent.close()


# -- the map inside a replica ----------------------------------------------------------------------


def test_a_replica_marks_what_it_writes_unmaps_and_zeroes_and_keeps_it_across_a_crash(
    tmp_path: Path,
) -> None:
    from lhtrio.replica.store import Replica

    path = str(tmp_path / "r")
    r = Replica.create(path, size=SIZE, volume="vol", instance="r")
    assert r.intent_runs() == []
    r.write(5, b"x")  # unaligned
    r.unmap(3 * REGION, REGION)
    r.zero(7 * REGION + 4096, 8192)
    assert r.intent_runs() == [(0, REGION), (3 * REGION, REGION), (7 * REGION, REGION)]
    r.abandon()  # killed: no clean close
    again = Replica.open(path, volume="vol", instance="r")
    assert again.intent_runs() == [(0, REGION), (3 * REGION, REGION), (7 * REGION, REGION)]
    again.intent_rotate()
    again.write(3 * REGION, b"y" * 4096)
    again.intent_rotate()
    assert again.intent_clear() == 1  # only region 3 was written within two generations
    assert again.intent_runs() == [(3 * REGION, REGION)]
    again.expand(SIZE + 2 * REGION)
    again.write(SIZE + REGION, b"z" * 4096)
    assert again.intent_runs() == [(3 * REGION, REGION), (11 * REGION, REGION)]
    assert again.intent_clear(everything=True) == 0
    again.close()


def test_a_replica_directory_without_a_map_marks_everything(tmp_path: Path) -> None:
    from lhtrio.replica.store import Replica

    path = tmp_path / "r"
    Replica.create(str(path), size=SIZE, volume="vol", instance="r").close()
    os.unlink(path / NAME)  # as written before the map existed
    r = Replica.open(str(path), volume="vol", instance="r")
    assert r.intent_runs() == [(0, 11 * REGION)]
    r.close()


def test_a_replica_with_a_damaged_map_does_not_open_and_is_left_alone(tmp_path: Path) -> None:
    from lhtrio.replica.store import Replica
    from tests.replica.replica_helpers import tree

    path = tmp_path / "r"
    Replica.create(str(path), size=SIZE, volume="vol", instance="r").close()
    (path / NAME).write_bytes(b"garbage")
    before = tree(path)
    with pytest.raises(CorruptMetadataError, match=r"volume\.intent: not an lhtrio write-intent"):
        Replica.open(str(path), volume="vol", instance="r")
    assert tree(path) == before
