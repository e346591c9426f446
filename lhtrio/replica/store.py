"""The replica store: a directory of sparse files behind a synchronous, fast data path.

A :class:`Replica` is one open replica directory (layout in :mod:`lhtrio.replica.names`, format in
:mod:`lhtrio.replica.meta`) and the facade the service uses. It does no networking and knows
nothing of trio. Its parts:

- the data path, the flush and the revision counter — with the guarantee and the concurrency
  contract every caller relies on — are its base class, :class:`~lhtrio.replica.datapath.DataPath`;
- the chain it serves (layer files, their metadata, the read index, the head) is a
  :class:`~lhtrio.replica.layers.Layers`;
- creating and opening a directory is :mod:`.lifecycle`; the structural operations are
  :mod:`.snapshots` (snapshot, expand, revert), :mod:`.removal` (mark removed, coalesce, replace,
  prune, remove, purge), :mod:`.checksum` and :mod:`.adopt` (a rebuild target taking its source's
  disk graph); the file operations of a rebuild (both ends) are :mod:`.transfer`. Each works on
  the :class:`Layers`, never on the Replica.

Each structural method below holds the flush lock (``Layers.lock``), checks that the replica is
usable, runs the operation, and then lets the data path re-read what it caches from the chain —
also when the operation failed half-way.

No global state, no I/O in ``__init__``: :meth:`Replica.create` and :meth:`Replica.open` do the I/O.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import attrs

from lhtrio.models.replica import ActionKind, Checksum, MemberRecord, RemovalAction, ReplicaInfo
from lhtrio.replica import adopt as adoption
from lhtrio.replica import chain as chainlib
from lhtrio.replica import checksum as checksums
from lhtrio.replica import fs, lifecycle, members, removal, snapshots
from lhtrio.replica.adopt import PlannedDisk
from lhtrio.replica.datapath import DataPath
from lhtrio.replica.layers import Layers
from lhtrio.replica.meta import ReplicaIdentity
from lhtrio.replica.names import VOLUME_META, disk_file, validate_name

__all__ = ["Replica"]


def _identity(volume: str, instance: str) -> ReplicaIdentity:
    return ReplicaIdentity(
        volume=validate_name(volume, what="volume"),
        instance=validate_name(instance, what="instance"),
    )


@attrs.define(eq=False)
class Replica(DataPath):
    """One open replica directory. Build it with :meth:`create` or :meth:`open`."""

    # -- lifetime ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str, *, size: int, volume: str, instance: str) -> Replica:
        """Create a fresh replica in ``path`` (made if missing, else it must be empty); open it.

        ``size`` must be a positive multiple of 4096. The directory records ``volume`` and
        ``instance``: it is never opened as another's. See :mod:`.lifecycle`.
        """
        identity = _identity(volume, instance)
        path = os.path.abspath(path)
        lifecycle.create_files(path, size, identity)
        return cls.open(path, volume=volume, instance=instance)

    @classmethod
    def open(cls, path: str, *, volume: str, instance: str) -> Replica:
        """Validate and open the replica in ``path``; record Dirty=true.

        IdentityMismatchError, naming both, if the directory was created for another volume or
        instance (a directory without that record is adopted as ``volume``'s, see
        :mod:`.lifecycle`). Any inconsistency raises CorruptMetadataError naming the file and
        the problem, and leaves the directory untouched; leftovers of a crashed operation (see
        :mod:`.layout`) are removed only after that. While open the directory is locked: a
        second open raises ConflictError.
        """
        identity = _identity(volume, instance)
        opened = lifecycle.open_files(os.path.abspath(path), identity)
        assert opened.intent is not None
        return cls(
            path=opened.path,
            volume=volume,
            instance=instance,
            layers=Layers.from_opened(opened, identity),
            counter=opened.counter,
            intent=opened.intent,
        )

    def close(self) -> None:
        """Flush, persist the counter, record Dirty=false, release the files. Idempotent."""
        with self._flush_lock:
            if self.closed:
                return
            try:
                self._flush_locked()
                try:
                    self._layers.write_volume_meta(attrs.evolve(self._layers.meta, dirty=False))
                except OSError as exc:
                    raise fs.os_error(exc, f"cannot write {self.path}/{VOLUME_META}") from None
            finally:
                self._release()

    def abandon(self) -> None:
        """Close every file without flushing or writing metadata, as if the process died.

        The page cache keeps what was written; what was not flushed is not durable. For tests,
        and for dropping a replica whose disk failed.
        """
        with self._flush_lock:
            if not self.closed:
                self._release()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def layers(self) -> Layers:
        """The open chain, for the rebuild's file transfer (:mod:`.transfer`, :mod:`.sync`)."""
        return self._layers

    @contextmanager
    def _changing(self) -> Iterator[Layers]:
        """Hold the flush lock on a usable replica for a structural change of the layers; let
        the data path re-read them afterwards, whatever happened."""
        with self._flush_lock:
            self._check_usable()
            try:
                yield self._layers
            finally:
                self._refresh()

    # -- metadata ---------------------------------------------------------------------------------

    @property
    def rebuilding(self) -> bool:
        """Whether ``volume.meta`` records a rebuild into this replica in progress."""
        return self._layers.meta.rebuilding

    def set_rebuilding(self, rebuilding: bool) -> None:
        """Record in ``volume.meta`` whether a rebuild into this replica is in progress.

        Clearing the flag checks every snapshot file's size first (ConflictError if one is not
        what its ``.meta`` records, see :mod:`.layout`): a replica leaves a rebuild only in a
        state that reopens.
        """
        with self._flush_lock:
            self._check_usable()
            layers = self._layers
            if not rebuilding and layers.meta.rebuilding:
                adoption.check_complete(layers)
            try:
                layers.write_volume_meta(attrs.evolve(layers.meta, rebuilding=bool(rebuilding)))
            except OSError as exc:
                raise layers.error(exc, f"cannot write {VOLUME_META}") from None

    def members(self) -> MemberRecord:
        """The replica set the volume's engine last recorded here (see :mod:`.members`)."""
        with self._flush_lock:
            self._check_open()
            return members.read(self._layers)

    def set_members(self, record: MemberRecord) -> MemberRecord:
        """Record ``record`` durably unless a newer one is held; the one held afterwards."""
        with self._flush_lock:
            self._check_usable()
            return members.record(self._layers, record)

    def info(self) -> ReplicaInfo:
        with self._flush_lock:
            self._check_open()
            layers = self._layers
            disks, head = layers.describe()
            vmeta = layers.meta
            return ReplicaInfo(
                path=self.path,
                volume=self.volume,
                instance=self.instance,
                size=vmeta.size,
                sector_size=vmeta.sector_size,
                head=vmeta.head,
                parent=vmeta.parent,
                dirty=vmeta.dirty,
                rebuilding=vmeta.rebuilding,
                revision_counter=self.revision_counter,
                persisted_revision_counter=self.persisted_revision_counter,
                chain=tuple(reversed(layers.chain)),
                disks=disks,
                head_allocated=head.st_blocks * 512,
                last_modify_time=head.st_mtime_ns,
            )

    # -- snapshots (implemented in snapshots and removal) -----------------------------------------

    def snapshot(
        self,
        name: str,
        *,
        user_created: bool = True,
        created: dt.datetime | str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Turn the head into snapshot ``name`` and start a new, empty head.

        ``created`` is an RFC 3339 timestamp (the engine passes one value to every replica);
        default now. AlreadyExistsError if the snapshot exists.
        """
        with self._changing() as layers:
            snapshots.snapshot(
                layers, name, user_created=user_created, created=created, labels=labels
            )

    def mark_removed(self, name: str) -> None:
        """Mark a snapshot removed (purge reclaims it later). No-op if it does not exist."""
        with self._changing() as layers:
            removal.mark_removed(layers, name)

    def prepare_remove(self, name: str) -> list[RemovalAction]:
        """The actions that would remove snapshot ``name`` (it must be marked removed)."""
        with self._flush_lock:
            self._check_open()
            layers = self._layers
            return chainlib.prepare_remove(layers.disks, layers.head, disk_file(name))

    def coalesce(self, source: str, target: str) -> None:
        """Copy the data of ``target`` (the child) into ``source`` (its removed parent).

        May run beside the data path (see :mod:`.datapath`): it changes nothing the data path
        caches, so the data path does not re-read the layers afterwards.
        """
        with self._flush_lock:
            self._check_usable()
            removal.coalesce(self._layers, source, target)

    def replace(self, target: str, source: str) -> None:
        """Let the coalesced ``source`` take the name of its child ``target``; drop ``source``."""
        with self._changing() as layers:
            removal.replace(layers, target, source)

    def prune(self, source: str, target: str) -> None:
        """Punch holes in ``source`` (removed) wherever its child ``target``, the head, has data."""
        with self._changing() as layers:
            removal.prune(layers, source, target)

    def remove_disk(self, name: str, *, force: bool = False) -> None:
        """Delete a snapshot without children (``force``: also one with one child, losing data)."""
        with self._changing() as layers:
            removal.remove_disk(layers, name, force=force)

    def apply(self, action: RemovalAction) -> None:
        """Run one action returned by :meth:`prepare_remove`."""
        if action.kind is ActionKind.COALESCE:
            self.coalesce(action.source, action.target)
            return
        with self._changing() as layers:
            removal.apply(layers, action)

    def start_purge(self) -> list[str]:
        """Mark system snapshots removed; return the removed disks in purge order.

        For callers that run a purge step by step (the service does, so that coalesce runs
        beside the data path): for each disk, :meth:`prepare_remove` it (it may no longer
        apply) and :meth:`apply` the actions.
        """
        with self._changing() as layers:
            return removal.start_purge(layers)

    def is_removed(self, disk: str) -> bool:
        """Whether ``disk`` still exists and is marked removed."""
        found = self._layers.disk(disk)
        return found is not None and found.removed

    def purge(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Mark system snapshots removed and reclaim every removed snapshot that can be.

        ``progress(done, total)`` is called before the first and after every processed snapshot.
        """
        with self._changing() as layers:
            removal.purge(layers, progress)

    def revert(self, name: str, *, created: dt.datetime | str | None = None) -> None:
        """Start a new, empty head on top of snapshot ``name``; the old head is discarded."""
        with self._changing() as layers:
            snapshots.revert(layers, name, created=created)

    def expand(self, size: int) -> None:
        """Grow the volume to ``size`` (a multiple of 4096) via system snapshot ``expand-SIZE``."""
        with self._changing() as layers:
            snapshots.expand(layers, size)
            self._intent.resize(layers.size)  # after the commit: a shorter map is padded

    def checksum(self, name: str, *, force: bool = False) -> Checksum:
        """Hash snapshot ``name`` unless its recorded hash is still valid (see :mod:`.checksum`)."""
        self._check_open()
        return checksums.checksum(self._layers, name, force=force)

    # -- write intents (see :mod:`.intent`; the caller keeps the data path quiet) -----------------

    def intent_runs(self) -> list[tuple[int, int]]:
        """The regions where this replica may differ from its peers, as ``(offset, length)``."""
        self._check_open()
        return self._intent.runs()

    def intent_rotate(self) -> None:
        """Start a new generation of "written since" (no data-path call may run meanwhile)."""
        self._check_usable()
        self._intent.rotate()

    def intent_clear(self, *, everything: bool = False) -> int:
        """Unmark what was not written in the last two generations (``everything``: all of it);
        how many regions stay marked. No data-path call may run meanwhile."""
        self._check_usable()
        return self._intent.clear(everything=everything)

    # -- rebuild target (implemented in adopt) ----------------------------------------------------

    def adopt(self, plan: Mapping[str, PlannedDisk]) -> list[str]:
        """Take the rebuild source's disk graph (see :mod:`.adopt`); the files it already had."""
        with self._changing() as layers:
            return adoption.adopt(layers, plan)

    def reload(self) -> None:
        """Re-read and reopen the chain from the directory (after a rebuild filled it)."""
        with self._changing() as layers:
            adoption.reload(layers)
