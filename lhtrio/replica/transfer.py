"""File operations of a replica-to-replica rebuild, for both ends (no trio, no network).

The target drives the transfer (:mod:`lhtrio.replica.sync`); the source answers four control
calls that land here, each run in a worker thread beside the data path:

``file_info``  size, allocated bytes, and the recorded checksum if it is still valid;
``file_map``   the data extents (SEEK_DATA/SEEK_HOLE): holes are punched on the target, never sent;
``file_diff``  BLAKE2b-128 digests of groups of ranges, compared with the target's: which differ;
``file_read``  the bytes of a list of ranges, concatenated (answered with ``Data``, no msgpack).

Delta sync, for a returning replica whose files already hold most of the data: the target hashes
its copy one 2 MiB *window* at a time; only windows whose digests differ are compared again per
4 KiB block, and only differing blocks are sent. A whole file is skipped when both ends hold a
valid recorded checksum and the two are equal (Longhorn's fast sync, ``longhorn-facts.md`` §4.3).

Names and ranges come from the network: the source serves only snapshot files of its own disk
graph (never the head, never metadata), ranges must lie inside the file and a call is bounded
(:data:`MAX_RANGES`, :data:`MAX_BYTES`). Snapshot files do not change while a rebuild runs (the
engine refuses a purge, the only operation that rewrites them), so no lock is needed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError, NotFoundError
from lhtrio.replica import fs, ops
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SIZE
from lhtrio.replica.meta import ChecksumInfo
from lhtrio.replica.names import checksum_file, snapshot_name

if TYPE_CHECKING:
    from lhtrio.replica.store import Replica

__all__ = [
    "WINDOW",
    "DIGEST_SIZE",
    "MAX_RANGES",
    "MAX_BYTES",
    "Range",
    "FileInfo",
    "open_snapshot",
    "file_info",
    "file_map",
    "windows",
    "blocks",
    "merge",
    "digests",
    "diff",
    "read_ranges",
    "write_ranges",
    "punch_outside",
    "recorded_checksum",
    "record_checksum",
]

WINDOW = 2 << 20
DIGEST_SIZE = 16
MAX_RANGES = 8192
MAX_BYTES = 32 << 20
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

Range = tuple[int, int]


@attrs.frozen(kw_only=True)
class FileInfo:
    """A snapshot file as the source sees it; ``checksum`` is "" unless recorded and valid."""

    name: str
    size: int
    allocated: int
    checksum: str


def open_snapshot(r: Replica, name: str, *, write: bool = False) -> int:
    """Open snapshot file ``name`` of ``r`` (not the head, nothing else); NotFoundError if none."""
    if snapshot_name(name) is None:
        raise InvalidArgumentError(f"{name!r} is not a snapshot file name")
    if name not in r._disks or name == r._meta.head:
        raise NotFoundError(f"replica {r.path} has no snapshot file {name}")
    flags = (os.O_RDWR if write else os.O_RDONLY) | _O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=r._dir_fd)
    except FileNotFoundError:
        raise NotFoundError(f"replica {r.path} has no snapshot file {name}") from None
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot open {name}") from None


def recorded_checksum(r: Replica, name: str, fd: int) -> str:
    """The recorded checksum of snapshot file ``name`` (open as ``fd``) if still valid, else ""."""
    try:
        recorded = metalib.load(
            r._dir_fd, checksum_file(name), ChecksumInfo, where=f"{r.path}/{checksum_file(name)}"
        )
    except CorruptMetadataError:
        return ""  # missing or damaged: it is only a cache
    if recorded.silently_corrupted or recorded.change_time != os.fstat(fd).st_ctime_ns:
        return ""
    return recorded.checksum


def record_checksum(r: Replica, name: str, fd: int, checksum: str, method: str) -> None:
    """Record ``checksum`` for the file just received (its ctime now), as the source had it."""
    with r._flush_lock:
        r._check_open()
        info = ChecksumInfo(
            method=method,
            checksum=checksum,
            change_time=os.fstat(fd).st_ctime_ns,
            last_hashed_at=metalib.utc_now(),
        )
        metalib.store(r._dir_fd, checksum_file(name), info)


def file_info(r: Replica, name: str) -> FileInfo:
    fd = open_snapshot(r, name)
    try:
        st = os.fstat(fd)
        return FileInfo(
            name=name,
            size=st.st_size,
            allocated=st.st_blocks * 512,
            checksum=recorded_checksum(r, name, fd),
        )
    finally:
        os.close(fd)


def file_map(r: Replica, name: str) -> list[Range]:
    """The data extents of snapshot file ``name``, in order."""
    fd = open_snapshot(r, name)
    try:
        return list(fs.data_extents(fd))
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot map {name}") from None
    finally:
        os.close(fd)


# --- ranges --------------------------------------------------------------------------------------


def windows(extents: Iterable[Range], window: int = WINDOW) -> list[list[Range]]:
    """``extents`` cut at every multiple of ``window`` and grouped per window, in order."""
    out: list[list[Range]] = []
    current = -1
    for start, length in extents:
        end = start + length
        offset = start
        while offset < end:
            index = offset // window
            stop = min(end, (index + 1) * window)
            if index != current:
                out.append([])
                current = index
            out[-1].append((offset, stop - offset))
            offset = stop
    return out


def blocks(ranges: Iterable[Range]) -> list[list[Range]]:
    """Every 4 KiB block of ``ranges`` as a group of its own (ranges are block-aligned)."""
    return [
        [(off, min(BLOCK_SIZE, offset + length - off))]
        for offset, length in ranges
        for off in range(offset, offset + length, BLOCK_SIZE)
    ]


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Adjacent ranges joined (input in order)."""
    out: list[Range] = []
    for offset, length in ranges:
        if out and out[-1][0] + out[-1][1] == offset:
            out[-1] = (out[-1][0], out[-1][1] + length)
        else:
            out.append((offset, length))
    return out


def check_ranges(ranges: Sequence[Range], size: int, *, what: str) -> int:
    """Validate ranges from the network against a file of ``size`` bytes; their total length."""
    if len(ranges) > MAX_RANGES:
        raise InvalidArgumentError(f"{what}: {len(ranges)} ranges, at most {MAX_RANGES}")
    total = 0
    for offset, length in ranges:
        if offset < 0 or length <= 0 or offset + length > size:
            raise InvalidArgumentError(
                f"{what}: range of {length} bytes at {offset} is outside the file ({size} bytes)"
            )
        total += length
    if total > MAX_BYTES:
        raise InvalidArgumentError(f"{what}: {total} bytes asked, at most {MAX_BYTES} per call")
    return total


# --- hashing and copying -------------------------------------------------------------------------


def _read_into(fd: int, view: memoryview, offset: int) -> None:
    got = os.preadv(fd, [view], offset)
    if got != view.nbytes:
        fs.read_rest(fd, view, offset, got)


def digests(fd: int, groups: Sequence[Sequence[Range]]) -> bytes:
    """One BLAKE2b-128 digest per group, over the group's bytes in order (holes read as zeros)."""
    out = bytearray()
    buf = bytearray(max((n for group in groups for _, n in group), default=0))
    view = memoryview(buf)
    for group in groups:
        h = hashlib.blake2b(digest_size=DIGEST_SIZE)
        for offset, length in group:
            part = view[:length]
            _read_into(fd, part, offset)
            h.update(part)
        out += h.digest()
    return bytes(out)


def diff(r: Replica, name: str, groups: Sequence[Sequence[Range]], theirs: bytes) -> list[int]:
    """Indices of the ``groups`` whose digest here differs from ``theirs`` (the target's)."""
    if len(theirs) != DIGEST_SIZE * len(groups):
        raise InvalidArgumentError(
            f"file_diff: {len(groups)} groups need {DIGEST_SIZE * len(groups)} digest bytes, "
            f"got {len(theirs)}"
        )
    fd = open_snapshot(r, name)
    try:
        size = os.fstat(fd).st_size
        check_ranges([rng for group in groups for rng in group], size, what="file_diff")
        ours = digests(fd, groups)
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot hash {name}") from None
    finally:
        os.close(fd)
    return [
        i
        for i in range(len(groups))
        if ours[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
        != theirs[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
    ]


def read_ranges(r: Replica, name: str, ranges: Sequence[Range]) -> bytearray:
    """The bytes of ``ranges`` of snapshot file ``name``, concatenated."""
    fd = open_snapshot(r, name)
    try:
        total = check_ranges(ranges, os.fstat(fd).st_size, what="file_read")
        buf = bytearray(total)
        view = memoryview(buf)
        at = 0
        for offset, length in ranges:
            _read_into(fd, view[at : at + length], offset)
            at += length
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot read {name}") from None
    finally:
        os.close(fd)
    return buf


def write_ranges(fd: int, ranges: Sequence[Range], data: memoryview) -> None:
    """Write ``data`` (the concatenated bytes of ``ranges``) at the ranges of ``fd``."""
    at = 0
    for offset, length in ranges:
        part = data[at : at + length]
        done = os.pwrite(fd, part, offset)
        if done != length:
            fs.write_rest(fd, part, offset, done)
        at += length


def punch_outside(fd: int, extents: Sequence[Range], size: int) -> None:
    """Punch every hole of ``[0, size)`` not covered by ``extents`` (in order)."""
    pos = 0
    for offset, length in [*extents, (size, 0)]:
        if offset > pos:
            fs.punch_hole(fd, pos, offset - pos)
        pos = max(pos, offset + length)
