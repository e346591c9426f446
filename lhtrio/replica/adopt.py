"""A rebuild target adopts its source's disk graph, then reloads (no trio, no network).

A rebuild (``longhorn-facts.md`` §4.1) makes a *target* replica hold every snapshot file of a
healthy *source*. The engine first takes the same system snapshot on both, so their heads have a
parent of the same name and every write since reaches both heads. Then :func:`adopt` gives the
target the source's graph — metadata only, in one short step under the replica's exclusive lock:

1. every snapshot only the source has gets its ``.meta`` (the source's, with the file's size as
   ``Size``) and then an empty sparse ``.img`` of that size, parents before children;
2. every snapshot both have is resized to the source's size and gets the source's ``.meta``;
3. every snapshot only the target has is deleted, children first (``.checksum``, ``.img``, then
   ``.meta``);
4. the layers are reloaded (:func:`reload`): the chain is validated and reopened from the
   directory.

Each step leaves a directory that :mod:`.layout` accepts: a ``.meta`` without its ``.img`` is a
leaf outside the live chain (a leftover), and every ``.meta`` written names a parent that exists.
The data of the snapshot files arrives afterwards (:mod:`.sync`) straight into those files, and
stays meaningless until the engine verified the result: the replica records ``Rebuilding=true``
before, and clears it only after, so an interrupted rebuild is never taken for a healthy replica
(the engine sets such a replica to ERR at start; a new rebuild reuses what already arrived).

The plan comes from the network and is checked as strictly as a snapshot request (names, labels,
times, sizes that fit the volume and never shrink from parent to child): whatever ``adopt``
accepts and writes must reopen. Step 2 resizes a file and then rewrites its ``.meta``; a crash in
between leaves the two apart, which :mod:`.layout` accepts only while the replica is marked
rebuilding. :func:`check_complete` is the check that clearing that mark requires.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from lhtrio.errors import ConflictError, CorruptMetadataError, InvalidArgumentError
from lhtrio.models.names import validate_labels
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs, layout, lifecycle
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SIZE
from lhtrio.replica.layers import Layers
from lhtrio.replica.meta import DiskMeta
from lhtrio.replica.names import checksum_file, meta_file, snapshot_name

__all__ = ["PlannedDisk", "adopt", "reload", "check_complete"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@attrs.frozen(kw_only=True)
class PlannedDisk:
    """One snapshot file of the source: its metadata and the file's size in bytes (which
    :func:`adopt` records as the metadata's ``size``)."""

    meta: DiskMeta
    size: int


def _check_plan(layers: Layers, plan: Mapping[str, PlannedDisk]) -> None:
    head = layers.head
    volume_size = layers.size
    for name, disk in plan.items():
        if snapshot_name(name) is None or name != disk.meta.name:
            raise InvalidArgumentError(f"rebuild plan: {name!r} is not a snapshot file name")
        if disk.meta.parent and disk.meta.parent not in plan:
            raise InvalidArgumentError(
                f"rebuild plan: the parent {disk.meta.parent} of {name} is not in the plan"
            )
        if disk.size < 0 or disk.size > volume_size or disk.size % BLOCK_SIZE:
            raise InvalidArgumentError(
                f"rebuild plan: {name} has size {disk.size}, which does not fit volume "
                f"{layers.identity.volume} ({volume_size} bytes)"
            )
        if disk.meta.labels is not None:
            try:
                validate_labels(disk.meta.labels)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"rebuild plan: {name}: {exc.message}") from None
    for name, disk in plan.items():
        above = plan.get(disk.meta.parent)
        if above is not None and above.size > disk.size:
            raise InvalidArgumentError(
                f"rebuild plan: {disk.meta.parent} ({above.size} bytes) is larger than its "
                f"child {name} ({disk.size} bytes), but a volume only grows"
            )
    head_meta = layers.disks[head]
    if head_meta.parent not in plan:
        raise ConflictError(
            f"replica {layers.path}: its head's parent {head_meta.parent or '(none)'} is not "
            "among the source's snapshots; the engine snapshots both before a rebuild"
        )
    try:
        chainlib.validate({n: d.meta for n, d in plan.items()} | {head: head_meta}, head)
    except CorruptMetadataError as exc:
        raise InvalidArgumentError(f"rebuild plan: {exc.message}") from None


def _depth_order(plan: Mapping[str, PlannedDisk]) -> list[str]:
    """Plan disks parents first."""

    def depth(name: str) -> int:
        n = 0
        while name:
            name = plan[name].meta.parent
            n += 1
        return n

    return sorted(plan, key=lambda name: (depth(name), name))


def adopt(layers: Layers, plan: Mapping[str, PlannedDisk]) -> list[str]:
    """Give ``layers`` the disk graph of ``plan`` (see the module docstring); reload them.

    Returns the snapshot files the target already had (a returning replica): the sync compares
    those instead of copying them. Caller: the store, under the layers' lock, with no data-path
    call running; the replica must be marked rebuilding.
    """
    if not layers.meta.rebuilding:
        raise ConflictError(
            f"replica {layers.path} is not marked rebuilding: refusing to adopt files"
        )
    _check_plan(layers, plan)
    layers.flush()
    dir_fd = layers.dir_fd
    head = layers.head
    disks = dict(layers.disks)
    existing = sorted(name for name in plan if name in disks)
    try:
        for name in _depth_order(plan):
            disk = plan[name]
            meta = attrs.evolve(disk.meta, size=disk.size)
            if name not in disks:
                metalib.store(dir_fd, meta_file(name), meta)
                fd = layers.open(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC)
            else:
                fd = layers.open(name, os.O_RDWR | _O_CLOEXEC | os.O_NOFOLLOW)
            try:
                if os.fstat(fd).st_size != disk.size:
                    os.ftruncate(fd, disk.size)
                os.fsync(fd)
            finally:
                os.close(fd)
            if name in disks and disks[name] != meta:
                metalib.store(dir_fd, meta_file(name), meta)
        doomed = [name for name in disks if name != head and name not in plan]
        children = chainlib.children_map({n: disks[n] for n in doomed})
        for name in _children_first(doomed, children):
            for file in (checksum_file(name), name, meta_file(name)):
                fs.unlink_if_exists(dir_fd, file)
        fs.fsync_dir(dir_fd)
    except OSError as exc:
        raise layers.error(exc, "cannot adopt the source's snapshots") from None
    reload(layers)
    return existing


def _children_first(names: list[str], children: Mapping[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for child in children.get(name, []):
            visit(child)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


def reload(layers: Layers) -> None:
    """Re-read and reopen the chain of ``layers`` from the directory (files were replaced
    underneath).

    Caller: the store, under the layers' lock, with no data-path call running. The in-memory
    revision counter is kept (a flush persisted it first).
    """
    layers.flush()
    opened = lifecycle.rescan(layers.dir_fd, layers.path, layers.identity)
    if opened.meta.size != layers.size:  # pragma: no cover - the directory is locked by us
        for fd in opened.fds[1:]:
            os.close(fd)
        raise ConflictError(f"replica {layers.path} changed size while it was open")
    layers.reopen(opened)


def check_complete(layers: Layers) -> None:
    """ConflictError unless every disk has the size :mod:`.layout` requires outside a rebuild
    (an ``adopt`` that crashed half-way leaves files and ``.meta`` sizes apart)."""
    lengths: dict[str, int] = {}
    try:
        for name in layers.disks:
            if name != layers.head:
                lengths[name] = layers.stat(name).st_size
    except OSError as exc:
        raise layers.error(exc, "cannot check the snapshot files' sizes") from None
    try:
        layout.check_sizes(
            layers.disks,
            lengths,
            head=layers.head,
            volume_size=layers.size,
            rebuilding=False,
            where=lambda name: f"{layers.path}/{name}",
        )
    except CorruptMetadataError as exc:
        raise ConflictError(
            f"replica {layers.path} cannot leave the rebuild: {exc.message}; rebuild it again"
        ) from None
