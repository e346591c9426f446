"""Reading one snapshot of a replica directory without an engine: what a backup stores.

:func:`open_snapshot_reader` opens a snapshot of a replica directory read-only and gives its
allocated extents and its bytes, in one of two views:

* ``through_chain=False`` — the snapshot's own file alone: the blocks written while it was the
  head (plus, after a purge merged a removed parent into it, that parent's). Blocks it does not
  hold read as zeros. What an incremental backup sends on top of the previous snapshot's backup.
* ``through_chain=True`` — the volume as it was when the snapshot was taken: the snapshot over
  its parent, grandparent, ... (the live chain from it down to the base), each block from the
  newest layer that holds it; zeros where none does. What a full backup of the snapshot stores.

Either view is as long as the snapshot's file: the volume's size when the snapshot was taken
(an older layer shorter than that, from before an expansion, reads as zeros past its end).
Extents are ``(offset, length)`` in bytes, in order, 4 KiB-aligned and coalesced; outside them
the view reads as zeros.

**What it refuses** (a typed lhtrio error naming the directory or the file): a name that is not a
valid snapshot name (``../x``, a head file, an empty name: InvalidArgumentError), a snapshot the
directory does not hold (NotFoundError), one marked removed or a replica marked ``Rebuilding``
(ConflictError: its files may be incomplete), and anything :func:`lhtrio.replica.layout.scan`
refuses — unknown files, damaged or inconsistent metadata, wrong sizes (CorruptMetadataError).

**It changes nothing.** The directory is listed and its metadata read exactly as
:meth:`Replica.open <lhtrio.replica.store.Replica.open>` validates them, but nothing is written,
no leftover is removed, no lock is taken, and every file is opened ``O_RDONLY``.

**Beside a running replica** (``lhtrio replica`` or a node serving the same directory): safe for a
snapshot that is not marked removed, with :meth:`SnapshotReader.check` after the reads. The reader
holds the files it opened, so renames and deletions do not affect it; a running replica writes
into an existing snapshot file only when a purge coalesces into a *removed* snapshot (only blocks
its child holds: a view through the child does not change) or when a rebuild fills this replica
(``Rebuilding`` is set meanwhile). Hence :meth:`~SnapshotReader.check` raises ConflictError unless
the snapshot is still present and not removed, the replica is not rebuilding, and no file read
changed since the reader opened it (its ctime), removed parents aside; a ConflictError means:
open again and read again. Opening may also fail while an operation renames files underneath
(StorageError or CorruptMetadataError): the same advice. Without ``check`` nothing is guaranteed
beside a running replica whose snapshot gets removed or which gets rebuilt meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import attrs

from lhtrio.errors import (
    ConflictError,
    CorruptMetadataError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    ShuttingDownError,
)
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs, layout
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SHIFT, BLOCK_SIZE, Resolver
from lhtrio.replica.meta import DiskMeta, VolumeMeta
from lhtrio.replica.names import VOLUME_META, is_head_file, meta_file, snapshot_file, snapshot_name

__all__ = ["SnapshotReader", "open_snapshot_reader"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MASK = BLOCK_SIZE - 1
_MAX_RESOLVE = 1 << 16  # blocks looked up at once (the read index's bound)


@attrs.define(eq=False)
class SnapshotReader:
    """One snapshot of a replica directory, open read-only (see the module docstring).

    ``snapshot`` is the bare name, ``disk`` its file; ``layers`` the files read, oldest first
    (just ``disk`` unless ``through_chain``); ``size`` the view's length in bytes.
    """

    path: str
    snapshot: str
    disk: str
    through_chain: bool
    layers: tuple[str, ...]
    size: int
    _dir_fd: int = attrs.field(alias="dir_fd", repr=False)
    _fds: list[int] = attrs.field(alias="fds", repr=False)  # [-1, oldest layer, ..., disk]
    _ctimes: list[int] = attrs.field(alias="ctimes", repr=False)  # per layer, at open
    _resolve: Resolver = attrs.field(init=False, repr=False)
    _closed: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self._resolve = fs.resolver(self._fds, self.path)

    def extents(self) -> list[tuple[int, int]]:
        """The allocated ``(offset, length)`` extents of the view, in order, 4 KiB-aligned and
        coalesced (adjacent or overlapping ones joined)."""
        self._check_open()
        spans: list[tuple[int, int]] = []
        try:
            for fd in self._fds[1:]:
                for offset, length in fs.data_extents(fd, 0, self.size):
                    start = offset & ~_MASK
                    stop = min((offset + length + _MASK) & ~_MASK, self.size)
                    spans.append((start, stop))
        except OSError as exc:
            raise fs.os_error(exc, f"cannot map {self.path}/{self.disk}") from None
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, stop in spans:
            if merged and start <= merged[-1][1]:
                if stop > merged[-1][1]:
                    merged[-1] = (merged[-1][0], stop)
            else:
                merged.append((start, stop))
        return [(start, stop - start) for start, stop in merged]

    def read(self, offset: int, length: int) -> bytes:
        """The view's ``length`` bytes at ``offset`` (zeros where no layer holds data)."""
        if length < 0:
            self._range_error(offset, length)
        buf = bytearray(length)
        self.read_into(offset, memoryview(buf))
        return bytes(buf)

    def read_into(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` (a writable byte memoryview) with the view's bytes at ``offset``."""
        self._check_open()
        n = buf.nbytes
        end = offset + n
        if offset < 0 or end > self.size:
            self._range_error(offset, n)
        pos = offset
        try:
            while pos < end:
                block = pos >> BLOCK_SHIFT
                blocks = ((end - 1) >> BLOCK_SHIFT) - block + 1
                layer, count = self._resolve(block, min(blocks, _MAX_RESOLVE))
                stop = min(end, (block + count) << BLOCK_SHIFT)
                part = buf[pos - offset : stop - offset]
                fd = self._fds[layer]
                got = os.preadv(fd, [part], pos)
                if got != stop - pos:
                    fs.read_rest(fd, part, pos, got)  # past a shorter layer's end: zeros
                pos = stop
        except OSError as exc:
            raise fs.os_error(
                exc, f"read of {n} bytes at {offset} of {self.path}/{self.disk}"
            ) from None

    def check(self) -> None:
        """ConflictError unless what was read is still the snapshot (see the module docstring):
        call it after the reads when a replica may be serving the directory meanwhile."""
        self._check_open()
        try:
            vmeta = metalib.load(
                self._dir_fd, VOLUME_META, VolumeMeta, where=f"{self.path}/{VOLUME_META}"
            )
            disks = {
                name: metalib.load(
                    self._dir_fd, meta_file(name), DiskMeta, where=f"{self.path}/{meta_file(name)}"
                )
                for name in self.layers
                if name == self.disk or self._exists(meta_file(name))
            }
        except CorruptMetadataError as exc:
            raise ConflictError(
                f"snapshot {self.snapshot} of {self.path} changed while it was read "
                f"({exc.message}); read it again"
            ) from None
        if vmeta.rebuilding:
            raise ConflictError(
                f"{self.path} started a rebuild while snapshot {self.snapshot} was read; "
                "read it again once the rebuild is done"
            )
        if disks[self.disk].removed:
            raise ConflictError(
                f"snapshot {self.snapshot} of {self.path} was marked removed while it was read"
            )
        for name, fd, ctime in zip(self.layers, self._fds[1:], self._ctimes, strict=True):
            removed = name != self.disk and (name not in disks or disks[name].removed)
            if os.fstat(fd).st_ctime_ns != ctime and not removed:
                raise ConflictError(
                    f"{self.path}/{name} changed while snapshot {self.snapshot} was read; "
                    "read it again"
                )

    def close(self) -> None:
        """Close every file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for fd in self._fds[1:]:
            os.close(fd)
        del self._fds[1:]
        os.close(self._dir_fd)

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise ShuttingDownError(f"the reader of snapshot {self.snapshot} is closed")

    def _range_error(self, offset: int, length: int) -> NoReturn:
        raise OutOfRangeError(
            f"read of {length} bytes at offset {offset} is outside snapshot {self.snapshot} of "
            f"{self.path} ({self.size} bytes)"
        )


def _disk_of(path: str, snapshot: str) -> tuple[str, str]:
    """``(bare name, disk file)`` of a snapshot given by bare name or disk file name."""
    if is_head_file(snapshot):
        raise InvalidArgumentError(
            f"{path}/{snapshot} is the volume head, not a snapshot: take a snapshot and read that"
        )
    name = snapshot_name(snapshot)
    if name is not None:
        return name, snapshot
    try:
        return snapshot, snapshot_file(snapshot)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"replica directory {path}: {exc.message}") from None


def _layers_to_read(
    lay: layout.Layout, path: str, name: str, disk: str, through_chain: bool
) -> list[str]:
    """The files to read for snapshot ``disk`` of the validated directory ``lay``, oldest first."""
    if lay.volume.rebuilding:
        raise ConflictError(
            f"{path}/{VOLUME_META}: the replica is being rebuilt (Rebuilding=true): its "
            "snapshot files may be incomplete"
        )
    found = lay.disks.get(disk)
    if found is None or disk == lay.volume.head:
        raise NotFoundError(f"{path}/{disk}: replica {path} has no snapshot {name}")
    if found.removed:
        raise ConflictError(
            f"{path}/{meta_file(disk)}: snapshot {name} is marked removed; it is not read"
        )
    return list(reversed(chainlib.live_chain(lay.disks, disk))) if through_chain else [disk]


@contextmanager
def open_snapshot_reader(
    directory: str | os.PathLike[str], snapshot: str, *, through_chain: bool
) -> Iterator[SnapshotReader]:
    """Open ``snapshot`` (a bare name or its file name) of the replica in ``directory`` for
    reading; closed on exit. See the module docstring for the views, the refusals and what is
    guaranteed beside a running replica."""
    path = os.path.abspath(os.fspath(directory))
    name, disk = _disk_of(path, snapshot)
    dir_fd = fs.open_dir(path)
    fds = [-1]
    try:
        layers = _layers_to_read(layout.scan(dir_fd, path), path, name, disk, through_chain)
        ctimes = []
        try:
            for layer in layers:
                fds.append(os.open(layer, os.O_RDONLY | _O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd))
                ctimes.append(os.fstat(fds[-1]).st_ctime_ns)
            size = os.fstat(fds[-1]).st_size
        except OSError as exc:
            raise fs.os_error(exc, f"cannot open snapshot {name} of {path}") from None
        reader = SnapshotReader(
            path=path,
            snapshot=name,
            disk=disk,
            through_chain=through_chain,
            layers=tuple(layers),
            size=size,
            dir_fd=dir_fd,
            fds=fds,
            ctimes=ctimes,
        )
    except BaseException:
        for fd in fds[1:]:
            os.close(fd)
        os.close(dir_fd)
        raise
    try:
        yield reader
    finally:
        reader.close()
