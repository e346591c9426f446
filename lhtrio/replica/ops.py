"""Shared pieces of the replica's structural operations, and :func:`info`.

The operations themselves live in :mod:`.heads` (create, snapshot, expand, revert),
:mod:`.removal` (mark removed, coalesce, replace, prune, remove, purge) and :mod:`.checksum`. They
are the bodies of the :class:`~lhtrio.replica.store.Replica` methods of the same names and share
two rules:

- they run with the replica's flush lock held and the data path quiet (see the concurrency contract
  in :mod:`.store`), and each first flushes, so no file it closes or renames holds unflushed writes
  and the persisted revision counter is current;
- each changes files in an order with a single commit point (the rename of ``volume.meta`` or of
  one ``.meta``), so that every crash state is either the old state, the new state, or the old or
  new state plus leftovers that :mod:`.layout` recognises and removes at the next open.

Errors (:func:`os_err`): an OS error that the *request* caused — a name the file system refuses
(``ENAMETOOLONG``, ``EINVAL``), a size it cannot hold (``EFBIG``) — is an
:class:`~lhtrio.errors.InvalidArgumentError` and leaves the replica as it was; only a commit that
may not be durable fails the replica for good. The checks before each operation (names, labels,
times, sizes) are meant to refuse such requests before any file is touched; this is the net below.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lhtrio.errors import InvalidArgumentError, LhtrioError, NotFoundError, StorageError
from lhtrio.models import times
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.info import DiskInfo, ReplicaInfo
from lhtrio.replica.meta import DiskMeta, VolumeMeta
from lhtrio.replica.names import disk_file, is_head_file

if TYPE_CHECKING:
    from lhtrio.replica.store import Replica

__all__ = [
    "disk_name",
    "os_err",
    "rollback",
    "commit",
    "timestamp",
    "snapshot_disk",
    "unlink_all",
    "exists",
    "close_layer",
    "open_disk",
    "info",
]

logger = logging.getLogger("lhtrio.replica")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def disk_name(name: str) -> str:
    """The disk file of a bare snapshot name or a disk file name (validated)."""
    return disk_file(name)


#: OS errors that the arguments of a request cause, not the disk.
_REQUEST_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EFBIG})


def os_err(exc: OSError, r: Replica, what: str) -> LhtrioError:
    """The error to raise for ``exc``; a commit that may not be durable fails the replica.

    An error the request caused (see the module docstring) is an InvalidArgumentError.
    """
    error = fs.os_error(exc, f"{what} in replica {r.path}")
    if isinstance(exc, fs.NotDurableError):
        r._failed = f"{error.message}; a change may not be durable, the replica must be rebuilt"
        return StorageError(r._failed)
    if exc.errno in _REQUEST_ERRNOS:
        return InvalidArgumentError(
            f"{what} in replica {r.path}: the file system refused the request "
            f"({exc.strerror or exc}); nothing was changed"
        )
    return error


def rollback(r: Replica, undo: list[Callable[[], object]], exc: BaseException) -> None:
    """Run the undo steps of a failed operation, newest first (not after a commit)."""
    for step in reversed(undo):
        try:
            step()
        except OSError as cleanup:
            exc.add_note(f"rollback step failed in replica {r.path}: {cleanup}")


def commit(
    r: Replica, name: str, value: VolumeMeta | DiskMeta, undo: list[Callable[[], object]], what: str
) -> None:
    """Write the commit point of an operation; roll back on failure, unless it took effect."""
    try:
        metalib.store(r._dir_fd, name, value)
    except fs.NotDurableError as exc:
        raise os_err(exc, r, what) from None  # the new file is in place: no rollback
    except BaseException as exc:
        rollback(r, undo, exc)
        if isinstance(exc, OSError):
            raise os_err(exc, r, what) from None
        raise


def timestamp(created: dt.datetime | str | None) -> dt.datetime:
    """A creation time as it will be stored (UTC, whole seconds); now if None.

    InvalidArgumentError for one that could not be written back (:mod:`lhtrio.models.times`).
    """
    if created is None:
        return times.utc_now()
    if isinstance(created, dt.datetime):
        return times.utc(created)
    try:
        return times.parse_time(created)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"created: {exc.message}") from None


def snapshot_disk(r: Replica, name: str) -> tuple[str, DiskMeta]:
    """A snapshot that must exist and must not be the head."""
    disk = disk_file(name)
    if disk == r._meta.head or is_head_file(disk):
        raise InvalidArgumentError(f"{name} is the volume head, not a snapshot")
    found = r._disks.get(disk)
    if found is None:
        raise NotFoundError(f"snapshot {name} does not exist in replica {r.path}")
    return disk, found


def unlink_all(r: Replica, names: list[str]) -> None:
    """Post-commit cleanup: failures only leave leftovers that the next open removes."""
    try:
        for name in names:
            fs.unlink_if_exists(r._dir_fd, name)
        fs.fsync_dir(r._dir_fd)
    except OSError as exc:
        logger.warning(
            "replica %s: could not remove %s (%s); open removes it later", r.path, names, exc
        )


def exists(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists in the directory (OSError for anything but "no such file")."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def close_layer(r: Replica, layer: int) -> None:
    fd = r._fds.pop(layer)
    r._dirty_fds.discard(fd)
    os.close(fd)


def open_disk(r: Replica, name: str) -> int:
    return os.open(name, os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW, dir_fd=r._dir_fd)


def info(r: Replica) -> ReplicaInfo:
    children = chainlib.children_map(r._disks)
    disks = {}
    try:
        for name, disk in r._disks.items():
            st = os.stat(name, dir_fd=r._dir_fd, follow_symlinks=False)
            disks[name] = DiskInfo(
                name=name,
                parent=disk.parent,
                children=tuple(children[name]),
                removed=disk.removed,
                user_created=disk.user_created,
                created=disk.created,
                labels=disk.labels,
                size=st.st_size,
                allocated=st.st_blocks * 512,
            )
        head_stat = os.fstat(r._head_fd)
    except OSError as exc:
        raise os_err(exc, r, "cannot stat disks") from None
    vmeta = r._meta
    return ReplicaInfo(
        path=r.path,
        volume=r.volume,
        instance=r.instance,
        size=vmeta.size,
        sector_size=vmeta.sector_size,
        head=vmeta.head,
        parent=vmeta.parent,
        dirty=vmeta.dirty,
        rebuilding=vmeta.rebuilding,
        revision_counter=r._counter,
        persisted_revision_counter=r._persisted,
        chain=tuple(reversed(r._chain)),
        disks=disks,
        head_allocated=head_stat.st_blocks * 512,
        last_modify_time=head_stat.st_mtime_ns,
    )
