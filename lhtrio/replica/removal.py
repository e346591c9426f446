"""Removing snapshots: mark removed, the four actions, and purge (on the :class:`~.layers.Layers`).

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

import attrs

from lhtrio.errors import ConflictError, InvalidArgumentError, NotFoundError
from lhtrio.models.replica import ActionKind, RemovalAction
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.layers import Layers
from lhtrio.replica.names import (
    VOLUME_META,
    checksum_file,
    disk_file,
    is_head_file,
    meta_file,
    tmp_file,
)

__all__ = [
    "mark_removed",
    "coalesce",
    "replace",
    "prune",
    "remove_disk",
    "apply",
    "start_purge",
    "purge",
]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def mark_removed(layers: Layers, name: str) -> None:
    disk = disk_file(name)
    if disk == layers.head or is_head_file(disk):
        raise InvalidArgumentError(f"{name} is the volume head; it cannot be marked removed")
    found = layers.disk(disk)
    if found is None or found.removed:
        return
    try:
        layers.write_disk_meta(disk, attrs.evolve(found, removed=True))
    except OSError as exc:
        raise layers.error(exc, f"cannot mark {name} removed") from None


def _parent_and_child(
    layers: Layers, source: str, target: str, *, head_child: bool
) -> tuple[str, str]:
    src, src_meta = layers.snapshot_disk(source)
    tgt = disk_file(target)
    tgt_meta = layers.disk(tgt)
    if tgt_meta is None:
        raise NotFoundError(f"disk {target} does not exist in replica {layers.path}")
    if tgt_meta.parent != src:
        raise InvalidArgumentError(f"{tgt} is not a child of {src}")
    if not src_meta.removed:
        raise ConflictError(f"{src} is not marked removed; mark it removed first")
    if head_child != (tgt == layers.head):
        which = "must" if head_child else "must not"
        raise InvalidArgumentError(f"{tgt} {which} be the volume head for this operation")
    return src, tgt


def _open_rw(layers: Layers, disk: str) -> int:
    return layers.open(disk, os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW)


def coalesce(layers: Layers, source: str, target: str) -> None:
    src, tgt = _parent_and_child(layers, source, target, head_child=False)
    layers.flush()
    try:
        src_fd = _open_rw(layers, src)
        try:
            tgt_fd = layers.open(tgt, os.O_RDONLY | _O_CLOEXEC | os.O_NOFOLLOW)
            try:
                src_st, tgt_st = os.fstat(src_fd), os.fstat(tgt_fd)
                if (src_st.st_dev, src_st.st_ino) == (tgt_st.st_dev, tgt_st.st_ino):
                    return  # an interrupted replace already linked them
                if tgt_st.st_size > src_st.st_size:
                    os.ftruncate(src_fd, tgt_st.st_size)
                    os.fsync(src_fd)
                    grown = attrs.evolve(layers.disks[src], size=tgt_st.st_size)
                    layers.write_disk_meta(src, grown)
                for offset, length in fs.data_extents(tgt_fd):
                    fs.copy_range(tgt_fd, src_fd, offset, length)
                os.fdatasync(src_fd)
            finally:
                os.close(tgt_fd)
        finally:
            os.close(src_fd)
    except OSError as exc:
        raise layers.error(exc, f"cannot coalesce {tgt} into {src}") from None


def replace(layers: Layers, target: str, source: str) -> None:
    src, tgt = _parent_and_child(layers, source, target, head_child=False)
    if layers.children()[src] != [tgt]:
        raise ConflictError(f"{src} has other children than {tgt}; it cannot be replaced")
    layers.flush()
    dir_fd = layers.dir_fd
    grandparent = layers.disks[src].parent
    updated = attrs.evolve(layers.disks[tgt], parent=grandparent)
    try:
        fs.unlink_if_exists(dir_fd, checksum_file(tgt))
        fs.unlink_if_exists(dir_fd, tmp_file(tgt))
        os.link(src, tmp_file(tgt), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.rename(tmp_file(tgt), tgt, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        fs.fsync_dir(dir_fd)
        metalib.store(dir_fd, meta_file(tgt), updated)  # the commit point
    except OSError as exc:
        raise layers.error(exc, f"cannot replace {tgt} with {src}") from None
    layers.merge_into_child(src, tgt, updated)
    layers.unlink_all([src, checksum_file(src), meta_file(src)])


def prune(layers: Layers, source: str, target: str) -> None:
    src, tgt = _parent_and_child(layers, source, target, head_child=True)
    layers.flush()
    try:
        src_fd = _open_rw(layers, src)
        try:
            for offset, length in fs.data_extents(layers.fds[-1]):
                fs.punch_hole(src_fd, offset, length)
            os.fdatasync(src_fd)
        finally:
            os.close(src_fd)
    except OSError as exc:
        raise layers.error(exc, f"cannot prune {src} by {tgt}") from None


def remove_disk(layers: Layers, name: str, *, force: bool = False) -> None:
    disk, found = layers.snapshot_disk(name)
    kids = layers.children()[disk]
    if len(kids) > 1:
        raise ConflictError(f"snapshot {name} has {len(kids)} children; it cannot be removed")
    if kids and not force:
        raise ConflictError(
            f"snapshot {name} has a child ({kids[0]}); purge it (coalesce + replace) or force"
        )
    layers.flush()
    dir_fd = layers.dir_fd
    try:
        if kids:
            # Marked removed first: a crash after the child is re-parented leaves this disk as a
            # removed leaf, which the next purge deletes, instead of a resurrected snapshot.
            if not found.removed:
                found = attrs.evolve(found, removed=True)
                layers.write_disk_meta(disk, found)
            child = kids[0]
            reparented = attrs.evolve(layers.disks[child], parent=found.parent)
            layers.write_disk_meta(child, reparented)
            if child == layers.head:
                vmeta = attrs.evolve(layers.meta, parent=found.parent)
                try:
                    layers.write_volume_meta(vmeta)
                except OSError as exc:
                    raise layers.error(exc, f"cannot write {VOLUME_META}") from None
        for leftover in (disk, checksum_file(disk)):
            fs.unlink_if_exists(dir_fd, leftover)
        fs.unlink_if_exists(dir_fd, meta_file(disk))  # the commit point
        fs.fsync_dir(dir_fd)
    except OSError as exc:
        raise layers.error(exc, f"cannot remove {disk}") from None
    layers.drop_disk(disk)


def apply(layers: Layers, action: RemovalAction) -> None:
    if action.kind is ActionKind.REMOVE:
        remove_disk(layers, action.source)
    elif action.kind is ActionKind.COALESCE:
        coalesce(layers, action.source, action.target)
    elif action.kind is ActionKind.REPLACE:
        replace(layers, action.target, action.source)
    else:
        prune(layers, action.source, action.target)


def start_purge(layers: Layers) -> list[str]:
    """Flush, mark every system snapshot removed; the removed disks in purge order."""
    layers.flush()
    for disk in chainlib.purge_marks(layers.disks, layers.head):
        mark_removed(layers, disk)
    return chainlib.purge_order(layers.disks, layers.head)


def purge(layers: Layers, progress: Callable[[int, int], None] | None) -> None:
    order = start_purge(layers)
    if progress is not None:
        progress(0, len(order))
    for done, disk in enumerate(order, 1):
        found = layers.disk(disk)
        if found is not None and found.removed:
            for action in chainlib.prepare_remove(layers.disks, layers.head, disk):
                apply(layers, action)
        if progress is not None:
            progress(done, len(order))
