"""Small loop-mounted file systems under the replicas' directories, to fill on purpose (ENOSPC),
to fail on purpose (EIO) and to lose power under.

The disk is a sparse image served by nbdkit (``file`` plugin) through its ``cache`` filter in
writeback mode (the disk's volatile write cache: a write reaches the image only when a flush asks
for it) and, above that, its ``error`` filter, which fails every write and trim with EIO while a
trigger file exists (``error-file``), and every read while another one does
(``error-pread-file``); nbdfuse shows the export as a file, and ``mount -o loop``
mounts the ext4 file system made on it (4 KiB blocks, a page each, as on the disks replicas run
on). This stands in for a device-mapper ``error`` target, dm-flakey or dm-log-writes, which this
kernel does not have.

ext4, not ext2: ext2 has no journal, and after a power loss files owned each other's blocks (it
frees blocks and reuses them before the freeing is on disk); see docs/reliability.md. ext4 goes
read-only when a journal write fails; the repair after a disk error mounts it again.

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
* :meth:`LoopDisk.fail_reads` makes the disk fail every read (EIO) and drops the clean pages
  the kernel keeps of it (``posix_fadvise(DONTNEED)`` on every file of the file system and on
  nbdfuse's file under the loop device), so that reads reach it; :meth:`LoopDisk.repair` ends
  that too.
* :meth:`LoopDisk.power_cut` is a power loss: nbdkit is SIGKILLed (its cache, and every write no
  flush made durable, with it) and the file system unmounted (its dirty pages fail to write back:
  gone too); :meth:`LoopDisk.power_on` serves the image again, checks the file system and mounts
  it. What survives is what the last flushes made durable, and perhaps more (a flush anyone asks
  for, a ``sync`` included, persists every write the disk had then): a disk's promise exactly.
  The caller kills the processes using the disk first, as the power loss does.

Needs root, the loop driver, FUSE, nbdkit and nbdfuse; :func:`loop_disks_available` says whether
this machine has them.

Resource handling: :func:`open_loop_disk` unmounts (lazily if busy), detaches nbdfuse, stops the
nbdkit it started (by the PID it wrote) and removes the image it made on exit; it never touches a
mount or a process it did not make.
"""

from __future__ import annotations

import contextlib
import errno
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
    tools = ("truncate", "mount", "umount", "mkfs.ext4", "e2fsck", "losetup", "nbdkit", "nbdfuse")
    return (
        os.geteuid() == 0
        and all(shutil.which(t) for t in tools)
        and Path("/dev/loop-control").exists()
        and Path("/dev/fuse").exists()
    )


class LoopDisk:
    """A file system at ``mountpoint`` on ``image`` (see the module docstring); made and
    mounted by :func:`open_loop_disk`."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        base = image.with_suffix("")
        self.image = image
        self.mountpoint = mountpoint
        self.ballast = mountpoint / "ballast"
        self.filled = 0
        self.sock, self.pid, self.fuse, self.cache, self.trigger, self.read_trigger = (
            base.with_name(f"{base.name}.{x}")
            for x in ("sock", "pid", "fuse", "cache", "failing", "failing-reads")
        )
        self.device = self.fuse / "nbd"
        self._log = base.with_name(f"{base.name}.nbdfuse.log")
        self._fsck_log = base.with_name(f"{base.name}.fsck.log")
        self._nbdfuse: trio.Process | None = None

    def fail(self) -> None:
        """Every write, trim and zeroing fails with EIO from now on."""
        self.trigger.touch()

    def fail_reads(self) -> None:
        """Every read fails with EIO from now on; what the page cache holds clean is dropped,
        so that reads reach the disk (dirty pages stay: the kernel reads them from memory)."""
        self.read_trigger.touch()
        for path in [self.device, *self.mountpoint.rglob("*")]:
            with contextlib.suppress(OSError):  # (a file deleted meanwhile, a directory)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    async def repair(self) -> None:
        """The disk works again; its file system is checked and mounted again (nothing may
        have a file open on it)."""
        self.trigger.unlink(missing_ok=True)
        self.read_trigger.unlink(missing_ok=True)
        await _unmount(self.mountpoint)
        await _loop_released(self.device)
        await self._check_and_mount()

    async def power_cut(self) -> None:
        """Lose power: every write no flush made durable is gone (nothing may have a file open
        on the disk: kill its users first)."""
        self._kill_nbdkit()
        await _unmount(self.mountpoint)  # the dirty pages' writeback fails: lost as well
        await _loop_released(self.device)
        await self._detach()

    async def power_on(self) -> None:
        """After :meth:`power_cut`: serve the image again, check the file system, mount it."""
        await self._serve()
        await self._check_and_mount()

    async def _check_and_mount(self) -> None:
        result = await trio.run_process(
            ["e2fsck", "-fy", str(self.device)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        with self._fsck_log.open("ab") as log:  # what it found and mended, for the curious
            log.write(result.stdout + result.stderr + f"exit {result.returncode}\n".encode())
        if result.returncode >= 4:  # 1 and 2: errors corrected
            raise LhtrioError(
                f"e2fsck {self.device} exited {result.returncode}: {result.stdout.decode()}"
            )
        await run_command("mount", "-o", "loop", str(self.device), str(self.mountpoint))

    async def _serve(self) -> None:
        """nbdkit (daemonized; its PID in ``pid``) and nbdfuse, until the device is there."""
        self.sock.unlink(missing_ok=True)  # (a killed nbdkit leaves its socket)
        await trio.Path(self.cache).mkdir(exist_ok=True)
        await trio.Path(self.fuse).mkdir(exist_ok=True)
        await run_command(
            "env", f"TMPDIR={self.cache}",  # where the cache filter keeps its (unlinked) file
            "nbdkit", "-U", str(self.sock), "-P", str(self.pid),
            "--filter=error", "--filter=cache", "file", f"file={self.image}", "cache=writeback",
            "error=EIO", "error-pwrite-rate=100%", "error-trim-rate=100%",
            "error-zero-rate=100%", f"error-file={self.trigger}",
            "error-pread-rate=100%", f"error-pread-file={self.read_trigger}",
        )  # fmt: skip
        with self._log.open("ab") as log:  # (a line for each write failed on purpose)
            self._nbdfuse = await trio.lowlevel.open_process(
                ["nbdfuse", str(self.fuse), f"nbd+unix:///?socket={self.sock}"],
                stdout=log,
                stderr=log,
            )
        with trio.fail_after(10):  # nbdfuse says nothing when it serves: look, with a deadline
            while not await trio.Path(self.device).exists():
                if self._nbdfuse.returncode is not None:
                    raise LhtrioError(f"nbdfuse exited {self._nbdfuse.returncode}: {self._log}")
                await trio.sleep(0.01)

    def _kill_nbdkit(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(self.pid.read_text()), sig)
        self.pid.unlink(missing_ok=True)

    async def _detach(self) -> None:
        """nbdfuse unmounted and reaped (the file system on it unmounted first); nothing if it
        is not running (a power cut without its power-on)."""
        if self._nbdfuse is None:
            return
        try:
            await run_command("fusermount3", "-u", str(self.fuse))
        except LhtrioError:  # the loop device lets go of it a moment later
            await run_command("fusermount3", "-u", "-z", str(self.fuse))
        with trio.move_on_after(10):
            await self._nbdfuse.wait()
        if self._nbdfuse.returncode is None:
            self._nbdfuse.kill()
            await self._nbdfuse.wait()
        self._nbdfuse = None

    def fill(self) -> int:
        """Take every free block; returns the bytes taken."""
        piece = 1 << 20
        fd = os.open(self.ballast, os.O_RDWR | os.O_CREAT, 0o600)
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


async def _loop_released(device: Path, patience: float = 30.0) -> None:
    """Wait until no loop device is attached to ``device`` any more: the file system on it is
    gone, not only unmounted here. Anything else holding it (a mount namespace with a copy of
    the mount, a reference the kernel drops after the process that held it was reaped) would
    keep it alive: e2fsck would check a file system still in use, and the next mount would
    reuse the loop device and find it as it was (read-only after a disk error)."""
    with trio.fail_after(patience):  # the kernel's state: looked at, with a deadline
        while True:
            result = await trio.run_process(
                ["losetup", "-j", str(device)], capture_stdout=True, check=False
            )
            if not result.stdout.strip():
                return
            await trio.sleep(0.05)


@asynccontextmanager
async def open_loop_disk(image: Path, mountpoint: Path, size: int) -> AsyncIterator[LoopDisk]:
    """Make an image of ``size`` bytes served by nbdkit (see the module docstring), an ext4
    file system on it mounted at ``mountpoint``; undo all of it on exit."""
    if not loop_disks_available():
        raise LhtrioError(
            "loop-mounted disks need root, mkfs.ext4, e2fsck, mount, nbdkit, nbdfuse, "
            "/dev/fuse and /dev/loop-control"
        )
    disk = LoopDisk(image, mountpoint)
    await run_command("truncate", "-s", str(size), str(image))
    await trio.Path(mountpoint).mkdir(parents=True, exist_ok=True)
    try:
        await disk._serve()
        await run_command(
            "mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096",
            "-E", "lazy_itable_init=0,lazy_journal_init=0", str(disk.device),
        )  # fmt: skip
        await run_command("mount", "-o", "loop", str(disk.device), str(mountpoint))
        yield disk
    finally:
        with trio.CancelScope(shield=True):
            disk.trigger.unlink(missing_ok=True)
            disk.read_trigger.unlink(missing_ok=True)
            with contextlib.suppress(LhtrioError):  # (not mounted: a failed power-on)
                await _unmount(mountpoint)
            await disk._detach()
            disk._kill_nbdkit(signal.SIGTERM)
            for path in (image, disk.sock):
                path.unlink(missing_ok=True)
