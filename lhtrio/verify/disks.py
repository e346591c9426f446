"""Small loop-mounted file systems under the replicas' directories, to fill on purpose (ENOSPC)
and to fail on purpose (EIO).

The disk is a sparse image served by nbdkit (``file`` plugin) through its ``error`` filter, which
fails every write, flush and trim with EIO while a trigger file exists (``error-file``); nbdfuse
shows the export as a file, and ``mount -o loop`` mounts the ext2 file system made on it (ext2:
no journal, so a write error fails the writes, not the whole file system, and it stays writable
once the disk is back). This stands in for a device-mapper ``error`` target or dm-flakey, which
this kernel does not have.

* :meth:`LoopDisk.fill` fills the file system with a ballast file (``posix_fallocate`` in
  shrinking pieces until nothing is left, ``mkfs -m 0``: no blocks reserved for root, who runs
  the tests): every write into a block the replica's sparse files have not allocated yet fails
  with ENOSPC. :meth:`LoopDisk.free` gives the space back.
* :meth:`LoopDisk.fail` makes the disk fail every write (EIO: a flush then reports it);
  :meth:`LoopDisk.repair` brings it back and checks the file system (``e2fsck -fy``, unmounted:
  the caller stops the replica on it first), as an operator does after a disk error. Linux drops
  the pages whose writeback failed: what the replica wrote during the failure is gone from its
  files, and only its failure (sticky after a failed ``fdatasync``) and rebuild keep that from
  being read back.

Needs root, the loop driver, FUSE, nbdkit and nbdfuse; :func:`loop_disks_available` says whether
this machine has them.

Resource handling: :func:`open_loop_disk` unmounts (lazily if busy), detaches nbdfuse, stops the
nbdkit it started and removes the image it made on exit; it never touches a mount it did not
make.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from lhtrio.errors import LhtrioError
from lhtrio.verify.shell import run_command

__all__ = ["LoopDisk", "loop_disks_available", "open_loop_disk"]


def loop_disks_available() -> bool:
    """Root, the commands, FUSE and a loop device to take."""
    tools = ("truncate", "mount", "umount", "mkfs.ext2", "e2fsck", "losetup", "nbdkit", "nbdfuse")
    return (
        os.geteuid() == 0
        and all(shutil.which(t) for t in tools)
        and Path("/dev/loop-control").exists()
        and Path("/dev/fuse").exists()
    )


class LoopDisk:
    """A mounted file system at ``mountpoint`` on ``device`` (see the module docstring)."""

    def __init__(self, device: Path, mountpoint: Path, trigger: Path) -> None:
        self.device = device
        self.mountpoint = mountpoint
        self.trigger = trigger
        self.ballast = mountpoint / "ballast"
        self.filled = 0

    def fail(self) -> None:
        """Every write, trim and zeroing fails with EIO from now on."""
        self.trigger.touch()

    async def repair(self) -> None:
        """The disk works again; its file system is checked and mounted again (nothing may
        have a file open on it)."""
        self.trigger.unlink(missing_ok=True)
        await _unmount(self.mountpoint)
        result = await trio.run_process(
            ["e2fsck", "-fy", str(self.device)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        if result.returncode >= 4:  # 1 and 2: errors corrected
            raise LhtrioError(f"e2fsck {self.device} exited {result.returncode}")
        await run_command("mount", "-o", "loop", str(self.device), str(self.mountpoint))

    def fill(self) -> int:
        """Take every free block; returns the bytes taken."""
        piece = 1 << 20
        fd = os.open(self.ballast, os.O_RDWR | os.O_CREAT, 0o600)  # (ext2: glibc writes zeros)
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


async def _unmount(mountpoint: Path) -> None:
    try:
        await run_command("umount", str(mountpoint))
    except LhtrioError:
        await run_command("umount", "-l", str(mountpoint))  # still busy: detach it anyway


@asynccontextmanager
async def open_loop_disk(image: Path, mountpoint: Path, size: int) -> AsyncIterator[LoopDisk]:
    """Make an image of ``size`` bytes served by nbdkit with the error filter, an ext2 file
    system on it mounted at ``mountpoint``; undo all of it on exit."""
    if not loop_disks_available():
        raise LhtrioError(
            "loop-mounted disks need root, mkfs.ext2, e2fsck, mount, nbdkit, nbdfuse, "
            "/dev/fuse and /dev/loop-control"
        )
    base = image.with_suffix("")
    sock, pid, fuse = (base.with_name(f"{base.name}.{x}") for x in ("sock", "pid", "fuse"))
    trigger = base.with_name(f"{base.name}.failing")
    await run_command("truncate", "-s", str(size), str(image))
    await trio.Path(mountpoint).mkdir(parents=True, exist_ok=True)
    await trio.Path(fuse).mkdir(exist_ok=True)
    await run_command(
        "nbdkit", "-U", str(sock), "-P", str(pid), "--filter=error", "file", f"file={image}",
        "error=EIO", "error-pwrite-rate=100%", "error-trim-rate=100%",
        "error-zero-rate=100%", f"error-file={trigger}",
    )  # fmt: skip
    log = os.open(base.with_name(f"{base.name}.nbdfuse.log"), os.O_WRONLY | os.O_CREAT, 0o600)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                trio.run_process,
                ["nbdfuse", str(fuse), f"nbd+unix:///?socket={sock}"],
                check=False,
                stdout=log,
                stderr=log,  # (a line for each write failed on purpose)
            )
        )
        device = fuse / "nbd"
        try:
            with trio.fail_after(10):  # nbdfuse says nothing when it serves: look, with a deadline
                while not await trio.Path(device).exists():  # noqa: ASYNC110
                    await trio.sleep(0.01)
        finally:
            os.close(log)  # (nbdfuse has its own copy once it runs)
        try:
            await run_command("mkfs.ext2", "-q", "-F", "-m", "0", str(device))
            await run_command("mount", "-o", "loop", str(device), str(mountpoint))
            yield LoopDisk(device, mountpoint, trigger)
        finally:
            with trio.CancelScope(shield=True):
                trigger.unlink(missing_ok=True)
                await _unmount(mountpoint)
                try:
                    await run_command("fusermount3", "-u", str(fuse))
                except LhtrioError:  # the loop device lets go of it a moment later
                    await run_command("fusermount3", "-u", "-z", str(fuse))
                nursery.cancel_scope.cancel()
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid.read_text()), signal.SIGTERM)
                for path in (image, sock, pid):
                    path.unlink(missing_ok=True)
