"""The engine's control calls (``lhtrio ctl``, the node and, later, the manager call them).

=================  =============================================  ===============================
call               arguments                                      result
=================  =============================================  ===============================
info                                                              VolumeInfo
snapshot_create    name=<uuid>; labels={}                         the snapshot's name
snapshot_ls                                                       [Snapshot], oldest first
snapshot_rm        name                                           nil (marked removed everywhere)
snapshot_purge                                                    nil (once every replica purged)
snapshot_revert    name (the frontend must be stopped)            nil
frontend_stop                                                     VolumeInfo
frontend_start                                                    VolumeInfo
expand             size                                           VolumeInfo
replica_ls                                                        [ReplicaLink]
replica_rm         address                                        VolumeInfo
replica_add        address                                        RebuildProgress (once the
                                                                  replica is WO)
rebuild_status     wait=0 (seconds to wait for progress)          RebuildProgress, or nil
salvage                                                           SalvageResult
=================  =============================================  ===============================
"""

from __future__ import annotations

import attrs

from lhtrio.models.engine import (
    RebuildProgress,
    ReplicaLink,
    SalvageResult,
    Snapshot,
    VolumeInfo,
)
from lhtrio.wire.control import CallTable, NameArgs, NoArgs, SizeArgs, omit_when_default

__all__ = ["AddressArgs", "CALLS", "CreateSnapshotArgs", "MAX_WAIT", "WaitArgs"]

#: The longest ``rebuild_status`` waits for a change.
MAX_WAIT = 60.0


@attrs.frozen(kw_only=True)
class CreateSnapshotArgs:
    name: str = ""
    labels: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class AddressArgs:
    address: str


@attrs.frozen(kw_only=True)
class WaitArgs:
    wait: float = 0.0


omit_when_default(ReplicaLink, "rebuild")

CALLS = CallTable("engine")
INFO = CALLS.call("info", NoArgs, VolumeInfo)
SNAPSHOT_CREATE = CALLS.call("snapshot_create", CreateSnapshotArgs, str)
SNAPSHOT_LS = CALLS.call("snapshot_ls", NoArgs, list[Snapshot])
SNAPSHOT_RM = CALLS.call("snapshot_rm", NameArgs, type(None))
SNAPSHOT_PURGE = CALLS.call("snapshot_purge", NoArgs, type(None))
SNAPSHOT_REVERT = CALLS.call("snapshot_revert", NameArgs, type(None))
FRONTEND_STOP = CALLS.call("frontend_stop", NoArgs, VolumeInfo)
FRONTEND_START = CALLS.call("frontend_start", NoArgs, VolumeInfo)
EXPAND = CALLS.call("expand", SizeArgs, VolumeInfo)
REPLICA_LS = CALLS.call("replica_ls", NoArgs, list[ReplicaLink])
REPLICA_RM = CALLS.call("replica_rm", AddressArgs, VolumeInfo)
REPLICA_ADD = CALLS.call("replica_add", AddressArgs, RebuildProgress)
REBUILD_STATUS = CALLS.optional("rebuild_status", WaitArgs, RebuildProgress)
SALVAGE = CALLS.call("salvage", NoArgs, SalvageResult)
