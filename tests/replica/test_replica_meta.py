from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError
from lhtrio.models.replica import Checksum
from lhtrio.replica import fs
from lhtrio.replica import meta as m
from lhtrio.replica.meta import DiskMeta, ReplicaIdentity, VolumeMeta

WHEN = dt.datetime(2026, 11, 22, 10, 0, 0, tzinfo=dt.UTC)


def test_volume_meta_uses_longhorn_keys() -> None:
    value = VolumeMeta(size=4096, head="volume-head-001.img", dirty=True, rebuilding=False)
    raw = json.loads(m.dumps(value))
    assert list(raw) == [
        "Size",
        "Head",
        "Dirty",
        "Rebuilding",
        "Error",
        "Parent",
        "SectorSize",
        "BackingFilePath",
    ]
    assert raw["SectorSize"] == 512
    assert m.loads(m.dumps(value), VolumeMeta, where="x") == value


def test_disk_meta_uses_longhorn_keys_and_rfc3339() -> None:
    value = DiskMeta(
        name="volume-snap-a.img",
        parent="",
        removed=False,
        user_created=True,
        created=WHEN,
        labels={"k": "v"},
    )
    data = m.dumps(value)
    assert data == (
        b'{"Name":"volume-snap-a.img","Parent":"","Removed":false,"UserCreated":true,'
        b'"Created":"2026-11-22T10:00:00Z","Labels":{"k":"v"}}'
    )
    assert m.loads(data, DiskMeta, where="x") == value
    no_labels = DiskMeta(name="volume-head-000.img", parent="", created=WHEN)
    assert b'"Labels":null' in m.dumps(no_labels)
    assert m.loads(m.dumps(no_labels), DiskMeta, where="x") == no_labels


def test_times_are_utc_with_second_precision() -> None:
    local = dt.datetime(2026, 11, 22, 12, 0, 0, 999, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert m.format_time(local) == "2026-11-22T10:00:00Z"
    assert m.parse_time("2026-11-22T12:00:00+02:00") == WHEN
    with pytest.raises(InvalidArgumentError, match="time zone"):
        m.parse_time("2026-11-22T10:00:00")
    with pytest.raises(InvalidArgumentError, match="time zone"):
        m.format_time(dt.datetime(2026, 1, 1))
    assert m.utc_now().microsecond == 0


def test_years_before_1000_are_written_with_four_digits() -> None:
    """``strftime("%Y")`` writes year 999 as ``999``, which no RFC 3339 reader takes back."""
    early = m.parse_time("0999-06-01T00:00:00Z")
    assert m.format_time(early) == "0999-06-01T00:00:00Z"
    value = DiskMeta(name="volume-snap-a.img", parent="", created=early)
    assert b'"Created":"0999-06-01T00:00:00Z"' in m.dumps(value)
    assert m.loads(m.dumps(value), DiskMeta, where="x") == value


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00", "noon", "2026-11-22"]
)
def test_times_that_cannot_be_written_back_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        m.parse_time(text)
    raw = {"Name": "a", "Parent": "", "Removed": False, "UserCreated": True}
    data = json.dumps({**raw, "Created": text, "Labels": None}).encode()
    with pytest.raises(CorruptMetadataError, match="field Created"):
        m.loads(data, DiskMeta, where="x")


def test_disk_size_is_optional_on_load_and_omitted_when_unknown() -> None:
    """``Size`` is lhtrio's own key: files written before it existed lack it."""
    legacy = DiskMeta(name="volume-snap-a.img", parent="", created=WHEN)
    assert b"Size" not in m.dumps(legacy)
    assert m.loads(m.dumps(legacy), DiskMeta, where="x").size is None
    sized = DiskMeta(name="volume-snap-a.img", parent="", created=WHEN, size=8192)
    assert json.loads(m.dumps(sized))["Size"] == 8192
    assert m.loads(m.dumps(sized), DiskMeta, where="x") == sized
    with pytest.raises(CorruptMetadataError, match="field Size"):
        m.loads(m.dumps(sized).replace(b"8192", b'"8192"'), DiskMeta, where="x")


def test_identity_record_round_trip() -> None:
    value = ReplicaIdentity(volume="vol1", instance="r1")
    assert json.loads(m.dumps(value)) == {"volume": "vol1", "instance": "r1"}
    assert m.loads(m.dumps(value), ReplicaIdentity, where="x") == value
    with pytest.raises(CorruptMetadataError, match="missing field"):
        m.loads(b'{"volume": "vol1"}', ReplicaIdentity, where="x")


def test_checksum_info_round_trip() -> None:
    value = Checksum(method="blake2b-256", checksum="ab", change_time=123, last_hashed_at=WHEN)
    raw = json.loads(m.dumps(value))
    assert raw == {
        "method": "blake2b-256",
        "checksum": "ab",
        "change_time": 123,
        "last_hashed_at": "2026-11-22T10:00:00Z",
        "silently_corrupted": False,
    }
    assert m.loads(m.dumps(value), Checksum, where="x") == value


_GOOD = {
    "Size": 4096,
    "Head": "volume-head-000.img",
    "Dirty": False,
    "Rebuilding": False,
    "Error": "",
    "Parent": "",
    "SectorSize": 512,
    "BackingFilePath": "",
}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "it is empty"),
        (b"   \n", "it is empty"),
        (b'{"Size": 4096, "Head"', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (json.dumps({**_GOOD, "Size": "4096"}).encode(), "expected an integer"),
        (json.dumps({**_GOOD, "Size": 4096.0}).encode(), "expected an integer"),
        (json.dumps({**_GOOD, "Size": True}).encode(), "expected an integer"),
        (json.dumps({**_GOOD, "Dirty": 1}).encode(), "expected true or false"),
        (json.dumps({**_GOOD, "Head": None}).encode(), "expected a string"),
        (json.dumps({k: v for k, v in _GOOD.items() if k != "Head"}).encode(), "missing field"),
        (json.dumps({**_GOOD, "Encrypted": False}).encode(), "unexpected field(s) Encrypted"),
        (json.dumps(_GOOD).encode()[:-1] + b',"Size":1}', "appears twice"),
        (json.dumps(_GOOD).replace("4096", "NaN").encode(), "not valid JSON"),
    ],
)
def test_strict_volume_meta_loads(data: bytes, problem: str) -> None:
    with pytest.raises(CorruptMetadataError) as info:
        m.loads(data, VolumeMeta, where="/r/volume.meta")
    assert str(info.value).startswith("/r/volume.meta: ")
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"Created": "yesterday"}, "Created"),
        ({"Created": "2026-11-22T10:00:00"}, "Created"),
        ({"Created": 1}, "Created"),
        ({"Labels": ["a"]}, "Labels"),
        ({"Labels": {"a": 1}}, "Labels"),
        ({"Removed": "false"}, "Removed"),
    ],
)
def test_strict_disk_meta_loads(change: dict[str, object], problem: str) -> None:
    good = json.loads(
        m.dumps(DiskMeta(name="volume-snap-a.img", parent="", created=WHEN, labels={"x": "y"}))
    )
    with pytest.raises(CorruptMetadataError, match=problem) as info:
        m.loads(json.dumps({**good, **change}).encode(), DiskMeta, where="/r/a.meta")
    assert "/r/a.meta" in str(info.value)


def test_load_missing_and_oversized(tmp_path: Path) -> None:
    dir_fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(CorruptMetadataError, match="missing"):
            m.load(dir_fd, "volume.meta", VolumeMeta, where="volume.meta")
        (tmp_path / "volume.meta").write_bytes(b" " * (2 << 20))
        with pytest.raises(CorruptMetadataError, match="larger than"):
            m.load(dir_fd, "volume.meta", VolumeMeta, where="volume.meta")
    finally:
        os.close(dir_fd)


def test_counter_encoding() -> None:
    data = m.encode_counter(42)
    assert len(data) == 4096
    assert data.startswith(b"42\0")
    assert data.rstrip(b"\0") == b"42"
    assert m.decode_counter(data, where="c") == 42
    assert m.decode_counter(m.encode_counter(0), where="c") == 0
    for out_of_range in (-1, m.MAX_COUNTER + 1):
        with pytest.raises(ValueError, match="between 0 and"):
            m.encode_counter(out_of_range)
    for bad, problem in [
        (b"42", "2 bytes long"),
        (b"\0" * 4096, "digits"),
        (b"4x".ljust(4096, b"\0"), "digits"),
        (b"-1".ljust(4096, b"\0"), "digits"),
        (b"1\x002".ljust(4096, b"\0"), "digits"),
        ("٣".encode().ljust(4096, b"\0"), "digits"),
        (str(2**63).encode().ljust(4096, b"\0"), "larger than"),
        (b"9" * 4096, "larger than"),
    ]:
        with pytest.raises(CorruptMetadataError, match=problem):
            m.decode_counter(bad, where="c")


@given(st.integers(0, m.MAX_COUNTER))
def test_counter_round_trip(value: int) -> None:
    assert m.decode_counter(m.encode_counter(value), where="c") == value


def test_write_atomic_replaces_and_leaves_no_tmp(tmp_path: Path) -> None:
    dir_fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fs.write_atomic(dir_fd, "f", b"one")
        fs.write_atomic(dir_fd, "f", b"two")
        assert (tmp_path / "f").read_bytes() == b"two"
        assert os.listdir(tmp_path) == ["f"]
        m.store_counter(dir_fd, "revision.counter", 7)
        assert m.load_counter(dir_fd, "revision.counter", where="c") == 7
    finally:
        os.close(dir_fd)


def test_write_atomic_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dir_fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fs.write_atomic(dir_fd, "f", b"old")

        def broken_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="Input/output"):
            fs.write_atomic(dir_fd, "f", b"new")
        monkeypatch.undo()
        assert (tmp_path / "f").read_bytes() == b"old"
        assert os.listdir(tmp_path) == ["f"]
    finally:
        os.close(dir_fd)
