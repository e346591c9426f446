"""The open chain of one replica: its layer files, their metadata, the read index and the head.

A replica's live chain is a stack of sparse files, oldest first (layer 1) up to the head (layer
``n``). :class:`Layers` owns what describes and opens it — ``volume.meta``, every disk's
``.meta``, one open descriptor per layer, the read index, the directory descriptor — and is the
one interface through which the structural operations (:mod:`.snapshots`, :mod:`.removal`,
:mod:`.adopt`, :mod:`.checksum`, :mod:`.transfer`) read and change them. Nothing else touches
these files' metadata while the replica is open.

The data path (:class:`~lhtrio.replica.datapath.DataPath`) keeps references to :attr:`Layers.fds`
and :attr:`Layers.index` so that a read or write pays no extra indirection: both are therefore
changed *in place* only, never replaced, and only by the methods below; after any structural
change the data path re-reads the rest (head descriptor, size, how deep unmap punches).

Rules every structural operation follows:

- it runs with :attr:`Layers.lock` held and the data path quiet (see the concurrency contract in
  :mod:`.datapath`; ``coalesce`` and ``checksum`` are the documented exceptions), checks the
  request completely, then calls :meth:`Layers.flush` before its first change, so no file it
  closes or renames holds unflushed writes and the persisted revision counter is current;
- it changes files in an order with a single commit point (the rename of ``volume.meta`` or of
  one ``.meta``, :meth:`Layers.commit`), so that every crash state is either the old state, the
  new state, or the old or new state plus leftovers that :mod:`.layout` recognises and removes at
  the next open; only after the commit does it change the in-memory chain (:meth:`push_head`,
  :meth:`replace_chain`, :meth:`merge_into_child`, :meth:`drop_disk`, :meth:`reopen`).

Errors (:meth:`Layers.error`): an OS error that the *request* caused — a name the file system
refuses (``ENAMETOOLONG``, ``EINVAL``), a size it cannot hold (``EFBIG``) — is an
:class:`~lhtrio.errors.InvalidArgumentError` and leaves the replica as it was; only a commit that
may not be durable fails the replica for good (:attr:`Layers.failed`). The checks before each
operation (names, labels, times, sizes) are meant to refuse such requests before any file is
touched; this is the net below.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import types
from collections.abc import Callable, Mapping

import attrs

from lhtrio.errors import (
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    ShuttingDownError,
    StorageError,
)
from lhtrio.models.replica import DiskInfo
from lhtrio.replica import chain as chainlib
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SHIFT, ReadIndex
from lhtrio.replica.lifecycle import Opened
from lhtrio.replica.meta import DiskMeta, ReplicaIdentity, VolumeMeta
from lhtrio.replica.names import VOLUME_META, disk_file, is_head_file, meta_file

__all__ = ["Layers"]

logger = logging.getLogger("lhtrio.replica")

#: OS errors that the arguments of a request cause, not the disk.
_REQUEST_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EFBIG})


def _unowned_flush() -> None:
    raise AssertionError("Layers.flush called before the owner set its flush (set_flush)")


@attrs.define(eq=False)
class Layers:
    """The live chain of one open replica directory (see the module docstring).

    ``fds[i]`` is layer ``i``'s descriptor (``fds[0]`` is unused), ``chain[i - 1]`` its disk file
    name, oldest first; the head is the last of both. ``dir_fd`` is the directory, every file
    name is relative to it.
    """

    path: str
    identity: ReplicaIdentity
    dir_fd: int
    _meta: VolumeMeta = attrs.field(alias="meta")
    _disks: dict[str, DiskMeta] = attrs.field(alias="disks")
    _chain: list[str] = attrs.field(alias="chain")
    fds: list[int]
    index: ReadIndex = attrs.field(init=False)
    lock: threading.RLock = attrs.field(init=False, factory=threading.RLock, repr=False)
    """Serialises flushes, structural changes and close (the store's flush lock)."""
    _failed: str = attrs.field(init=False, default="")
    _closed: bool = attrs.field(init=False, default=False)
    _flush: Callable[[], None] = attrs.field(init=False, default=_unowned_flush, repr=False)

    def __attrs_post_init__(self) -> None:
        self.index = ReadIndex(
            self._meta.size >> BLOCK_SHIFT, len(self._chain), fs.resolver(self.fds, self.path)
        )

    @classmethod
    def from_opened(cls, opened: Opened, identity: ReplicaIdentity) -> Layers:
        """The layers of a directory :mod:`.lifecycle` validated and opened (its descriptors are
        now owned by the result)."""
        return cls(
            path=opened.path,
            identity=identity,
            dir_fd=opened.dir_fd,
            meta=opened.meta,
            disks=opened.disks,
            chain=opened.chain,
            fds=opened.fds,
        )

    # -- what the chain is ------------------------------------------------------------------------

    @property
    def meta(self) -> VolumeMeta:
        """``volume.meta`` as last written."""
        return self._meta

    @property
    def head(self) -> str:
        return self._meta.head

    @property
    def size(self) -> int:
        return self._meta.size

    @property
    def disks(self) -> Mapping[str, DiskMeta]:
        """Every disk (snapshots and the head) by file name (a read-only view)."""
        return types.MappingProxyType(self._disks)

    @property
    def chain(self) -> tuple[str, ...]:
        """The live chain's disk file names, oldest first (the head last)."""
        return tuple(self._chain)

    def disk(self, name: str) -> DiskMeta | None:
        """The metadata of disk file ``name``, None if there is no such disk."""
        return self._disks.get(name)

    def children(self) -> dict[str, list[str]]:
        return chainlib.children_map(self._disks)

    def snapshot_disk(self, name: str) -> tuple[str, DiskMeta]:
        """A snapshot (bare name or disk file name) that must exist and must not be the head."""
        disk = disk_file(name)
        if disk == self._meta.head or is_head_file(disk):
            raise InvalidArgumentError(f"{name} is the volume head, not a snapshot")
        found = self._disks.get(disk)
        if found is None:
            raise NotFoundError(f"snapshot {name} does not exist in replica {self.path}")
        return disk, found

    def unmap_layers(self) -> int:
        """How many layers an unmap punches: the head and every removed disk directly below it
        that has no other child (Longhorn's rule)."""
        children = chainlib.children_map(self._disks)
        layers = 1
        for disk in reversed(self._chain[:-1]):
            if not self._disks[disk].removed or len(children[disk]) != 1:
                break
            layers += 1
        return layers

    def check(self) -> None:
        """Assert the in-memory invariants (after a structural change)."""
        assert self.index.layers == len(self._chain) == len(self.fds) - 1, (
            self.index.layers,
            self._chain,
            self.fds,
        )

    # -- state of the replica ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> str:
        """Why the files can no longer be trusted (a flush or a commit that may not be durable),
        or ""; sticky."""
        return self._failed

    def fail(self, reason: str) -> StorageError:
        """Record ``reason`` as the replica's failure (sticky); the error to raise."""
        self._failed = reason
        return StorageError(reason)

    def check_open(self) -> None:
        if self._closed:
            raise ShuttingDownError(f"replica {self.path} is closed")

    def set_flush(self, flush: Callable[[], None]) -> None:
        """Set the owner's flush, which :meth:`flush` runs (the store does this once)."""
        self._flush = flush

    def flush(self) -> None:
        """Make every write so far durable and persist the revision counter (the owner's flush;
        call with :attr:`lock` held)."""
        self._flush()

    def close(self) -> None:
        """Close every layer and the directory (which releases its lock). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for fd in self.fds[1:]:
            os.close(fd)
        del self.fds[1:]
        os.close(self.dir_fd)

    # -- files ------------------------------------------------------------------------------------

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        """``os.open`` of ``name`` in the directory (raises OSError)."""
        return os.open(name, flags, mode, dir_fd=self.dir_fd)

    def stat(self, name: str) -> os.stat_result:
        """``os.stat`` of ``name`` in the directory, not following links (raises OSError)."""
        return os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists in the directory (OSError for anything but "no such file")."""
        try:
            self.stat(name)
        except FileNotFoundError:
            return False
        return True

    def error(self, exc: OSError, what: str) -> LhtrioError:
        """The error to raise for ``exc``; a commit that may not be durable fails the replica.

        An error the request caused (see the module docstring) is an InvalidArgumentError.
        """
        error = fs.os_error(exc, f"{what} in replica {self.path}")
        if isinstance(exc, fs.NotDurableError) or exc.errno == errno.EIO:
            # EIO: the disk lost a write; Linux reports that once, to whichever fsync asks
            # first (a device's failed cache flush too), so this file's error may be another's
            # lost data: nothing in the replica can be vouched for any more.
            return self.fail(
                f"{error.message}; a change may not be durable, the replica must be rebuilt"
            )
        if exc.errno in _REQUEST_ERRNOS:
            return InvalidArgumentError(
                f"{what} in replica {self.path}: the file system refused the request "
                f"({exc.strerror or exc}); nothing was changed"
            )
        return error

    def rollback(self, undo: list[Callable[[], object]], exc: BaseException) -> None:
        """Run the undo steps of a failed operation, newest first (not after a commit)."""
        for step in reversed(undo):
            try:
                step()
            except OSError as cleanup:
                exc.add_note(f"rollback step failed in replica {self.path}: {cleanup}")

    def commit(
        self,
        name: str,
        value: VolumeMeta | DiskMeta,
        undo: list[Callable[[], object]],
        what: str,
    ) -> None:
        """Write the commit point of an operation; roll back on failure, unless it took effect.

        Writing ``volume.meta`` does not change :attr:`meta`: the in-memory change follows the
        commit (``push_head``, ``replace_chain``).
        """
        try:
            metalib.store(self.dir_fd, name, value)
        except fs.NotDurableError as exc:
            raise self.error(exc, what) from None  # the new file is in place: no rollback
        except BaseException as exc:
            self.rollback(undo, exc)
            if isinstance(exc, OSError):
                raise self.error(exc, what) from None
            raise

    def write_volume_meta(self, vmeta: VolumeMeta) -> None:
        """Write ``volume.meta`` durably and take it as :attr:`meta` (raises OSError)."""
        metalib.store(self.dir_fd, VOLUME_META, vmeta)
        self._meta = vmeta

    def write_disk_meta(self, disk: str, meta: DiskMeta) -> None:
        """Write ``disk``'s ``.meta`` durably and take it as its metadata (raises OSError)."""
        metalib.store(self.dir_fd, meta_file(disk), meta)
        self._disks[disk] = meta

    def unlink_all(self, names: list[str]) -> None:
        """Post-commit cleanup: failures only leave leftovers that the next open removes."""
        try:
            for name in names:
                fs.unlink_if_exists(self.dir_fd, name)
            fs.fsync_dir(self.dir_fd)
        except OSError as exc:
            logger.warning(
                "replica %s: could not remove %s (%s); open removes it later", self.path, names, exc
            )

    # -- changes of the chain (after their commit) ------------------------------------------------

    def push_head(
        self, vmeta: VolumeMeta, snapshot: DiskMeta, head: DiskMeta, head_fd: int
    ) -> None:
        """The old head became ``snapshot`` and the new, empty ``head`` (open as ``head_fd``)
        sits on top of it; ``vmeta`` names it."""
        old_head = self._meta.head
        self._meta = vmeta
        del self._disks[old_head]
        self._disks[snapshot.name] = snapshot
        self._disks[head.name] = head
        self._chain[-1] = snapshot.name
        self._chain.append(head.name)
        self.fds.append(head_fd)
        self.index.add_layer()

    def replace_chain(
        self, vmeta: VolumeMeta, chain: list[str], fds: list[int], head: DiskMeta
    ) -> None:
        """A new live chain (oldest first, the new ``head`` last, each open as in ``fds``): the
        old head is dropped, every old descriptor closed, the read index forgets everything."""
        old_head = self._meta.head
        self._meta = vmeta
        for old in self.fds[1:]:
            os.close(old)
        del self.fds[1:]
        self.fds.extend(fds)
        del self._disks[old_head]
        self._disks[head.name] = head
        self._chain[:] = chain
        self.index.reset(len(self._chain))

    def merge_into_child(self, source: str, target: str, meta: DiskMeta) -> None:
        """``source``'s file took the name of its child ``target`` (coalesce + replace), whose
        metadata is now ``meta``: the two layers become one, on ``source``'s descriptor, and
        ``source`` is gone."""
        self._disks[target] = meta
        del self._disks[source]
        if source in self._chain:
            layer = self._chain.index(source) + 1  # the target's layer is the next one up
            os.close(self.fds.pop(layer + 1))  # its old file; the source's fd is the merged one
            del self._chain[layer - 1]
            self.index.merge_down(layer)

    def drop_disk(self, disk: str) -> None:
        """``disk``'s files are gone: forget it (and close its layer if it had one)."""
        del self._disks[disk]
        if disk in self._chain:
            layer = self._chain.index(disk) + 1
            os.close(self.fds.pop(layer))
            del self._chain[layer - 1]
            self.index.remove_layer(layer)

    def reopen(self, opened: Opened) -> None:
        """The directory was validated and opened again (:func:`.lifecycle.rescan`): take its
        chain and descriptors, close the old ones."""
        for fd in self.fds[1:]:
            os.close(fd)
        self.fds[1:] = opened.fds[1:]
        self._meta = opened.meta
        self._disks = dict(opened.disks)
        self._chain[:] = opened.chain
        self.index.reset(len(self._chain))

    # -- reading ----------------------------------------------------------------------------------

    def describe(self) -> tuple[dict[str, DiskInfo], os.stat_result]:
        """Every disk as :class:`DiskInfo` (sizes from the files), and the head's ``fstat``."""
        children = chainlib.children_map(self._disks)
        disks = {}
        try:
            for name, disk in self._disks.items():
                st = self.stat(name)
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
            head_stat = os.fstat(self.fds[-1])
        except OSError as exc:
            raise self.error(exc, "cannot stat disks") from None
        return disks, head_stat

    def allocation(self, offset: int, end: int) -> list[tuple[int, bool]]:
        """``(length, allocated)`` extents covering ``[offset, end)``, in order: allocated where
        any layer holds data (``SEEK_DATA``/``SEEK_HOLE`` on every layer)."""
        spans: list[tuple[int, int]] = []
        try:
            for fd in self.fds[1:]:
                for start, size in fs.data_extents(fd, offset, end):
                    spans.append((start, start + size))
        except OSError as exc:
            raise fs.os_error(exc, f"mapping replica {self.path}") from None
        spans.sort()
        out: list[tuple[int, bool]] = []
        pos = offset
        for start, stop in spans:
            if stop <= pos:
                continue
            if start > pos:
                out.append((start - pos, False))
                pos = start
            out.append((stop - pos, True))
            pos = stop
        if pos < end:
            out.append((end - pos, False))
        merged: list[tuple[int, bool]] = []
        for size, allocated in out:
            if merged and merged[-1][1] == allocated:
                merged[-1] = (merged[-1][0] + size, allocated)
            else:
                merged.append((size, allocated))
        return merged
