"""The Replica kind: one copy of a volume's data on one disk of one node.

Longhorn's Replica CRD (``longhorn-facts.md`` §6.1, §6.3): where the copy lives (node, disk, data
directory), whether it should run, and its health history — ``healthy_at`` (first time RW in its
engine), ``failed_at`` (set when it went ERR; cleared when it is reused or salvaged),
``last_failed_at``, and how many rebuilds of it failed. Names are ``<volume>-r-<8 hex>``
(:func:`replica_name`); data directories ``<volume>-<8 hex>``.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import attrs

from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.meta import Condition, ObjectMeta

__all__ = ["Replica", "ReplicaSpec", "ReplicaStatus", "replica_name"]


def replica_name(volume: str, suffix: str) -> str:
    """``<volume>-r-<suffix>`` (``suffix``: 8 hex digits), as Longhorn names replicas."""
    return f"{volume}-r-{suffix}"


@attrs.frozen(kw_only=True)
class ReplicaSpec:
    """``disk_id`` is the disk's UUID (``DiskStatus.disk_uuid``); ``disk_path`` its path then;
    ``hard_node_affinity``: the node the replica must be scheduled to (empty: any)."""

    volume_name: str
    volume_size: int
    node_id: str = ""
    engine_name: str = ""
    disk_id: str = ""
    disk_path: str = ""
    data_directory_name: str = ""
    desire_state: DesireState = DesireState.STOPPED
    healthy_at: dt.datetime | None = None
    last_healthy_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    last_failed_at: dt.datetime | None = None
    rebuild_retry_count: int = 0
    eviction_requested: bool = False
    hard_node_affinity: str = ""
    salvage_requested: bool = False


@attrs.frozen(kw_only=True)
class ReplicaStatus:
    owner_id: str = ""
    current_state: InstanceState = InstanceState.STOPPED
    ip: str = ""
    port: int = 0
    started: bool = False
    conditions: tuple[Condition, ...] = ()


@attrs.frozen(kw_only=True)
class Replica:
    KIND: ClassVar[str] = "Replica"

    meta: ObjectMeta
    spec: ReplicaSpec
    status: ReplicaStatus = attrs.field(factory=ReplicaStatus)

    @property
    def failed(self) -> bool:
        return self.spec.failed_at is not None
