"""New heads: snapshot, expand, revert.

Snapshot and expand follow Longhorn's ``createDisk`` (``longhorn-facts.md`` §2.1), reordered so
that a crash at any point is recognisable (see :mod:`.layout`):

1. create ``volume-head-(N+1).img`` sized to the volume, fsync it, write its ``.meta``
   (parent = the new snapshot);
2. write the snapshot's ``.meta`` complete (user_created, created, labels: no later rewrite);
3. hard-link the head's ``.img`` to ``volume-snap-NAME.img``, fsync the directory;
4. **commit**: write ``volume.meta`` naming the new head;
5. unlink the old head's names (its data lives on as the snapshot).

A failure before 4 runs the rollback steps registered so far, newest first; a crash before 4
leaves only leftovers. Expand is a snapshot named ``expand-<bytes>`` (user_created false, label
``replica-expansion``) whose new head is larger. Revert is steps 1 and 4 with the chosen snapshot
as parent, then the old head is deleted; snapshots newer than the target survive as a branch.

Every ``.meta`` written records the disk's size (``Size``: the volume's size while the disk was
the head), which :mod:`.layout` checks the file against at open.

The request is checked completely before the first file is touched, with the rules every
component uses (:mod:`lhtrio.models`): the snapshot name (in bytes of the longest file name made
from it), the labels (Kubernetes rules, at most 64), the creation time (one that can be written
back). Whatever is accepted reopens. An OS error that the request still causes (a size the file
system cannot hold) is an :class:`~lhtrio.errors.InvalidArgumentError` (:func:`.ops.os_err`) and
never fails the replica; the read index for a larger volume is allocated before the commit, so a
size this process cannot index is refused the same way.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from lhtrio.errors import AlreadyExistsError, ConflictError, InvalidArgumentError
from lhtrio.models.names import validate_labels
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs, ops
from lhtrio.replica import meta as metalib
from lhtrio.replica.chain import MAX_CHAIN
from lhtrio.replica.index import BLOCK_SHIFT, BLOCK_SIZE
from lhtrio.replica.meta import DiskMeta
from lhtrio.replica.names import (
    VOLUME_META,
    checksum_file,
    head_file,
    head_number,
    is_head_file,
    meta_file,
    snapshot_file,
    snapshot_name,
)
from lhtrio.units import MAX_VOLUME_SIZE

if TYPE_CHECKING:
    from lhtrio.replica.store import Replica

__all__ = ["EXPANSION_LABEL", "snapshot", "expand", "revert"]

EXPANSION_LABEL = "replica-expansion"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _new_head(
    r: Replica, parent: str, size: int, created: dt.datetime, undo: list[Callable[[], object]]
) -> tuple[str, int, DiskMeta]:
    """Steps 1 of snapshot/revert: an empty head file plus its .meta; returns (name, fd, meta)."""
    number = head_number(r._meta.head)
    assert number is not None
    head = head_file(number + 1)
    dir_fd = r._dir_fd
    for stale in (head, meta_file(head), checksum_file(head)):
        fs.unlink_if_exists(dir_fd, stale)  # a leftover of an earlier failure
    fd = os.open(head, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644, dir_fd=dir_fd)

    def drop_head() -> None:
        os.close(fd)
        fs.unlink_if_exists(dir_fd, head)

    undo.append(drop_head)
    os.ftruncate(fd, size)
    os.fsync(fd)
    head_meta = DiskMeta(name=head, parent=parent, created=created, size=size)
    undo.append(lambda: fs.unlink_if_exists(dir_fd, meta_file(head)))
    metalib.store(dir_fd, meta_file(head), head_meta)
    return head, fd, head_meta


def snapshot(
    r: Replica,
    name: str,
    *,
    user_created: bool,
    created: dt.datetime | str | None,
    labels: dict[str, str] | None,
    size: int | None = None,
) -> None:
    if is_head_file(name) or snapshot_name(name) is not None:
        raise InvalidArgumentError(
            f"snapshot name {name!r} is a disk file name; give the bare snapshot name"
        )
    disk = snapshot_file(name)
    if labels is not None:
        labels = validate_labels(labels)
    stamp = ops.timestamp(created)
    dir_fd = r._dir_fd
    try:
        taken = disk in r._disks or any(ops.exists(dir_fd, n) for n in (disk, meta_file(disk)))
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot create snapshot {name}") from None
    if taken:
        raise AlreadyExistsError(f"snapshot {name} already exists in replica {r.path}")
    if len(r._chain) >= MAX_CHAIN:
        raise ConflictError(
            f"replica {r.path} has {len(r._chain)} disks in its chain, the limit is {MAX_CHAIN}; "
            f"purge removed snapshots first"
        )
    r._flush_locked()
    old_head = r._meta.head
    new_size = r._meta.size if size is None else size
    undo: list[Callable[[], object]] = []
    try:
        head, fd, head_meta = _new_head(r, disk, new_size, metalib.utc_now(), undo)
        _grow_index(r, new_size, undo)
        snap_meta = DiskMeta(
            name=disk,
            parent=r._disks[old_head].parent,
            removed=False,
            user_created=bool(user_created),
            created=stamp,
            labels=labels,
            size=r._meta.size,
        )
        undo.append(lambda: fs.unlink_if_exists(dir_fd, meta_file(disk)))
        metalib.store(dir_fd, meta_file(disk), snap_meta)
        os.link(old_head, disk, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        undo.append(lambda: fs.unlink_if_exists(dir_fd, disk))
        fs.fsync_dir(dir_fd)
    except BaseException as exc:
        ops.rollback(r, undo, exc)
        if isinstance(exc, OSError):
            raise ops.os_err(exc, r, f"cannot create snapshot {name}") from None
        raise
    vmeta = attrs.evolve(r._meta, head=head, parent=disk, size=new_size)
    ops.commit(r, VOLUME_META, vmeta, undo, f"cannot create snapshot {name}")
    r._meta = vmeta
    del r._disks[old_head]
    r._disks[disk] = snap_meta
    r._disks[head] = head_meta
    r._chain[-1] = disk
    r._chain.append(head)
    r._fds.append(fd)
    r._index.add_layer()
    r._refresh()
    ops.unlink_all(r, [old_head, checksum_file(old_head), meta_file(old_head)])


def _grow_index(r: Replica, size: int, undo: list[Callable[[], object]]) -> None:
    """Give the read index its entries for a volume of ``size`` bytes before the commit.

    Allocated here, not after the commit, so that a size this process cannot index (a byte per
    4 KiB: 256 MiB per TiB) is refused with the replica unchanged.
    """
    blocks = size >> BLOCK_SHIFT
    before = r._index.blocks
    if blocks == before:
        return
    try:
        r._index.expand(blocks)
    except MemoryError:
        raise InvalidArgumentError(
            f"cannot expand replica {r.path} to {size} bytes: its read index would need "
            f"{blocks} bytes of memory, more than this process can allocate"
        ) from None
    undo.append(lambda: r._index.shrink(before))


def expand(r: Replica, size: int) -> None:
    current = r._meta.size
    if type(size) is not int or size % BLOCK_SIZE or size < current or size > MAX_VOLUME_SIZE:
        raise InvalidArgumentError(
            f"cannot expand replica {r.path} from {current} to {size!r} bytes: the size must be a "
            f"multiple of {BLOCK_SIZE}, not smaller, and at most {MAX_VOLUME_SIZE}"
        )
    if size == current:
        return
    snapshot(
        r,
        f"expand-{size}",
        user_created=False,
        created=None,
        labels={EXPANSION_LABEL: str(size)},
        size=size,
    )


def revert(r: Replica, name: str, *, created: dt.datetime | str | None = None) -> None:
    disk, target = ops.snapshot_disk(r, name)
    if target.removed:
        raise ConflictError(f"snapshot {name} is marked removed; cannot revert to it")
    new_chain = chainlib.live_chain(r._disks, disk)
    if len(new_chain) >= MAX_CHAIN:
        raise ConflictError(f"reverting to {name} would make a chain over {MAX_CHAIN} disks")
    stamp = ops.timestamp(created)
    r._flush_locked()
    old_head = r._meta.head
    undo: list[Callable[[], object]] = []
    new_fds: list[int] = []
    try:
        head, fd, head_meta = _new_head(r, disk, r._meta.size, stamp, undo)

        def close_new() -> None:
            for opened in new_fds:
                os.close(opened)

        undo.append(close_new)
        new_fds.extend(ops.open_disk(r, layer) for layer in reversed(new_chain))
    except BaseException as exc:
        ops.rollback(r, undo, exc)
        if isinstance(exc, OSError):
            raise ops.os_err(exc, r, f"cannot revert to {name}") from None
        raise
    vmeta = attrs.evolve(r._meta, head=head, parent=disk)
    ops.commit(r, VOLUME_META, vmeta, undo, f"cannot revert to {name}")
    r._meta = vmeta
    for old in r._fds[1:]:
        os.close(old)
    del r._fds[1:]
    r._fds.extend(new_fds)
    r._fds.append(fd)
    del r._disks[old_head]
    r._disks[head] = head_meta
    r._chain[:] = [*reversed(new_chain), head]
    r._dirty_fds.clear()  # flushed above; the old head's data is discarded
    r._index.reset(len(r._chain))
    r._refresh()
    ops.unlink_all(r, [old_head, checksum_file(old_head), meta_file(old_head)])
