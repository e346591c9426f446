"""The replica's control calls (the engine, a rebuild target's sync and ``lhtrio`` tools call them).

Arguments are structured strictly (unknown keys, missing keys, wrong types: ``INVALID_ARGUMENT``);
the checks that need more than a type (names, labels, times, addresses) are the replica's, made
before a call takes its gate. What each call does is in :mod:`lhtrio.replica.service`.

=====================  ==========================================================  ============
call                   arguments                                                   result
=====================  ==========================================================  ============
info                                                                               ReplicaInfo
allocation             offset; length                                              [[len, data]]
snapshot               name; user_created=true; created (RFC 3339)=now; labels={}  ReplicaInfo
mark_removed           name                                                        ReplicaInfo
prepare_remove         name                                                        [action]
remove_action          kind (remove/coalesce/replace/prune); source; target=""     ReplicaInfo
remove                 name                                                        ReplicaInfo
purge                                                                              PurgeStatus
purge_status           wait=false                                                  PurgeStatus
revert                 name; created=now                                           ReplicaInfo
expand                 size                                                        ReplicaInfo
checksum               name; force=false                                           Checksum
set_rebuilding         rebuilding                                                  ReplicaInfo
set_revision_counter   value                                                       ReplicaInfo
members                                                                            MemberRecord
set_members            epoch; members ([{instance, address}...])                   MemberRecord
file_info              name (a snapshot file)                                      FileInfo
file_map               name; offset=0; limit=16384                                 [[off, len]]
file_diff              name; groups ([[[off, len]...]...]); digests (bytes)        [index]
file_read              name; ranges ([[off, len]...])                              ``Data``
adopt                  disks ({file: {parent, removed, user_created, created,      [file]
                       labels, size}})
sync_start             source; files; existing; dirty=nil; dirty_file=""           SyncStatus
sync_status            wait=0 (seconds)                                            SyncStatus
sync_cancel                                                                        SyncStatus
reload                                                                             ReplicaInfo
intent_regions                                                                     [[off, len]]
intent_rotate                                                                      nil
intent_clear           everything=false                                            regions left
=====================  ==========================================================  ============
"""

from __future__ import annotations

import attrs

from lhtrio.models.replica import (
    ActionKind,
    Checksum,
    FileInfo,
    MemberRecord,
    PurgeStatus,
    RemovalAction,
    ReplicaInfo,
    SyncStatus,
)
from lhtrio.wire.control import CallTable, NameArgs, NoArgs, SizeArgs, omit_when_default
from lhtrio.wire.messages import Data

__all__ = [
    "ActionArgs",
    "AdoptArgs",
    "CALLS",
    "ChecksumArgs",
    "ClearArgs",
    "CounterArgs",
    "DiffArgs",
    "MAP_EXTENTS",
    "MapArgs",
    "PlannedArgs",
    "RangeArgs",
    "RangesArgs",
    "RebuildingArgs",
    "RevertArgs",
    "SnapshotArgs",
    "StatusArgs",
    "SyncArgs",
    "WaitArgs",
]

#: The most extents one ``file_map`` answers (ask again from the end of the last one).
MAP_EXTENTS = 16384

Extents = list[tuple[int, int]]


@attrs.frozen(kw_only=True)
class WaitArgs:
    wait: bool = False


@attrs.frozen(kw_only=True)
class SnapshotArgs:
    name: str
    user_created: bool = True
    created: str | None = None
    labels: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class ActionArgs:
    kind: ActionKind
    source: str
    target: str = ""


@attrs.frozen(kw_only=True)
class RevertArgs:
    name: str
    created: str | None = None


@attrs.frozen(kw_only=True)
class RangeArgs:
    offset: int
    length: int


@attrs.frozen(kw_only=True)
class ChecksumArgs:
    name: str
    force: bool = False


@attrs.frozen(kw_only=True)
class RebuildingArgs:
    rebuilding: bool


@attrs.frozen(kw_only=True)
class CounterArgs:
    value: int


@attrs.frozen(kw_only=True)
class RangesArgs:
    name: str
    ranges: list[tuple[int, int]]


@attrs.frozen(kw_only=True)
class MapArgs:
    name: str
    offset: int = 0
    limit: int = MAP_EXTENTS


@attrs.frozen(kw_only=True)
class DiffArgs:
    name: str
    groups: list[list[tuple[int, int]]]
    digests: bytes


@attrs.frozen(kw_only=True)
class PlannedArgs:
    parent: str
    removed: bool
    user_created: bool
    created: str
    labels: dict[str, str] | None
    size: int


@attrs.frozen(kw_only=True)
class AdoptArgs:
    disks: dict[str, PlannedArgs]


@attrs.frozen(kw_only=True)
class SyncArgs:
    source: str
    files: list[str]
    existing: list[str]
    dirty: list[tuple[int, int]] | None = None
    dirty_file: str = ""


@attrs.frozen(kw_only=True)
class StatusArgs:
    wait: float = 0.0


@attrs.frozen(kw_only=True)
class ClearArgs:
    everything: bool = False


# Optional arguments travel only when given (as the calls were made before they were typed).
omit_when_default(SnapshotArgs, "created", "labels")
omit_when_default(RevertArgs, "created")

CALLS = CallTable("replica")
INFO = CALLS.call("info", NoArgs, ReplicaInfo)
ALLOCATION = CALLS.call("allocation", RangeArgs, list[tuple[int, bool]])
SNAPSHOT = CALLS.call("snapshot", SnapshotArgs, ReplicaInfo)
MARK_REMOVED = CALLS.call("mark_removed", NameArgs, ReplicaInfo)
PREPARE_REMOVE = CALLS.call("prepare_remove", NameArgs, list[RemovalAction])
REMOVE_ACTION = CALLS.call("remove_action", ActionArgs, ReplicaInfo)
REMOVE = CALLS.call("remove", NameArgs, ReplicaInfo)
PURGE = CALLS.call("purge", NoArgs, PurgeStatus)
PURGE_STATUS = CALLS.call("purge_status", WaitArgs, PurgeStatus)
REVERT = CALLS.call("revert", RevertArgs, ReplicaInfo)
EXPAND = CALLS.call("expand", SizeArgs, ReplicaInfo)
CHECKSUM = CALLS.call("checksum", ChecksumArgs, Checksum)
SET_REBUILDING = CALLS.call("set_rebuilding", RebuildingArgs, ReplicaInfo)
SET_REVISION_COUNTER = CALLS.call("set_revision_counter", CounterArgs, ReplicaInfo)
# the replica set the engine recorded (lhtrio.engine.membership)
MEMBERS = CALLS.call("members", NoArgs, MemberRecord)
SET_MEMBERS = CALLS.call("set_members", MemberRecord, MemberRecord)
# a rebuild's source
FILE_INFO = CALLS.call("file_info", NameArgs, FileInfo)
FILE_MAP = CALLS.call("file_map", MapArgs, Extents)
FILE_DIFF = CALLS.call("file_diff", DiffArgs, list[int])
FILE_READ = CALLS.call("file_read", RangesArgs, Data)
# a rebuild's target
ADOPT = CALLS.call("adopt", AdoptArgs, list[str])
SYNC_START = CALLS.call("sync_start", SyncArgs, SyncStatus)
SYNC_STATUS = CALLS.call("sync_status", StatusArgs, SyncStatus)
SYNC_CANCEL = CALLS.call("sync_cancel", NoArgs, SyncStatus)
RELOAD = CALLS.call("reload", NoArgs, ReplicaInfo)
# write intents (the engine's consistency sweep)
INTENT_REGIONS = CALLS.call("intent_regions", NoArgs, Extents)
INTENT_ROTATE = CALLS.call("intent_rotate", NoArgs, type(None))
INTENT_CLEAR = CALLS.call("intent_clear", ClearArgs, int)
