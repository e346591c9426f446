"""Snapshot checksums, cached in ``<disk>.img.checksum``.

The whole snapshot file is hashed (holes as zeros, without reading them) with BLAKE2b-256: the
standard library has no cheap CRC-64, and BLAKE2b runs at memory speed. The record keeps the
file's ctime in nanoseconds, so a file whose ctime did not change is not hashed again (unless
forced); if a forced hash differs while the ctime did not change, the file changed behind the
file system's back: the record keeps the old hash and says ``silently_corrupted``. A ctime that
changes while hashing makes the result worthless (ConflictError). A missing or unreadable record
is simply recomputed: it is a cache.

Hashing reads a snapshot, which the data path never writes, so it may run in a worker thread
alongside reads and writes; only the record is written under the layers' lock (the store's
flush lock).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable

import attrs

from lhtrio.errors import ConflictError, CorruptMetadataError, StorageError
from lhtrio.models.replica import Checksum
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.layers import Layers
from lhtrio.replica.names import checksum_file

__all__ = ["CHECKSUM_METHOD", "checksum"]

logger = logging.getLogger(__name__)

CHECKSUM_METHOD = "blake2b-256"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_HASH_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_HASH_CHUNK))


def checksum(layers: Layers, name: str, *, force: bool) -> Checksum:
    """The checksum of snapshot ``name``: the recorded one if still valid (and not ``force``),
    else a new hash, recorded. Runs beside the data path; takes the layers' lock only to write
    the record."""
    disk, _ = layers.snapshot_disk(name)
    where = f"{layers.path}/{checksum_file(disk)}"
    try:
        recorded: Checksum | None = metalib.load(
            layers.dir_fd, checksum_file(disk), Checksum, where=where
        )
    except CorruptMetadataError as exc:
        # A missing or damaged cache is simply recomputed.
        logger.debug("replica %s: ignoring %s", layers.path, exc)
        recorded = None
    try:
        fd = layers.open(disk, os.O_RDONLY | _O_CLOEXEC | os.O_NOFOLLOW)
        try:
            ctime = os.fstat(fd).st_ctime_ns
            valid = (
                recorded is not None and bool(recorded.checksum) and recorded.change_time == ctime
            )
            if valid and not force and recorded is not None:
                return recorded
            digest = _hash_file(fd)
            if os.fstat(fd).st_ctime_ns != ctime:
                raise ConflictError(f"snapshot {name} changed while it was hashed; hash it again")
        finally:
            os.close(fd)
        now = metalib.utc_now()
        if valid and recorded is not None and recorded.checksum != digest:
            result = attrs.evolve(recorded, last_hashed_at=now, silently_corrupted=True)
        else:
            result = Checksum(
                method=CHECKSUM_METHOD, checksum=digest, change_time=ctime, last_hashed_at=now
            )
        with layers.lock:
            layers.check_open()
            metalib.store(layers.dir_fd, checksum_file(disk), result)
    except OSError as exc:
        raise layers.error(exc, f"cannot hash snapshot {name}") from None
    return result


def _hash_file(fd: int) -> str:
    h = hashlib.blake2b(digest_size=32)
    size = os.fstat(fd).st_size
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    pos = 0
    for offset, length in [*fs.data_extents(fd, 0, size), (size, 0)]:
        _feed_zeros(h.update, offset - pos)
        end = offset + length
        at = offset
        while at < end:
            chunk = min(end - at, _HASH_CHUNK)
            got = os.preadv(fd, [view[:chunk]], at)
            if got <= 0:
                raise StorageError(f"short read while hashing at offset {at}")
            h.update(view[:got])
            at += got
        pos = end
    return h.hexdigest()


def _feed_zeros(update: Callable[[memoryview], None], count: int) -> None:
    while count > 0:
        chunk = min(count, _HASH_CHUNK)
        update(_ZEROS[:chunk])
        count -= chunk
