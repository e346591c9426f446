"""The write-intent map: which regions of a replica may differ from its peers after a crash.

The problem it solves (issue: reads must be stable after a crash). An engine sends each write to
every replica at once. If the engine (or the host) dies with writes in flight, some replicas have
a block's new value and some its old one; all of them restart with equal revision counters (the
counter proves nothing about writes that were never flushed), so all come back RW, and
round-robin reads of that block would flip between versions. A file system replaying its journal
cannot live with that. Linux md (its write-intent bitmap) and DRBD (its activity log) solve it by
remembering, durably and cheaply, *where* writes may have been in flight, and resyncing exactly
those regions at the next start. This is that record, one per replica.

**What it records.** The volume is cut into regions of :data:`REGION` (4 MiB, DRBD's activity
log extent). A region is *marked* from before the first write (or unmap, or zeroing) into it
reaches the data files until the engine knows every replica holds the same, durable data there.
The mark is durable before the data can be (``pwrite`` + ``fdatasync`` of one page of this file,
about 0.13 ms on this project's machines, paid once per region, not per write), so a power cut
never leaves a region with differing data unmarked on every replica.

**How marks are cleared** (the engine drives it, :mod:`lhtrio.engine.consistency`): every few
seconds the engine, with no write in flight, asks every replica to *rotate* (start a new
generation of "written since"), then flushes every replica, then asks each to *clear*: a region
not written in the current or the previous generation is unmarked. Every write into it was sent
before the previous rotation, hence acknowledged by every replica before the current one (the
engine rotates only while no write is in flight), hence made durable everywhere by the flush that
followed. Keeping two generations means a region stays marked for one to two sweeps after its
last write, so a working set that moves slowly is not marked over and over. Clearing is written
without ``fdatasync``: a mark that survives a crash only costs a little resync.

**At the engine's start** the union of the RW replicas' marks is compared replica to replica and
made equal from one of them (:func:`lhtrio.engine.consistency.resync`); then the marks are
cleared. Outside the marks all RW replicas hold the same data by construction.

**File** ``volume.intent`` (see :mod:`lhtrio.replica.names`): a 4096-byte header page, ASCII
``lhtrio write-intent v1 region=4194304 regions=N`` and a newline, NUL-padded; then N bytes, one
per region, 0 or 1. A missing file (a directory written before it existed) means every region
is marked: the first start resyncs the whole volume. A file that does not parse is refused at
open, naming the file (removing it is safe and leads to that full resync).

Concurrency: :meth:`WriteIntent.note` is the data path's (one thread at a time, like the store's
data path); :meth:`rotate`, :meth:`clear` and :meth:`resize` must not overlap with it (the
service holds its data lock).
"""

from __future__ import annotations

import os
import re
from typing import Final

from lhtrio.errors import CorruptMetadataError, StorageError
from lhtrio.replica import fs

__all__ = ["REGION", "REGION_SHIFT", "HEADER", "WriteIntent", "regions_for"]

REGION_SHIFT: Final = 22
REGION: Final = 1 << REGION_SHIFT
HEADER: Final = 4096
_HEADER_RE = re.compile(rb"lhtrio write-intent v1 region=(\d+) regions=(\d+)\n\x00*")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_ONES: Final = b"\x01" * 4096


def regions_for(size: int) -> int:
    """How many regions cover a volume of ``size`` bytes."""
    return (size + REGION - 1) >> REGION_SHIFT


def _header(regions: int) -> bytes:
    text = f"lhtrio write-intent v1 region={REGION} regions={regions}\n".encode()
    return text.ljust(HEADER, b"\0")


class WriteIntent:
    """The open write-intent map of one replica. Build it with :meth:`open`."""

    def __init__(self, fd: int, marked: bytearray, where: str) -> None:
        self._fd = fd
        self._where = where
        self.marked = marked  # 1 per marked region (the data path reads it)
        self.recent = bytearray(len(marked))  # written in the current generation
        self._previous = bytearray(len(marked))  # written in the previous generation
        self.failed = ""

    @classmethod
    def open(cls, dir_fd: int, name: str, size: int, *, where: str) -> WriteIntent:
        """Open (or create) the map ``name`` for a volume of ``size`` bytes.

        A missing file is created with every region marked (nothing is known about what was in
        flight before it existed). Raises CorruptMetadataError for a file that does not parse.
        """
        regions = regions_for(size)
        try:
            fd = os.open(name, os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            marked = bytearray(b"\x01" * regions)
            fd = _create(dir_fd, name, marked, where)
            return cls(fd, marked, where)
        except OSError as exc:
            raise fs.os_error(exc, f"cannot open {where}") from None
        try:
            marked = _load(fd, regions, where)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, marked, where)

    @classmethod
    def create(cls, dir_fd: int, name: str, size: int, *, where: str) -> None:
        """Write the map of a new replica: nothing marked (nothing was ever written)."""
        os.close(_create(dir_fd, name, bytearray(regions_for(size)), where))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- the data path ----------------------------------------------------------------------------

    def note(self, offset: int, length: int) -> None:
        """A write (unmap, zeroing) of ``[offset, offset+length)`` is about to reach the data
        files: count it in the current generation and make sure its regions are marked,
        durably, before returning. The caller checks ``recent`` first (the fast path: a region
        written in this generation is marked already)."""
        first = offset >> REGION_SHIFT
        last = (offset + max(length, 1) - 1) >> REGION_SHIFT
        if last >= len(self.marked):
            return  # (out of range: the store refuses the write itself)
        count = last - first + 1
        ones = _ONES[:count] if count <= len(_ONES) else b"\x01" * count
        self.recent[first : last + 1] = ones
        if self.marked.find(0, first, last + 1) == -1:
            return
        if self.failed:
            raise StorageError(self.failed)
        self.marked[first : last + 1] = ones
        try:
            done = os.pwrite(self._fd, self.marked[first : last + 1], HEADER + first)
            if done != count:
                raise OSError(5, f"short write of {done} of {count} bytes")  # noqa: TRY301
            os.fdatasync(self._fd)
        except OSError as exc:
            # The mark may not be durable: writes into these regions could go unnoticed after a
            # crash. The replica can no longer vouch for its peers' consistency: fail it.
            error = fs.os_error(exc, f"cannot record a write intent in {self._where}")
            self.failed = f"{error.message}; the replica must be rebuilt"
            raise StorageError(self.failed) from None

    # -- the engine's sweep -----------------------------------------------------------------------

    def rotate(self) -> None:
        """Start a new generation: what was written so far becomes the previous one.

        In place: the store keeps a reference to ``recent`` for its fast path."""
        self._previous[:] = self.recent
        self.recent[:] = bytes(len(self.recent))

    def clear(self, *, everything: bool = False) -> int:
        """Unmark the regions not written in this generation or the previous one (with
        ``everything``: all of them — only when nothing can be in flight and the engine flushed
        every replica). Returns how many regions stay marked."""
        marked = self.marked
        if everything:
            marked[:] = bytes(len(marked))
            self._previous[:] = bytes(len(marked))
            self.recent[:] = bytes(len(marked))
        else:
            size = len(marked)
            keep = int.from_bytes(self.recent, "little") | int.from_bytes(self._previous, "little")
            marked[:] = (int.from_bytes(marked, "little") & keep).to_bytes(size, "little")
        try:
            os.pwrite(self._fd, marked, HEADER)  # no fdatasync: a stale mark is harmless
        except OSError as exc:
            raise fs.os_error(exc, f"cannot update {self._where}") from None
        return len(marked) - marked.count(0)

    def runs(self) -> list[tuple[int, int]]:
        """The marked regions as ``(offset, length)`` byte ranges, in order, adjacent ones
        merged."""
        out: list[tuple[int, int]] = []
        for match in re.finditer(rb"\x01+", self.marked):
            start, end = match.span()
            out.append((start << REGION_SHIFT, (end - start) << REGION_SHIFT))
        return out

    def resize(self, size: int) -> None:
        """The volume grew to ``size``: cover the new regions (unmarked: nothing was written
        there yet). Durable before returning (the expansion commits after it)."""
        regions = regions_for(size)
        grow = regions - len(self.marked)
        if grow <= 0:
            return
        self.marked += bytes(grow)
        self.recent += bytes(grow)
        self._previous += bytes(grow)
        try:
            os.pwrite(self._fd, _header(regions), 0)
            os.pwrite(self._fd, bytes(grow), HEADER + regions - grow)
            os.fdatasync(self._fd)
        except OSError as exc:
            raise fs.os_error(exc, f"cannot grow {self._where}") from None


def _create(dir_fd: int, name: str, marked: bytearray, where: str) -> int:
    """Write ``name`` atomically (temp file, fsync, rename, directory fsync); return an fd."""
    try:
        fs.write_atomic(dir_fd, name, _header(len(marked)) + bytes(marked))
        return os.open(name, os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot create {where}") from None


def _load(fd: int, regions: int, where: str) -> bytearray:
    try:
        data = os.pread(fd, HEADER + regions + 1, 0)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot read {where}") from None
    head = _HEADER_RE.fullmatch(data[:HEADER])
    if len(data) < HEADER or head is None:
        raise CorruptMetadataError(
            f"{where}: not an lhtrio write-intent map; remove it (the volume then resyncs "
            f"this replica's whole content from another replica at the next start)"
        )
    region, count = int(head.group(1)), int(head.group(2))
    body = data[HEADER:]
    if region != REGION:
        raise CorruptMetadataError(f"{where}: region size {region} is not {REGION}")
    if count > regions or len(body) != count or body.strip(b"\x00\x01"):
        raise CorruptMetadataError(
            f"{where}: {len(body)} region bytes for {count} regions (the volume has {regions}), "
            "or bytes other than 0 and 1; remove it (the volume then resyncs this replica's "
            "whole content from another replica at the next start)"
        )
    # Fewer regions than the volume: an expansion committed before the map grew; nothing can
    # have been written into the new regions yet.
    return bytearray(body) + bytes(regions - count)
