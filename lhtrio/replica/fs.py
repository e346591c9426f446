"""File-system primitives of the replica store: atomic writes, sparse files, OS error mapping.

Everything here works relative to an open directory descriptor (``dir_fd``) so that a replica keeps
working on the directory it validated even if its path is renamed, and so that no path is ever
built by string concatenation from a name that was not validated.

Sparse-file facts relied on (measured on ext4, also true on tmpfs and xfs): ``os.lseek`` with
``SEEK_DATA``/``SEEK_HOLE`` enumerates allocated ranges exactly, including data still in the page
cache; ``fallocate(PUNCH_HOLE | KEEP_SIZE)`` frees whole file-system blocks and makes them read as
zeros. The store assumes a file-system block size of at most 4096 bytes; with larger blocks a
punched 4 KiB range would read as zeros but stay allocated (still correct data, less space
reclaimed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
from collections.abc import Callable, Iterator

from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NoSpaceError,
    NotFoundError,
    StorageError,
)

__all__ = [
    "NotDurableError",
    "os_error",
    "write_atomic",
    "read_small",
    "fsync_dir",
    "unlink_if_exists",
    "punch_hole",
    "data_extents",
    "allocated_bytes",
    "copy_range",
    "resolver",
    "read_rest",
    "write_rest",
    "open_dir",
    "lock_dir",
    "check_empty",
]

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BLOCK_SHIFT = 12
_BLOCK_SIZE = 1 << _BLOCK_SHIFT
_MASK = _BLOCK_SIZE - 1
_ZEROS = memoryview(bytes(1 << 20))

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def os_error(exc: OSError, what: str) -> StorageError:
    """The lhtrio error for an OS error while doing ``what`` (ENOSPC/EDQUOT → NoSpaceError)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"{what}: {reason}; free space on the disk or move the replica")
    return StorageError(f"{what}: {reason} (errno {exc.errno})")


def fsync_dir(dir_fd: int) -> None:
    os.fsync(dir_fd)


class NotDurableError(OSError):
    """The rename of an atomic write happened, but syncing the directory failed.

    The new content is in place (and will be read back) but may not survive a power loss: the
    operation cannot be rolled back, and the disk is failing.
    """


def write_atomic(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` with ``data`` atomically and durably.

    Writes ``name.tmp``, fsyncs it, renames it over ``name`` and fsyncs the directory. After a crash
    the file holds either the old or the new content; a ``.tmp`` may be left behind. On failure
    before the rename the ``.tmp`` is removed and the original file is untouched (OSError); a
    failure to sync the directory after the rename raises :class:`NotDurableError`.
    """
    tmp = name + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        unlink_if_exists(dir_fd, tmp)
        raise
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        raise NotDurableError(exc.errno, exc.strerror) from exc


def read_small(dir_fd: int, name: str, limit: int) -> bytes:
    """Read a whole small file; raise ValueError if it is longer than ``limit`` bytes.

    Raises FileNotFoundError if it does not exist (and other OSErrors).
    """
    fd = os.open(name, os.O_RDONLY | _O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ValueError(f"it is larger than {limit} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def unlink_if_exists(dir_fd: int, name: str) -> bool:
    """Remove ``name``; False if it did not exist."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate ``[offset, offset+length)`` keeping the file size; raises OSError."""
    if length <= 0:
        return
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def data_extents(fd: int, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, length)`` of every allocated range of ``fd`` within ``[start, end)``."""
    if end is None:
        end = os.fstat(fd).st_size
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only holes from pos to the end of the file
                return
            raise
        if data >= end:
            return
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        stop = min(hole, end)
        yield data, stop - data
        pos = stop


def allocated_bytes(fd: int) -> int:
    return os.fstat(fd).st_blocks * 512


def copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` from one file to the same offset in another."""
    done = 0
    while done < length:
        n = os.copy_file_range(src_fd, dst_fd, length - done, offset + done, offset + done)
        if n == 0:  # source shorter than expected: nothing more to copy
            return
        done += n


def resolver(fds: list[int], path: str) -> Callable[[int, int], tuple[int, int]]:
    """The index's callback: find the topmost layer with data at a block (see ``index``)."""
    seek_data = os.SEEK_DATA
    seek_hole = os.SEEK_HOLE

    def resolve(block: int, limit: int) -> tuple[int, int]:
        off = block << _BLOCK_SHIFT
        bound = (block + limit) << _BLOCK_SHIFT
        try:
            for layer in range(len(fds) - 1, 1, -1):
                fd = fds[layer]
                try:
                    data = os.lseek(fd, off, seek_data)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:
                        raise
                    continue  # a hole up to the end of this file
                if data < off + _BLOCK_SIZE:
                    hole = os.lseek(fd, off, seek_hole)
                    return layer, max(1, (min(hole, bound) - off) >> _BLOCK_SHIFT)
                if data < bound:
                    bound = data & ~_MASK
        except OSError as exc:
            raise os_error(exc, f"cannot look up block {block} in replica {path}") from None
        return 1, (bound - off) >> _BLOCK_SHIFT

    return resolve


def read_rest(fd: int, buf: memoryview, offset: int, got: int) -> None:
    """Finish a short read; whatever lies past the end of the file reads as zeros."""
    n = buf.nbytes
    while got < n:
        more = os.preadv(fd, [buf[got:]], offset + got)
        if more == 0:
            while got < n:
                chunk = min(n - got, len(_ZEROS))
                buf[got : got + chunk] = _ZEROS[:chunk]
                got += chunk
            return
        got += more


def write_rest(fd: int, view: memoryview, offset: int, done: int) -> None:
    n = view.nbytes
    while done < n:
        more = os.pwrite(fd, view[done:], offset + done)
        if more == 0:
            raise OSError(errno.EIO, "the disk accepted no more bytes")
        done += more


def open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"replica directory {path} does not exist") from None
    except NotADirectoryError:
        raise InvalidArgumentError(f"{path} is not a directory") from None
    except OSError as exc:
        raise os_error(exc, f"cannot open replica directory {path}") from None


def check_empty(dir_fd: int, path: str) -> None:
    if os.listdir(dir_fd):
        raise AlreadyExistsError(f"{path} is not empty; cannot create a replica in it")


def lock_dir(dir_fd: int, path: str) -> None:
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConflictError(f"replica directory {path} is in use by another replica") from None
