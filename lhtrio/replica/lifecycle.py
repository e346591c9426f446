"""Creating and opening a replica directory: the file work behind ``Replica.create``/``open``.

Create writes ``lhtrio-replica.json`` (the volume and replica instance the directory is for),
``volume-head-000.img`` (sparse, sized to the volume), its ``.meta``, ``revision.counter`` (0)
and, last, ``volume.meta``: a crash leaves a directory without ``volume.meta``, which open
refuses and which can be emptied and created again.

Open locks the directory (``flock`` on its descriptor, released when the replica closes or its
process dies), compares the identity record with the volume and instance it was asked to serve,
validates everything with :func:`lhtrio.replica.layout.scan` — which changes nothing, so a failed
open leaves the directory byte for byte as it was — opens the live chain, records Dirty=true, and
only then removes the leftovers of a crashed operation.

**Identity.** A directory created for volume ``a`` must never be served as volume ``b``: an
engine would take it for a stale replica of ``b`` and rebuild over it, destroying ``a``'s data.
A mismatch raises :class:`~lhtrio.errors.IdentityMismatchError` (wire code
``IDENTITY_MISMATCH``), the same error a hello naming the wrong volume gets: it is the same
mistake, a name pointing at someone else's replica, not a conflict that goes away by waiting
(``ConflictError``); callers can tell it apart and nobody retries it. A directory without the
record was created before lhtrio wrote one: it is adopted — the identity asked for is recorded
(after the directory validated) and a warning logged.
"""

from __future__ import annotations

import logging
import os

import attrs

from lhtrio.errors import IdentityMismatchError, InvalidArgumentError
from lhtrio.replica import fs, layout
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SIZE
from lhtrio.replica.intent import WriteIntent
from lhtrio.replica.meta import DiskMeta, ReplicaIdentity, VolumeMeta
from lhtrio.replica.names import (
    IDENTITY,
    INTENT,
    REVISION_COUNTER,
    VOLUME_META,
    head_file,
    meta_file,
)

__all__ = ["Opened", "create_files", "open_files", "rescan"]

logger = logging.getLogger(__name__)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@attrs.frozen(kw_only=True)
class Opened:
    """An open, validated replica directory; ``chain`` is oldest first, ``fds[i]`` its layer i."""

    path: str
    dir_fd: int
    meta: VolumeMeta
    disks: dict[str, DiskMeta]
    chain: list[str]
    fds: list[int]
    counter: int
    intent: WriteIntent | None = None


def create_files(path: str, size: int, identity: ReplicaIdentity) -> None:
    """Create a fresh replica of ``identity`` in ``path`` (made if missing, else empty)."""
    if type(size) is not int or size <= 0 or size % BLOCK_SIZE:
        raise InvalidArgumentError(
            f"replica size must be a positive multiple of {BLOCK_SIZE}, got {size!r}"
        )
    try:
        if not os.path.isdir(path):
            os.makedirs(path)
            parent_fd = os.open(os.path.dirname(path), os.O_RDONLY | _O_CLOEXEC)
            try:
                os.fsync(parent_fd)
            finally:
                os.close(parent_fd)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot create replica directory {path}") from None
    dir_fd = fs.open_dir(path)
    try:
        fs.lock_dir(dir_fd, path)
        fs.check_empty(dir_fd, path)
        _init_files(dir_fd, path, size, identity)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot create a replica in {path}") from None
    finally:
        os.close(dir_fd)


def _init_files(dir_fd: int, path: str, size: int, identity: ReplicaIdentity) -> None:
    """Write a fresh replica into the empty directory ``dir_fd``; ``volume.meta`` goes last.

    On failure everything written is removed again. Raises OSError.
    """
    head = head_file(0)
    created: list[str] = []
    try:
        created.append(IDENTITY)
        metalib.store(dir_fd, IDENTITY, identity)
        fd = os.open(head, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644, dir_fd=dir_fd)
        created.append(head)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
        created.append(meta_file(head))
        disk = DiskMeta(name=head, parent="", created=metalib.utc_now(), size=size)
        metalib.store(dir_fd, meta_file(head), disk)
        created.append(REVISION_COUNTER)
        metalib.store_counter(dir_fd, REVISION_COUNTER, 0)
        created.append(INTENT)
        WriteIntent.create(dir_fd, INTENT, size, where=f"{path}/{INTENT}")
        vmeta = VolumeMeta(size=size, head=head, dirty=False, rebuilding=False)
        metalib.store(dir_fd, VOLUME_META, vmeta)
    except BaseException as exc:
        for name in reversed(created):
            try:
                fs.unlink_if_exists(dir_fd, name)
            except OSError as cleanup:
                exc.add_note(f"could not remove {path}/{name}: {cleanup}")
        raise


def open_files(path: str, identity: ReplicaIdentity) -> Opened:
    """Lock, check and validate ``path`` as ``identity``'s replica and open it.

    Records Dirty=true (and the identity, in a directory that has none), then removes crash
    leftovers.
    """
    dir_fd = fs.open_dir(path)
    try:
        fs.lock_dir(dir_fd, path)
        return rescan(dir_fd, path, identity, intent=True)
    except BaseException:
        os.close(dir_fd)
        raise


def _check_identity(dir_fd: int, path: str, identity: ReplicaIdentity) -> bool:
    """Refuse a directory recorded for another volume or instance; False if it has no record."""
    recorded = layout.read_identity(dir_fd, path)
    if recorded is None:
        return False
    if recorded != identity:
        raise IdentityMismatchError(
            f"replica directory {path} belongs to volume {recorded.volume} (replica instance "
            f"{recorded.instance}), not to volume {identity.volume} (instance "
            f"{identity.instance}): refusing to serve it; give the right volume and instance, "
            f"or use another directory"
        )
    return True


def rescan(dir_fd: int, path: str, identity: ReplicaIdentity, *, intent: bool = False) -> Opened:
    """Check ``identity``, validate the locked directory ``dir_fd``, open its live chain (and,
    with ``intent``, its write-intent map: :mod:`lhtrio.replica.intent`).

    The second half of :func:`open_files`, also used to reload a replica whose files a rebuild
    replaced. Records Dirty=true (and the identity if the directory has no record), then
    removes crash leftovers. On failure every descriptor it opened is closed again (``dir_fd``
    stays open).
    """
    fds = [-1]
    opened_intent: WriteIntent | None = None
    try:
        recorded = _check_identity(dir_fd, path, identity)
        lay = layout.scan(dir_fd, path)
        if intent:
            where = f"{path}/{INTENT}"
            opened_intent = WriteIntent.open(dir_fd, INTENT, lay.volume.size, where=where)
        try:
            for disk in reversed(lay.chain):
                flags = os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW
                fds.append(os.open(disk, flags, dir_fd=dir_fd))
            vmeta = attrs.evolve(lay.volume, dirty=True)
            metalib.store(dir_fd, VOLUME_META, vmeta)
            if not recorded:
                metalib.store(dir_fd, IDENTITY, identity)
                logger.warning(
                    "replica directory %s had no identity record (created before lhtrio wrote "
                    "one): recorded it as volume %s, instance %s",
                    path,
                    identity.volume,
                    identity.instance,
                )
            for name in lay.leftovers:
                fs.unlink_if_exists(dir_fd, name)
            if lay.leftovers:
                fs.fsync_dir(dir_fd)
        except OSError as exc:
            raise fs.os_error(exc, f"cannot open replica {path}") from None
    except BaseException:
        for fd in fds[1:]:
            os.close(fd)
        if opened_intent is not None:
            opened_intent.close()
        raise
    return Opened(
        path=path,
        dir_fd=dir_fd,
        meta=vmeta,
        disks=dict(lay.disks),
        chain=list(reversed(lay.chain)),
        fds=fds,
        counter=lay.counter,
        intent=opened_intent,
    )
