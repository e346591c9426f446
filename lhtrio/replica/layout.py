"""Reading and validating a replica directory at open, without changing anything.

:func:`scan` reads every file name and every piece of metadata, checks them, and returns a
:class:`Layout`: the metadata to run with plus the list of *leftovers* that a crash inside one of
the store's own operations can leave behind. It never writes, renames or deletes; the store removes
the leftovers only after the whole scan succeeded (and after it recorded Dirty=true), so a failed
open leaves the directory byte for byte as it was.

Every multi-file operation of the store has one commit point (the rename of ``volume.meta``, or of a
``.meta``), and is ordered so that each crash state is recognisable. These, and only these, are
leftovers:

1. ``<known file>.tmp`` — an atomic write or a link that was interrupted before its rename.
2. ``volume-head-NNN.*`` other than the live head, numbered live ± 1 — the new head of a snapshot,
   revert or expand that did not commit (+1), or the old head names of one that did (-1; its data
   lives on under the snapshot's name). Any other head number is refused as corrupt.
3. A snapshot whose ``.img`` is the same inode as the live head — a snapshot that linked the head
   but did not commit. Removing the name leaves the head untouched.
4. A snapshot ``.meta`` without its ``.img`` whose disk is a leaf outside the live chain — a
   snapshot that had not linked its file yet, or a removal that had deleted the file but not yet
   its metadata. Anywhere else a missing ``.img`` is corruption.
5. A ``.checksum`` whose disk is gone (or is a head).

Everything else that is unexpected — an unknown file name, a directory or symlink among the files,
a snapshot ``.img`` without ``.meta``, unparsable or inconsistent metadata, a broken or over-long
chain — raises :class:`~lhtrio.errors.CorruptMetadataError` naming the file and the problem.

**The head's parent.** The head's ``.meta`` is authoritative and ``volume.meta``'s ``Parent``
mirrors it. One operation writes the two apart: a forced removal of a snapshot whose child is the
head re-parents the head (its commit), then writes ``volume.meta``. So a mismatch is completed at
open (``volume.meta`` rewritten) only when it is that crash: ``volume.meta`` names a disk that
exists, is marked removed, and whose own parent is the head's parent. Any other mismatch is
refused, naming both files and both parents: which one is right is for a human to decide, and
"repairing" it would serve a snapshot's data as zeros.

**Sizes.** A layer shorter than the volume reads as zeros past its end, so a truncated snapshot
file would silently serve zeros. Every disk's ``.meta`` records the length its file must have
(``Size``): the volume's size when the disk was the head (create, snapshot, expand, revert), the
child's size after a coalesce extended it, the source's size after a rebuild's ``adopt``. The
volume only grows, so at open, outside a rebuild:

* the head's file is the volume's size (and so is its recorded ``Size``, if any);
* a snapshot's file is exactly its recorded ``Size``, which fits the volume;
* no disk is larger than any of its children (by recorded size, or the file's for a disk that
  has none), nor than the volume;
* the one legitimate exception: a removed snapshot with one child whose file is already its
  child's size but whose ``.meta`` still records the smaller one — a coalesce that extended the
  file and crashed before recording it.

A disk written before lhtrio recorded ``Size`` (its ``.meta`` lacks the key) is checked only
against the volume's size and against its children: a truncation of such a file is not detected.
While ``volume.meta`` says ``Rebuilding`` the sizes are only checked against the volume: an
``adopt`` that crashed between resizing a file and rewriting its ``.meta`` leaves them apart, and
nothing serves from such a replica until the engine verified it, which clears the flag only
through :func:`check_sizes` (:meth:`~lhtrio.replica.store.Replica.set_rebuilding`).

**Identity.** ``lhtrio-replica.json`` (:func:`read_identity`) names the volume and replica
instance the directory was created for; the caller compares it before validating the rest.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping

import attrs

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SIZE
from lhtrio.replica.meta import SECTOR_SIZE, DiskMeta, ReplicaIdentity, VolumeMeta
from lhtrio.replica.names import (
    IDENTITY,
    REVISION_COUNTER,
    VOLUME_META,
    FileKind,
    checksum_file,
    classify,
    head_number,
    meta_file,
    snapshot_name,
)

__all__ = ["Layout", "scan", "check_sizes", "read_identity"]


@attrs.frozen(kw_only=True)
class Layout:
    """A validated replica directory.

    ``disks`` holds the live head and every snapshot (names re-derived from file names); ``chain``
    is the live chain, head first; ``volume.parent`` is the head's parent (it differs from what
    ``volume.meta`` holds only after an interrupted forced removal, see the module docstring);
    ``leftovers`` are file names safe to delete.
    """

    volume: VolumeMeta
    counter: int
    disks: dict[str, DiskMeta]
    chain: list[str]
    leftovers: list[str]


@attrs.define
class _DiskFiles:
    img: bool = False
    meta: bool = False
    checksum: bool = False


def scan(dir_fd: int, origin: str) -> Layout:
    """Validate the replica directory open as ``dir_fd`` (``origin`` is its path, for errors)."""

    def where(name: str) -> str:
        return f"{origin}/{name}"

    files: dict[str, _DiskFiles] = {}
    tmps: list[str] = []
    try:
        entries = list(os.scandir(dir_fd))
    except OSError as exc:
        raise fs.os_error(exc, f"cannot list replica directory {origin}") from None
    for entry in sorted(entries, key=lambda e: e.name):
        parsed = classify(entry.name)
        if parsed is None:
            raise CorruptMetadataError(
                f"{where(entry.name)}: unknown file in a replica directory; move it elsewhere"
            )
        if not entry.is_file(follow_symlinks=False):
            raise CorruptMetadataError(f"{where(entry.name)}: not a regular file")
        kind = parsed.kind
        if kind is FileKind.TMP:
            tmps.append(entry.name)
        elif kind in (FileKind.HEAD_IMG, FileKind.SNAP_IMG):
            files.setdefault(parsed.disk, _DiskFiles()).img = True
        elif kind in (FileKind.HEAD_META, FileKind.SNAP_META):
            files.setdefault(parsed.disk, _DiskFiles()).meta = True
        elif kind in (FileKind.HEAD_CHECKSUM, FileKind.SNAP_CHECKSUM):
            files.setdefault(parsed.disk, _DiskFiles()).checksum = True

    volume = metalib.load(dir_fd, VOLUME_META, VolumeMeta, where=where(VOLUME_META))
    _check_volume(volume, where(VOLUME_META))
    counter = metalib.load_counter(dir_fd, REVISION_COUNTER, where=where(REVISION_COUNTER))

    head = volume.head
    live = files.get(head, _DiskFiles())
    if not live.img:
        raise CorruptMetadataError(f"{where(VOLUME_META)}: the head file {head} is missing")
    if not live.meta:
        raise CorruptMetadataError(f"{where(meta_file(head))}: the file is missing")
    head_stat = _stat(dir_fd, head, where)
    if head_stat.st_size != volume.size:
        raise CorruptMetadataError(
            f"{where(head)}: the head is {head_stat.st_size} bytes, volume.meta says the volume "
            f"is {volume.size}"
        )

    leftovers: list[str] = []
    disks: dict[str, DiskMeta] = {}
    lengths: dict[str, int] = {head: head_stat.st_size}
    head_no = head_number(head)
    assert head_no is not None  # checked by _check_volume
    missing_img: list[str] = []
    for disk, present in sorted(files.items()):
        number = head_number(disk)
        if number is not None and disk != head:
            if abs(number - head_no) != 1:
                raise CorruptMetadataError(
                    f"{where(disk)}: unexpected head file, the live head is {head}; a crashed "
                    f"operation leaves only the head numbered one above or below"
                )
            leftovers.extend(_names(disk, present))
            continue
        if not present.meta:
            if present.img:
                raise CorruptMetadataError(
                    f"{where(disk)}: the snapshot has no {meta_file(disk)}; restore it or move the "
                    f"file elsewhere"
                )
            continue  # a lone .checksum: rule 5 below
        loaded = metalib.load(dir_fd, meta_file(disk), DiskMeta, where=where(meta_file(disk)))
        loaded = attrs.evolve(loaded, name=disk)
        if loaded.parent and snapshot_name(loaded.parent) is None:
            raise CorruptMetadataError(
                f"{where(meta_file(disk))}: its parent {loaded.parent!r} is not a snapshot file"
            )
        if disk != head and present.img:
            st = _stat(dir_fd, disk, where)
            if (st.st_dev, st.st_ino) == (head_stat.st_dev, head_stat.st_ino):
                leftovers.extend(_names(disk, present))  # rule 3: snapshot did not commit
                continue
            if st.st_size > volume.size:
                raise CorruptMetadataError(
                    f"{where(disk)}: the snapshot is {st.st_size} bytes, larger than the volume "
                    f"({volume.size} bytes)"
                )
            lengths[disk] = st.st_size
        elif disk != head:
            missing_img.append(disk)
        disks[disk] = loaded

    chain = chainlib.validate(disks, head, origin=origin)
    _check_parent(volume, disks, head, where)
    children = chainlib.children_map(disks)
    for disk in missing_img:
        if disk in chain or children[disk]:
            raise CorruptMetadataError(
                f"{where(disk)}: the file is missing but the snapshot is still in use "
                f"({'in the live chain' if disk in chain else 'it has children'})"
            )
        leftovers.extend(_names(disk, files[disk]))  # rule 4
        del disks[disk]
    for disk, present in sorted(files.items()):
        if present.checksum and (disk not in disks or disk == head):
            name = checksum_file(disk)
            if name not in leftovers:
                leftovers.append(name)  # rule 5
    leftovers.extend(tmps)  # rule 1

    check_sizes(
        disks,
        lengths,
        head=head,
        volume_size=volume.size,
        rebuilding=volume.rebuilding,
        where=where,
    )
    volume = attrs.evolve(volume, parent=disks[head].parent)
    return Layout(volume=volume, counter=counter, disks=disks, chain=chain, leftovers=leftovers)


def _check_parent(
    volume: VolumeMeta, disks: Mapping[str, DiskMeta], head: str, where: Callable[[str], str]
) -> None:
    """``volume.meta``'s Parent must be the head's, but for an interrupted forced removal."""
    parent = disks[head].parent
    if volume.parent == parent:
        return
    pending = disks.get(volume.parent) if volume.parent else None
    if pending is not None and pending.removed and pending.parent == parent:
        return  # remove_disk(force) re-parented the head and crashed before volume.meta
    raise CorruptMetadataError(
        f"{where(VOLUME_META)} names {volume.parent or '(none)'} as the parent of the head "
        f"{head}, but {where(meta_file(head))} names {parent or '(none)'}; no operation leaves "
        f"them so: find out which is right and restore the other file (nothing was changed)"
    )


def check_sizes(
    disks: Mapping[str, DiskMeta],
    lengths: Mapping[str, int],
    *,
    head: str,
    volume_size: int,
    rebuilding: bool,
    where: Callable[[str], str],
) -> None:
    """Check every disk's file length against its recorded size, its children and the volume.

    ``lengths`` maps a disk to its file's length (disks without a file are skipped). The rules
    are in the module docstring; CorruptMetadataError naming the file and both sizes otherwise.
    """
    for disk, meta in sorted(disks.items()):
        recorded = meta.size
        if recorded is None:
            continue
        if recorded < 0 or recorded % BLOCK_SIZE or recorded > volume_size:
            raise CorruptMetadataError(
                f"{where(meta_file(disk))}: Size {recorded} is not a multiple of {BLOCK_SIZE} "
                f"between 0 and the volume's size ({volume_size} bytes)"
            )
        if disk == head and recorded != volume_size:
            raise CorruptMetadataError(
                f"{where(meta_file(disk))}: the head's Size is {recorded}, volume.meta says the "
                f"volume is {volume_size} bytes"
            )
    if rebuilding:
        return
    children = chainlib.children_map(disks)

    def size(disk: str) -> int:
        if disk == head:
            return volume_size
        recorded = disks[disk].size
        return lengths[disk] if recorded is None else recorded

    for disk, meta in sorted(disks.items()):
        if disk == head or disk not in lengths:
            continue
        length, recorded, kids = lengths[disk], meta.size, children[disk]
        if recorded is not None and length != recorded:
            coalescing = (
                meta.removed and len(kids) == 1 and recorded < length == size(kids[0])
            )  # a coalesce extended the file and crashed before recording its new size
            if not coalescing:
                raise CorruptMetadataError(
                    f"{where(disk)}: the file is {length} bytes, but {meta_file(disk)} records "
                    f"{recorded}: it was truncated or extended outside lhtrio; restore the file "
                    f"or rebuild the replica"
                )
        for kid in kids:
            if size(disk) > size(kid):
                raise CorruptMetadataError(
                    f"{where(disk)}: it is {size(disk)} bytes, larger than its child {kid} "
                    f"({size(kid)} bytes), but a volume only grows: the file or its .meta was "
                    f"changed outside lhtrio"
                )


def read_identity(dir_fd: int, origin: str) -> ReplicaIdentity | None:
    """The directory's identity record, None if it has none (created before lhtrio wrote it)."""
    where = f"{origin}/{IDENTITY}"
    try:
        st = os.stat(IDENTITY, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fs.os_error(exc, f"cannot stat {where}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CorruptMetadataError(f"{where}: not a regular file")
    identity = metalib.load(dir_fd, IDENTITY, ReplicaIdentity, where=where)
    try:
        validate_volume_name(identity.volume)
        validate_instance_name(identity.instance)
    except InvalidArgumentError as exc:
        raise CorruptMetadataError(f"{where}: {exc.message}") from None
    return identity


def _check_volume(volume: VolumeMeta, where: str) -> None:
    if volume.size <= 0 or volume.size % BLOCK_SIZE:
        raise CorruptMetadataError(
            f"{where}: Size {volume.size} is not a positive multiple of {BLOCK_SIZE}"
        )
    if volume.sector_size != SECTOR_SIZE:
        raise CorruptMetadataError(
            f"{where}: SectorSize {volume.sector_size} is not supported (only {SECTOR_SIZE})"
        )
    if head_number(volume.head) is None:
        raise CorruptMetadataError(f"{where}: Head {volume.head!r} is not a head file name")
    if volume.parent and snapshot_name(volume.parent) is None:
        raise CorruptMetadataError(f"{where}: Parent {volume.parent!r} is not a snapshot file")
    if volume.backing_file_path:
        raise CorruptMetadataError(
            f"{where}: BackingFilePath {volume.backing_file_path!r} is set; backing files are "
            f"not supported"
        )


def _stat(dir_fd: int, name: str, where: Callable[[str], str]) -> os.stat_result:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise fs.os_error(exc, f"cannot stat {where(name)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CorruptMetadataError(f"{where(name)}: not a regular file")
    return st


def _names(disk: str, present: _DiskFiles) -> list[str]:
    names = []
    if present.img:
        names.append(disk)
    if present.checksum:
        names.append(checksum_file(disk))
    if present.meta:
        names.append(meta_file(disk))
    return names
