"""A replica on a file system without a journal says so when it starts (lhtrio.replica.mounts)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import trio

from lhtrio.replica.mounts import NO_JOURNAL, file_system_type, mount_type, power_loss_warning
from lhtrio.replica.server import serve_replica
from tests.procs import run

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
31 22 8:2 / /srv/disk\\040one rw,relatime shared:6 - ext2 /dev/sdb1 rw
32 22 8:3 / /srv/disk rw,relatime shared:7 - xfs /dev/sdc1 rw
33 32 8:4 / /srv/disk rw,relatime shared:8 - vfat /dev/sdd1 rw
"""


def test_the_longest_mount_point_over_the_path_gives_the_type() -> None:
    assert mount_type(MOUNTINFO, "/") == "ext4"
    assert mount_type(MOUNTINFO, "/var/lib/lhtrio") == "ext4"
    assert mount_type(MOUNTINFO, "/tmp/x") == "tmpfs"
    assert mount_type(MOUNTINFO, "/tmpx") == "ext4"  # a sibling that shares a prefix
    assert mount_type(MOUNTINFO, "/srv/disk one/replicas/r1") == "ext2"  # an escaped space
    assert mount_type(MOUNTINFO, "/srv/disk/r1") == "vfat"  # the later mount hides the xfs
    assert mount_type(MOUNTINFO, "/srv/disk") == "vfat"
    assert mount_type("", "/x") is None
    assert mount_type("not a mount line\n", "/x") is None


@pytest.mark.real
async def test_the_type_read_from_proc_is_the_one_findmnt_reports(tmp_path: Path) -> None:
    result = await run("findmnt", "-n", "-o", "FSTYPE", "--target", str(tmp_path))
    assert file_system_type(str(tmp_path)) == result.stdout.decode().strip()


def test_only_file_systems_without_a_journal_are_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lhtrio.replica import mounts

    for fstype in ("ext4", "xfs", "btrfs", "tmpfs", None):
        monkeypatch.setattr(mounts, "file_system_type", lambda path, t=fstype: t)
        assert power_loss_warning("/d") is None
    for fstype in sorted(NO_JOURNAL):
        monkeypatch.setattr(mounts, "file_system_type", lambda path, t=fstype: t)
        warning = power_loss_warning("/d")
        assert warning is not None
        assert f"replica directory /d is on {fstype}, a file system without a journal" in warning
        assert "put replicas on ext4 or xfs" in warning


@pytest.mark.real
async def test_a_replica_served_from_an_ext2_mount_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real ext2 file system on a loop device (root): the replica serves, and says why it
    should not be there."""
    image, mountpoint = tmp_path / "ext2.img", tmp_path / "mnt"
    mountpoint.mkdir()
    await run("truncate", "-s", "32M", str(image))
    await run("mkfs.ext2", "-q", "-F", str(image))
    await run("mount", "-o", "loop", str(image), str(mountpoint))
    try:
        caplog.set_level(logging.WARNING, logger="lhtrio.replica.server")
        directory = mountpoint / "r1"
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_replica,
                    str(directory),
                    size=1 << 20,
                    volume="v",
                    instance="r1",
                )
            )
            nursery.cancel_scope.cancel()
    finally:
        await run("umount", str(mountpoint))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"replica directory {directory} is on ext2, a file system without a journal: after a "
        "power loss its files can lose or share blocks, and flushed writes can be lost; put "
        "replicas on ext4 or xfs"
    ]
