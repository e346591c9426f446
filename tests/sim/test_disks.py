"""The simulator's volatile disks (:mod:`lhtrio.sim.disks`): after a power loss a directory holds
the names its last directory sync saw, each with its file's content as of that file's last sync;
everything else is gone."""

from __future__ import annotations

import os
from pathlib import Path

from lhtrio.sim.disks import volatile_disks


def write(path: Path, data: bytes, offset: int = 0, *, sync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, offset)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_only_synced_content_under_synced_names_survives(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with volatile_disks([str(disk)], str(tmp_path / "shadow")) as disks:
        write(disk / "kept", b"A" * 4096, sync=True)
        write(disk / "unnamed", b"B" * 4096, sync=True)  # its name never synced below
        sync_dir(disk)
        write(disk / "unnamed", b"B" * 4096, sync=True)
        os.rename(disk / "unnamed", disk / "renamed")  # not synced: undone
        write(disk / "kept", b"C" * 4096, 4096)  # not synced: lost
        write(disk / "empty", b"D" * 10, sync=False)
        sync_dir(disk)  # "empty" has a durable name, never its content
        write(disk / "later", b"E", sync=True)  # its name never synced
        disks.power_loss(str(disk))
    assert sorted(os.listdir(disk)) == ["empty", "kept", "renamed"]
    assert (disk / "kept").read_bytes() == b"A" * 4096
    assert (disk / "renamed").read_bytes() == b"B" * 4096
    assert (disk / "empty").read_bytes() == b""


def test_a_rename_is_durable_once_its_directory_is_synced(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with volatile_disks([str(disk)], str(tmp_path / "shadow")) as disks:
        write(disk / "meta", b"old", sync=True)
        sync_dir(disk)
        write(disk / "meta.tmp", b"new", sync=True)
        os.rename(disk / "meta.tmp", disk / "meta")
        disks.power_loss(str(disk))
        assert (disk / "meta").read_bytes() == b"old"  # the rename was not synced
        write(disk / "meta.tmp", b"new", sync=True)
        os.rename(disk / "meta.tmp", disk / "meta")
        sync_dir(disk)
        disks.power_loss(str(disk))
    assert os.listdir(disk) == ["meta"]
    assert (disk / "meta").read_bytes() == b"new"


def test_links_stay_one_file_and_holes_stay_holes(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    size = 8 << 20
    with volatile_disks([str(disk)], str(tmp_path / "shadow")) as disks:
        fd = os.open(disk / "head.img", os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, size)
        os.pwrite(fd, b"x" * 4096, 4 << 20)
        os.fsync(fd)
        os.close(fd)
        os.link(disk / "head.img", disk / "snap.img")
        sync_dir(disk)
        disks.power_loss(str(disk))
        assert disks.durable_names(str(disk))["head.img"] == (disk / "snap.img").stat().st_ino
        write(disk / "head.img", b"y" * 4096, 0, sync=True)  # after the loss: tracked anew
        disks.power_loss(str(disk))
    head = disk / "head.img"
    assert head.stat().st_ino == (disk / "snap.img").stat().st_ino
    assert head.stat().st_size == size
    assert head.stat().st_blocks * 512 <= 64 << 10  # two 4 KiB blocks, not 8 MiB
    data = head.read_bytes()
    assert data[:4096] == b"y" * 4096
    assert data[4 << 20 : (4 << 20) + 4096] == b"x" * 4096


def test_other_directories_are_left_alone_and_the_calls_restored(tmp_path: Path) -> None:
    disk, other = tmp_path / "disk", tmp_path / "other"
    disk.mkdir()
    other.mkdir()
    calls = os.fsync, os.fdatasync
    with volatile_disks([str(disk)], str(tmp_path / "shadow")) as disks:
        write(other / "file", b"kept", sync=True)
        assert disks.synced == 0
        write(disk / "file", b"gone")
        disks.power_loss(str(disk))
    assert (os.fsync, os.fdatasync) == calls
    assert os.listdir(disk) == []
    assert (other / "file").read_bytes() == b"kept"
