"""Removing snapshots: mark removed, the four actions, and purge.

The actions (see :mod:`.chain` for when each applies), with their crash behaviour:

coalesce(source, target)
    Copy every data extent of the child ``target`` into the removed parent ``source``
    (``SEEK_DATA``/``SEEK_HOLE`` + ``os.copy_file_range``), extending ``source`` first if the child
    is larger (after an expansion) and recording its new ``Size`` in its ``.meta`` (a crash in
    between is recognised at open, see :mod:`.layout`), then fdatasync. Only blocks that the child
    shadows change, so the live chain reads the same at every instant; repeating it is harmless.
replace(target, source)
    Link ``source`` to ``target.img.tmp`` and rename it over ``target.img`` (both names now hold
    the merged data: reads are unchanged), **commit** ``target``'s ``.meta`` with the grandparent as
    parent, then delete ``source``'s ``.img``, ``.checksum`` and, last, ``.meta``.
prune(source, target)
    Punch holes in ``source`` wherever the head ``target`` has data (the head shadows them).
remove_disk(name)
    Delete ``.img``, ``.checksum``, then ``.meta`` (the commit). A disk with one child is removed
    only with ``force`` (as Longhorn's forced remove during a rebuild): it is marked removed, the
    child is re-parented (the commit: the disk's data is lost to the child), then its files go. A
    disk with several children is never removed.

Purge marks every system snapshot removed, then processes removed disks in
:func:`~lhtrio.replica.chain.purge_order`, re-planning each one against the current graph.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from lhtrio.errors import ConflictError, InvalidArgumentError, NotFoundError
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs, ops
from lhtrio.replica import meta as metalib
from lhtrio.replica.chain import Action, ActionKind
from lhtrio.replica.names import checksum_file, disk_file, is_head_file, meta_file, tmp_file

if TYPE_CHECKING:
    from lhtrio.replica.store import Replica

__all__ = [
    "mark_removed",
    "coalesce",
    "replace",
    "prune",
    "remove_disk",
    "apply",
    "purge",
]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def mark_removed(r: Replica, name: str) -> None:
    disk = disk_file(name)
    if disk == r._meta.head or is_head_file(disk):
        raise InvalidArgumentError(f"{name} is the volume head; it cannot be marked removed")
    found = r._disks.get(disk)
    if found is None or found.removed:
        return
    updated = attrs.evolve(found, removed=True)
    try:
        metalib.store(r._dir_fd, meta_file(disk), updated)
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot mark {name} removed") from None
    r._disks[disk] = updated
    r._refresh()


def _parent_and_child(r: Replica, source: str, target: str, *, head_child: bool) -> tuple[str, str]:
    src, src_meta = ops.snapshot_disk(r, source)
    tgt = disk_file(target)
    if tgt not in r._disks:
        raise NotFoundError(f"disk {target} does not exist in replica {r.path}")
    if r._disks[tgt].parent != src:
        raise InvalidArgumentError(f"{tgt} is not a child of {src}")
    if not src_meta.removed:
        raise ConflictError(f"{src} is not marked removed; mark it removed first")
    if head_child != (tgt == r._meta.head):
        which = "must" if head_child else "must not"
        raise InvalidArgumentError(f"{tgt} {which} be the volume head for this operation")
    return src, tgt


def coalesce(r: Replica, source: str, target: str) -> None:
    src, tgt = _parent_and_child(r, source, target, head_child=False)
    r._flush_locked()
    try:
        src_fd = ops.open_disk(r, src)
        try:
            tgt_fd = os.open(tgt, os.O_RDONLY | _O_CLOEXEC | os.O_NOFOLLOW, dir_fd=r._dir_fd)
            try:
                src_st, tgt_st = os.fstat(src_fd), os.fstat(tgt_fd)
                if (src_st.st_dev, src_st.st_ino) == (tgt_st.st_dev, tgt_st.st_ino):
                    return  # an interrupted replace already linked them
                if tgt_st.st_size > src_st.st_size:
                    os.ftruncate(src_fd, tgt_st.st_size)
                    os.fsync(src_fd)
                    grown = attrs.evolve(r._disks[src], size=tgt_st.st_size)
                    metalib.store(r._dir_fd, meta_file(src), grown)
                    r._disks[src] = grown
                for offset, length in fs.data_extents(tgt_fd):
                    fs.copy_range(tgt_fd, src_fd, offset, length)
                os.fdatasync(src_fd)
            finally:
                os.close(tgt_fd)
        finally:
            os.close(src_fd)
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot coalesce {tgt} into {src}") from None


def replace(r: Replica, target: str, source: str) -> None:
    src, tgt = _parent_and_child(r, source, target, head_child=False)
    if chainlib.children_map(r._disks)[src] != [tgt]:
        raise ConflictError(f"{src} has other children than {tgt}; it cannot be replaced")
    r._flush_locked()
    dir_fd = r._dir_fd
    grandparent = r._disks[src].parent
    updated = attrs.evolve(r._disks[tgt], parent=grandparent)
    try:
        fs.unlink_if_exists(dir_fd, checksum_file(tgt))
        fs.unlink_if_exists(dir_fd, tmp_file(tgt))
        os.link(src, tmp_file(tgt), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.rename(tmp_file(tgt), tgt, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        fs.fsync_dir(dir_fd)
        metalib.store(dir_fd, meta_file(tgt), updated)  # the commit point
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot replace {tgt} with {src}") from None
    r._disks[tgt] = updated
    del r._disks[src]
    if src in r._chain:
        layer = r._chain.index(src) + 1  # the source's layer; the target is the next one up
        ops.close_layer(r, layer + 1)  # the target's old file; the source's fd is the merged one
        del r._chain[layer - 1]
        r._index.merge_down(layer)
    r._refresh()
    ops.unlink_all(r, [src, checksum_file(src), meta_file(src)])


def prune(r: Replica, source: str, target: str) -> None:
    src, tgt = _parent_and_child(r, source, target, head_child=True)
    r._flush_locked()
    try:
        src_fd = ops.open_disk(r, src)
        try:
            for offset, length in fs.data_extents(r._head_fd):
                fs.punch_hole(src_fd, offset, length)
            os.fdatasync(src_fd)
        finally:
            os.close(src_fd)
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot prune {src} by {tgt}") from None


def remove_disk(r: Replica, name: str, *, force: bool = False) -> None:
    disk, found = ops.snapshot_disk(r, name)
    kids = chainlib.children_map(r._disks)[disk]
    if len(kids) > 1:
        raise ConflictError(f"snapshot {name} has {len(kids)} children; it cannot be removed")
    if kids and not force:
        raise ConflictError(
            f"snapshot {name} has a child ({kids[0]}); purge it (coalesce + replace) or force"
        )
    r._flush_locked()
    dir_fd = r._dir_fd
    try:
        if kids:
            # Marked removed first: a crash after the child is re-parented leaves this disk as a
            # removed leaf, which the next purge deletes, instead of a resurrected snapshot.
            if not found.removed:
                found = attrs.evolve(found, removed=True)
                metalib.store(dir_fd, meta_file(disk), found)
                r._disks[disk] = found
            child = kids[0]
            reparented = attrs.evolve(r._disks[child], parent=found.parent)
            metalib.store(dir_fd, meta_file(child), reparented)
            r._disks[child] = reparented
            if child == r._meta.head:
                r._store_volume_meta(attrs.evolve(r._meta, parent=found.parent))
        for leftover in (disk, checksum_file(disk)):
            fs.unlink_if_exists(dir_fd, leftover)
        fs.unlink_if_exists(dir_fd, meta_file(disk))  # the commit point
        fs.fsync_dir(dir_fd)
    except OSError as exc:
        raise ops.os_err(exc, r, f"cannot remove {disk}") from None
    del r._disks[disk]
    if disk in r._chain:
        layer = r._chain.index(disk) + 1
        ops.close_layer(r, layer)
        del r._chain[layer - 1]
        r._index.remove_layer(layer)
    r._refresh()


def apply(r: Replica, action: Action) -> None:
    if action.kind is ActionKind.REMOVE:
        remove_disk(r, action.source)
    elif action.kind is ActionKind.COALESCE:
        coalesce(r, action.source, action.target)
    elif action.kind is ActionKind.REPLACE:
        replace(r, action.target, action.source)
    else:
        prune(r, action.source, action.target)


def purge(r: Replica, progress: Callable[[int, int], None] | None) -> None:
    r._flush_locked()
    for disk in chainlib.purge_marks(r._disks, r._meta.head):
        mark_removed(r, disk)
    order = chainlib.purge_order(r._disks, r._meta.head)
    if progress is not None:
        progress(0, len(order))
    for done, disk in enumerate(order, 1):
        found = r._disks.get(disk)
        if found is not None and found.removed:
            for action in chainlib.prepare_remove(r._disks, r._meta.head, disk):
                apply(r, action)
        if progress is not None:
            progress(done, len(order))
