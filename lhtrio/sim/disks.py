"""Simulated disks that lose power: what was not synced is gone.

The simulator's replicas keep real files (in /dev/shm), and a killed replica keeps all it wrote,
as a killed process's page cache does. :class:`VolatileDisks` makes a power loss possible too,
by watching the two calls that make data durable and keeping, per disk (a replica's directory),
what a power loss would leave:

* a file's **content** is durable as of its last ``fsync``/``fdatasync`` (a copy is taken then,
  by inode, holes kept);
* the directory's **names** (which name is which inode: creations, renames, links, unlinks) are
  durable as of the directory's last ``fsync``.

:meth:`VolatileDisks.power_off` cuts the power (no sync counts from then on: the simulator's
kill is a cancellation, whose cleanup may sync), and :meth:`VolatileDisks.power_on` rebuilds the
directory from what was durable: every durable name, its
inode's durable content (empty if the content never was synced), names of one inode linked
again. Everything since is lost, all of it: the worst case a journaling file system allows
(ext4's ``auto_da_alloc``, which flushes a file replaced by a rename, is not assumed), so a
replica that leans on more than its own syncs is caught here.

``os.fsync`` and ``os.fdatasync`` are wrapped for the duration of the ``with`` block, in this
process (the simulator runs its replicas' threads inline: :mod:`lhtrio.sim.determinism`). Only
descriptors under a disk's directory are looked at; everything else syncs as before.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from lhtrio.replica import fs

__all__ = ["VolatileDisks", "volatile_disks"]


@attrs.define(eq=False)
class _Disk:
    """One directory and what a power loss would leave of it."""

    root: str
    shadow: str  # durable contents, one file per inode
    names: dict[str, int] = attrs.field(factory=dict)  # durable name -> inode
    contents: set[int] = attrs.field(factory=set)  # inodes with a durable copy
    off: bool = False  # the power is cut: nothing reaches the disk any more

    def sync_names(self) -> None:
        with os.scandir(self.root) as entries:
            self.names = {e.name: e.inode() for e in entries if e.is_file(follow_symlinks=False)}

    def sync_content(self, fd: int, inode: int) -> None:
        copy = os.path.join(self.shadow, str(inode))
        _copy_sparse(f"/proc/self/fd/{fd}", copy + ".tmp")
        os.replace(copy + ".tmp", copy)
        self.contents.add(inode)

    def power_on(self) -> None:
        """Rebuild the directory as a power loss would leave it, and track it again."""
        if os.path.isdir(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root)
        fresh = self.shadow + ".new"
        os.makedirs(fresh)
        first: dict[int, str] = {}  # old inode -> its first restored name
        names: dict[str, int] = {}
        for name, inode in sorted(self.names.items()):
            path = os.path.join(self.root, name)
            if inode in first:
                os.link(first[inode], path)
            elif inode in self.contents:
                _copy_sparse(os.path.join(self.shadow, str(inode)), path)
                first[inode] = path
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                first[inode] = path
            names[name] = os.stat(path).st_ino
        contents = set()
        for inode, path in first.items():
            if inode in self.contents:  # its copy, under the restored file's inode
                new = os.stat(path).st_ino
                os.rename(os.path.join(self.shadow, str(inode)), os.path.join(fresh, str(new)))
                contents.add(new)
        shutil.rmtree(self.shadow)
        os.rename(fresh, self.shadow)
        self.names, self.contents, self.off = names, contents, False


class VolatileDisks:
    """Directories whose unsynced changes a power loss takes away (see the module docstring)."""

    def __init__(self, roots: Iterable[str], shadow: str) -> None:
        self._disks: dict[str, _Disk] = {}
        for n, root in enumerate(roots):
            path = os.path.join(shadow, f"disk{n}")
            os.makedirs(path)
            self._disks[os.path.realpath(root)] = _Disk(os.path.realpath(root), path)
        self.synced = 0  # syncs seen under a disk

    def power_off(self, root: str) -> None:
        """Cut the power of ``root``: no sync reaches it any more. What runs on it is to be
        killed next; in the simulator a kill is a cancellation, and what its cleanup syncs must
        not count."""
        self._disks[os.path.realpath(root)].off = True

    def power_on(self, root: str) -> None:
        """Bring ``root`` back as the cut left it (see the module docstring); whatever ran on it
        must be stopped by now."""
        self._disks[os.path.realpath(root)].power_on()

    def power_loss(self, root: str) -> None:
        """:meth:`power_off`, then :meth:`power_on` (nothing runs on ``root``)."""
        self.power_off(root)
        self.power_on(root)

    def durable_names(self, root: str) -> dict[str, int]:
        return dict(self._disks[os.path.realpath(root)].names)

    def wrap(self, sync: Callable[[Any], None]) -> Callable[[Any], None]:
        """``sync`` (``os.fsync`` or ``os.fdatasync``), then what it made durable recorded."""

        def synced(fd: Any) -> None:
            sync(fd)
            self._synced(fd if isinstance(fd, int) else fd.fileno())

        return synced

    def _synced(self, fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
            st = os.fstat(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EBADF):
                return
            raise
        if stat.S_ISDIR(st.st_mode):
            disk = self._disks.get(path)
            if disk is not None and not disk.off:
                self.synced += 1
                disk.sync_names()
            return
        disk = self._disks.get(os.path.dirname(path))
        if disk is not None and not disk.off and stat.S_ISREG(st.st_mode):
            self.synced += 1
            disk.sync_content(fd, st.st_ino)


@contextmanager
def volatile_disks(roots: Iterable[str], shadow: str) -> Iterator[VolatileDisks]:
    """:class:`VolatileDisks` over ``roots`` (their durable copies under ``shadow``, a fresh
    directory), with ``os.fsync`` and ``os.fdatasync`` watched until the block exits."""
    disks = VolatileDisks(roots, shadow)
    saved = os.fsync, os.fdatasync
    os.fsync = disks.wrap(saved[0])  # type: ignore[assignment]
    os.fdatasync = disks.wrap(saved[1])  # type: ignore[assignment]
    try:
        yield disks
    finally:
        os.fsync, os.fdatasync = saved


def _copy_sparse(source: str, target: str) -> None:
    """Copy ``source`` to ``target`` (created or truncated), holes kept."""
    src = os.open(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(dst, os.fstat(src).st_size)
            for offset, length in fs.data_extents(src):
                fs.copy_range(src, dst, offset, length)
        finally:
            os.close(dst)
    finally:
        os.close(src)
