"""The node's control calls (its instance manager; ``lhtrio im`` and the manager call them).

================  ====================================================  =========================
call              arguments                                             result
================  ====================================================  =========================
node_info                                                               :class:`NodeInfo`
disk_list                                                               [:class:`DiskStatus`]
instance_create   name; type (engine|replica); volume; size;            :class:`Instance`
                  replicas=[] (engine); disk="" (replica: UUID or
                  path); salvage=false; replica_timeout=8
instance_delete   name                                                  instance (stopped)
instance_get      name                                                  instance
instance_list                                                           [instance]
instance_watch    version=0; wait=0 (seconds): returns once the version  :class:`InstanceWatch`
                  is past ``version`` (an instance changed: its state,
                  an engine's replica modes or size) or ``wait`` ran out;
                  since=0: the ``answer`` of an earlier watch, to be
                  answered only what changed since (if remembered)
instance_log      name; after=0; wait=0; limit=0                        :class:`LogLines`
replica_data_     name; disk="" (UUID or path): delete the directory    true if there was one
remove            of replica ``name`` (refused while it runs)
================  ====================================================  =========================

Waits are capped at :data:`MAX_WAIT` seconds by the node.
"""

from __future__ import annotations

import attrs

from lhtrio.models.instance import (
    DiskStatus,
    Instance,
    InstanceKind,
    InstanceWatch,
    LogLines,
    NodeInfo,
)
from lhtrio.wire.control import CallTable, NameArgs, NoArgs, omit_when_default

__all__ = [
    "CALLS",
    "CreateArgs",
    "DataArgs",
    "LogArgs",
    "MAX_WAIT",
    "WatchArgs",
]

MAX_WAIT = 60.0


@attrs.frozen(kw_only=True)
class CreateArgs:
    name: str
    type: InstanceKind
    volume: str
    size: int
    replicas: list[str] = attrs.field(factory=list)
    disk: str = ""
    salvage: bool = False
    replica_timeout: float = 8.0


@attrs.frozen(kw_only=True)
class DataArgs:
    name: str
    disk: str = ""


@attrs.frozen(kw_only=True)
class WatchArgs:
    version: int = 0
    wait: float = 0.0
    since: int = 0


@attrs.frozen(kw_only=True)
class LogArgs:
    name: str
    after: int = 0
    wait: float = 0.0
    limit: int = 0


omit_when_default(
    Instance,
    "replicas",
    "frontend",
    "health",
    "directory",
    "replica_modes",
    "current_size",
    "salvage",
)

CALLS = CallTable("node")
NODE_INFO = CALLS.call("node_info", NoArgs, NodeInfo)
DISK_LIST = CALLS.call("disk_list", NoArgs, list[DiskStatus])
INSTANCE_CREATE = CALLS.call("instance_create", CreateArgs, Instance)
INSTANCE_DELETE = CALLS.call("instance_delete", NameArgs, Instance)
INSTANCE_GET = CALLS.call("instance_get", NameArgs, Instance)
INSTANCE_LIST = CALLS.call("instance_list", NoArgs, list[Instance])
INSTANCE_WATCH = CALLS.call("instance_watch", WatchArgs, InstanceWatch)
INSTANCE_LOG = CALLS.call("instance_log", LogArgs, LogLines)
REPLICA_DATA_REMOVE = CALLS.call("replica_data_remove", DataArgs, bool)
omit_when_default(WatchArgs, "since")
omit_when_default(InstanceWatch, "complete", "removed", "answer")
