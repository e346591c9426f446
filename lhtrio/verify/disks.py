"""Small loop-mounted file systems under the replicas' directories, to fill on purpose (ENOSPC).

``LoopDisk`` makes an ext4 image (``truncate``, ``mkfs.ext4 -m 0``: no blocks reserved for root,
who runs the tests), mounts it with ``mount -o loop`` and, for a fault, fills it with a ballast
file (``posix_fallocate`` in shrinking pieces until nothing is left): from then on every write
into a block the replica's sparse files have not allocated yet fails with ENOSPC. Removing the
ballast frees the space. Needs root and the loop driver; :func:`loop_disks_available` says
whether this machine has them.

Disk I/O errors (a device-mapper ``error`` target, dm-flakey) are not here: this kernel has no
device-mapper (docs/reliability.md, "What is not injected").

Resource handling: :func:`open_loop_disk` unmounts (lazily if busy) and removes the image it made
on exit; it never touches a mount it did not make.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from lhtrio.errors import LhtrioError

__all__ = ["LoopDisk", "loop_disks_available", "open_loop_disk"]


def loop_disks_available() -> bool:
    """Root, the commands, and a loop device to take."""
    tools = ("truncate", "mount", "umount", "mkfs.ext4", "losetup")
    return (
        os.geteuid() == 0
        and all(shutil.which(t) for t in tools)
        and Path("/dev/loop-control").exists()
    )


async def _run(*cmd: str) -> None:
    result = await trio.run_process(
        list(cmd), capture_stdout=True, capture_stderr=True, check=False
    )
    if result.returncode:
        raise LhtrioError(
            f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.decode().strip()}"
        )


class LoopDisk:
    """A mounted ext4 image at ``mountpoint`` (see the module docstring)."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.ballast = mountpoint / "ballast"
        self.filled = 0

    def fill(self) -> int:
        """Take every free block; returns the bytes taken."""
        piece = 1 << 20
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            offset = os.fstat(fd).st_size
            while piece >= 4096:
                try:
                    os.posix_fallocate(fd, offset, piece)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    piece //= 2
                else:
                    offset += piece
            self.filled = offset
        finally:
            os.close(fd)
        return self.filled

    def free(self) -> None:
        """Give the ballast's blocks back."""
        self.ballast.unlink(missing_ok=True)
        self.filled = 0


@asynccontextmanager
async def open_loop_disk(image: Path, mountpoint: Path, size: int) -> AsyncIterator[LoopDisk]:
    """Make an ext4 image of ``size`` bytes, mount it at ``mountpoint``; undo both on exit."""
    if not loop_disks_available():
        raise LhtrioError("loop-mounted disks need root, mkfs.ext4, mount and /dev/loop-control")
    await _run("truncate", "-s", str(size), str(image))
    await trio.Path(mountpoint).mkdir(parents=True, exist_ok=True)
    await _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    await _run("mount", "-o", "loop", str(image), str(mountpoint))
    try:
        yield LoopDisk(image, mountpoint)
    finally:
        with trio.CancelScope(shield=True):
            try:
                await _run("umount", str(mountpoint))
            except LhtrioError:
                await _run("umount", "-l", str(mountpoint))  # still busy: detach it anyway
            await trio.Path(image).unlink(missing_ok=True)
