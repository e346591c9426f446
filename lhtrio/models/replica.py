"""What a replica reports: its chain and disks, checksums, transfers and purges.

Frozen records with no trio and no I/O, read by the engine, ``lhtrio ctl``, the manager and
(later) backups; :mod:`lhtrio.wire.calls.replica` says which call returns which. Disk names are
the replica's file names (``volume-snap-<name>.img``, ``volume-head-NNN.img``), as in Longhorn,
where engine and replica share one naming helper: :func:`snapshot_disk` and :func:`snapshot_of`
are that helper here, so that nobody else spells a file name.
"""

from __future__ import annotations

import datetime as dt
import enum

import attrs

__all__ = [
    "ActionKind",
    "Checksum",
    "DiskInfo",
    "FileInfo",
    "MemberRecord",
    "PurgeStatus",
    "RemovalAction",
    "ReplicaInfo",
    "SetMember",
    "SyncState",
    "SyncStatus",
    "TransferCounters",
    "snapshot_disk",
    "snapshot_of",
]

_SNAP_PREFIX, _SNAP_SUFFIX = "volume-snap-", ".img"


def snapshot_disk(name: str) -> str:
    """The disk (file) name of snapshot ``name`` on a replica."""
    return f"{_SNAP_PREFIX}{name}{_SNAP_SUFFIX}"


def snapshot_of(disk: str) -> str | None:
    """The snapshot name of disk file ``disk``; None for anything else (a head, "")."""
    if disk.startswith(_SNAP_PREFIX) and disk.endswith(_SNAP_SUFFIX):
        return disk[len(_SNAP_PREFIX) : -len(_SNAP_SUFFIX)]
    return None


@attrs.frozen(kw_only=True)
class DiskInfo:
    """One disk (snapshot or head). Names are disk file names; ``size`` (the file's length) and
    ``allocated`` are in bytes."""

    name: str
    parent: str
    children: tuple[str, ...]
    removed: bool
    user_created: bool
    created: dt.datetime
    labels: dict[str, str] | None
    size: int
    allocated: int


@attrs.frozen(kw_only=True)
class ReplicaInfo:
    """A replica at one instant.

    ``chain`` is the live chain, head first. ``revision_counter`` is the in-memory counter and
    ``persisted_revision_counter`` what ``revision.counter`` holds (see the store for the
    guarantee). ``last_modify_time`` is the head's mtime in nanoseconds.
    """

    path: str
    volume: str
    instance: str
    size: int
    sector_size: int
    head: str
    parent: str
    dirty: bool
    rebuilding: bool
    revision_counter: int
    persisted_revision_counter: int
    chain: tuple[str, ...]
    disks: dict[str, DiskInfo]
    head_allocated: int
    last_modify_time: int

    def snapshot(self, name: str) -> DiskInfo | None:
        """The disk of snapshot ``name`` (a snapshot name, not a file name), if there is one."""
        for disk in self.disks.values():
            if snapshot_of(disk.name) == name:
                return disk
        return None


class ActionKind(enum.Enum):
    REMOVE = "remove"
    COALESCE = "coalesce"
    REPLACE = "replace"
    PRUNE = "prune"


@attrs.frozen(kw_only=True)
class RemovalAction:
    """One step of removing disk ``source``; ``target`` is its child (``""`` for remove)."""

    kind: ActionKind
    source: str
    target: str = ""


@attrs.frozen(kw_only=True)
class Checksum:
    """A snapshot file's hash. ``change_time``: the file's ctime (ns) when it was hashed."""

    method: str
    checksum: str
    change_time: int
    last_hashed_at: dt.datetime
    silently_corrupted: bool = False


@attrs.frozen(kw_only=True)
class FileInfo:
    """A snapshot file as a rebuild's source sees it; ``checksum`` is "" unless recorded."""

    name: str
    size: int
    allocated: int
    checksum: str


@attrs.frozen(kw_only=True)
class TransferCounters:
    """How far a rebuild's transfer is, in files and bytes (declared once: the replica's
    :class:`SyncStatus` and the engine's rebuild progress both carry these).

    ``sent_bytes`` came over the wire; ``compared_bytes`` were compared by checksum and found
    equal; ``known_bytes`` were known equal from the away log; ``skipped_bytes`` belong to files
    skipped as identical.
    """

    files: int = 0
    files_done: int = 0
    skipped_files: int = 0
    total_bytes: int = 0
    done_bytes: int = 0
    sent_bytes: int = 0
    compared_bytes: int = 0
    known_bytes: int = 0
    skipped_bytes: int = 0


class SyncState(enum.Enum):
    IDLE = "idle"
    SYNCING = "syncing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class SyncStatus(TransferCounters):
    """Where a rebuild target's transfer stands."""

    state: SyncState = SyncState.IDLE
    source: str = ""
    error: str = ""


@attrs.frozen(kw_only=True)
class PurgeStatus:
    purging: bool = False
    done: int = 0
    total: int = 0
    error: str = ""


@attrs.frozen(order=True)
class SetMember:
    """One replica of a recorded replica set: its instance name and the address it had."""

    instance: str
    address: str


@attrs.frozen(kw_only=True)
class MemberRecord:
    """The volume's RW replicas as its engine last recorded them on a replica
    (``lhtrio-members.json``; :mod:`lhtrio.engine.membership` says why).

    ``epoch`` grows with every record the volume's engines make; a replica keeps the highest it
    was given. Epoch 0 with no members: nothing was ever recorded there.
    """

    epoch: int = 0
    members: tuple[SetMember, ...] = ()

    def instances(self) -> frozenset[str]:
        return frozenset(m.instance for m in self.members)
