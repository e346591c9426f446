"""Snapshots and new heads: snapshot, expand, revert (each run on the :class:`~.layers.Layers`).

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
system cannot hold) is an :class:`~lhtrio.errors.InvalidArgumentError` (:meth:`.Layers.error`)
and never fails the replica; the read index for a larger volume is allocated before the commit, so a
size this process cannot index is refused the same way.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import attrs

from lhtrio.errors import AlreadyExistsError, ConflictError, InvalidArgumentError
from lhtrio.models.names import validate_labels
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.chain import MAX_CHAIN
from lhtrio.replica.index import BLOCK_SHIFT, BLOCK_SIZE
from lhtrio.replica.layers import Layers
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

__all__ = ["EXPANSION_LABEL", "snapshot", "expand", "revert"]

EXPANSION_LABEL = "replica-expansion"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _new_head(
    layers: Layers, parent: str, size: int, created: dt.datetime, undo: list[Callable[[], object]]
) -> tuple[str, int, DiskMeta]:
    """Steps 1 of snapshot/revert: an empty head file plus its .meta; returns (name, fd, meta)."""
    number = head_number(layers.head)
    assert number is not None
    head = head_file(number + 1)
    dir_fd = layers.dir_fd
    for stale in (head, meta_file(head), checksum_file(head)):
        fs.unlink_if_exists(dir_fd, stale)  # a leftover of an earlier failure
    fd = layers.open(head, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC)

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
    layers: Layers,
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
    stamp = metalib.creation_time(created)
    dir_fd = layers.dir_fd
    try:
        taken = layers.disk(disk) is not None or any(
            layers.exists(n) for n in (disk, meta_file(disk))
        )
    except OSError as exc:
        raise layers.error(exc, f"cannot create snapshot {name}") from None
    if taken:
        raise AlreadyExistsError(f"snapshot {name} already exists in replica {layers.path}")
    if len(layers.chain) >= MAX_CHAIN:
        raise ConflictError(
            f"replica {layers.path} has {len(layers.chain)} disks in its chain, the limit is "
            f"{MAX_CHAIN}; purge removed snapshots first"
        )
    layers.flush()
    old_head = layers.head
    old_size = layers.size
    new_size = old_size if size is None else size
    undo: list[Callable[[], object]] = []
    try:
        head, fd, head_meta = _new_head(layers, disk, new_size, metalib.utc_now(), undo)
        _grow_index(layers, new_size, undo)
        snap_meta = DiskMeta(
            name=disk,
            parent=layers.disks[old_head].parent,
            removed=False,
            user_created=bool(user_created),
            created=stamp,
            labels=labels,
            size=old_size,
        )
        undo.append(lambda: fs.unlink_if_exists(dir_fd, meta_file(disk)))
        metalib.store(dir_fd, meta_file(disk), snap_meta)
        os.link(old_head, disk, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        undo.append(lambda: fs.unlink_if_exists(dir_fd, disk))
        fs.fsync_dir(dir_fd)
    except BaseException as exc:
        layers.rollback(undo, exc)
        if isinstance(exc, OSError):
            raise layers.error(exc, f"cannot create snapshot {name}") from None
        raise
    vmeta = attrs.evolve(layers.meta, head=head, parent=disk, size=new_size)
    layers.commit(VOLUME_META, vmeta, undo, f"cannot create snapshot {name}")
    layers.push_head(vmeta, snap_meta, head_meta, fd)
    layers.unlink_all([old_head, checksum_file(old_head), meta_file(old_head)])


def _grow_index(layers: Layers, size: int, undo: list[Callable[[], object]]) -> None:
    """Give the read index its entries for a volume of ``size`` bytes before the commit.

    Allocated here, not after the commit, so that a size this process cannot index (a byte per
    4 KiB: 256 MiB per TiB) is refused with the replica unchanged.
    """
    index = layers.index
    blocks = size >> BLOCK_SHIFT
    before = index.blocks
    if blocks == before:
        return
    try:
        index.expand(blocks)
    except MemoryError:
        raise InvalidArgumentError(
            f"cannot expand replica {layers.path} to {size} bytes: its read index would need "
            f"{blocks} bytes of memory, more than this process can allocate"
        ) from None
    undo.append(lambda: index.shrink(before))


def expand(layers: Layers, size: int) -> None:
    current = layers.size
    if type(size) is not int or size % BLOCK_SIZE or size < current or size > MAX_VOLUME_SIZE:
        raise InvalidArgumentError(
            f"cannot expand replica {layers.path} from {current} to {size!r} bytes: the size "
            f"must be a multiple of {BLOCK_SIZE}, not smaller, and at most {MAX_VOLUME_SIZE}"
        )
    if size == current:
        return
    snapshot(
        layers,
        f"expand-{size}",
        user_created=False,
        created=None,
        labels={EXPANSION_LABEL: str(size)},
        size=size,
    )


def revert(layers: Layers, name: str, *, created: dt.datetime | str | None = None) -> None:
    disk, target = layers.snapshot_disk(name)
    if target.removed:
        raise ConflictError(f"snapshot {name} is marked removed; cannot revert to it")
    new_chain = chainlib.live_chain(layers.disks, disk)
    if len(new_chain) >= MAX_CHAIN:
        raise ConflictError(f"reverting to {name} would make a chain over {MAX_CHAIN} disks")
    stamp = metalib.creation_time(created)
    layers.flush()
    old_head = layers.head
    undo: list[Callable[[], object]] = []
    new_fds: list[int] = []
    try:
        head, fd, head_meta = _new_head(layers, disk, layers.size, stamp, undo)

        def close_new() -> None:
            for opened in new_fds:
                os.close(opened)

        undo.append(close_new)
        flags = os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW
        new_fds.extend(layers.open(layer, flags) for layer in reversed(new_chain))
    except BaseException as exc:
        layers.rollback(undo, exc)
        if isinstance(exc, OSError):
            raise layers.error(exc, f"cannot revert to {name}") from None
        raise
    vmeta = attrs.evolve(layers.meta, head=head, parent=disk)
    layers.commit(VOLUME_META, vmeta, undo, f"cannot revert to {name}")
    layers.replace_chain(vmeta, [*reversed(new_chain), head], [*new_fds, fd], head_meta)
    layers.unlink_all([old_head, checksum_file(old_head), meta_file(old_head)])
