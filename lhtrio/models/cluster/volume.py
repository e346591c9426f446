"""The Volume kind: a block device the operator asked for, and what the cluster made of it.

Longhorn's Volume CRD (``longhorn-facts.md`` §6.1, §6.3) cut to what lhtrio serves. The spec is the
operator's (size, replica count, placement rules) plus ``node_id``, the node the volume should be
attached to, which only the attachment logic writes (from the VolumeAttachment's tickets,
:mod:`.attachment`). The status is the owning manager's: the lifecycle ``state``, the
``robustness`` seen through the engine (:func:`robustness`), and the node it is attached to.

Times are UTC, whole seconds (:mod:`lhtrio.models.times`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import ClassVar, Final

import attrs

from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.meta import Condition, ObjectMeta
from lhtrio.models.volume import Mode

__all__ = [
    "CONDITION_SCHEDULED",
    "DEFAULT_STALE_REPLICA_TIMEOUT",
    "AffinityOverride",
    "DataLocality",
    "Frontend",
    "Robustness",
    "Volume",
    "VolumeSpec",
    "VolumeState",
    "VolumeStatus",
    "robustness",
]

#: True when every replica of the volume has a disk; false says why not (the scheduler's reason).
CONDITION_SCHEDULED: Final = "Scheduled"
#: Minutes a failed replica is kept for reuse before it is deleted (Longhorn's default).
DEFAULT_STALE_REPLICA_TIMEOUT: Final = 2880


class Frontend(enum.Enum):
    """How an attached volume is served (Longhorn's ``blockdev`` is a kernel device; lhtrio
    exports NBD)."""

    NBD = "nbd"


class DataLocality(enum.Enum):
    DISABLED = "disabled"
    BEST_EFFORT = "best-effort"
    STRICT_LOCAL = "strict-local"


class AffinityOverride(enum.Enum):
    """A volume's override of an anti-affinity setting: ``IGNORED`` follows the setting,
    ``ENABLED``/``DISABLED`` make soft anti-affinity on or off for this volume."""

    IGNORED = "ignored"
    ENABLED = "enabled"
    DISABLED = "disabled"


class VolumeState(enum.Enum):
    CREATING = "creating"
    DETACHED = "detached"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DELETING = "deleting"


class Robustness(enum.Enum):
    """``UNKNOWN`` while no running engine reports on the replicas (detached, or its node down)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAULTED = "faulted"
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class VolumeSpec:
    """``size`` in bytes (a positive multiple of :data:`lhtrio.units.BLOCK`);
    ``stale_replica_timeout`` in minutes; selectors are tags every chosen node or disk must
    carry."""

    size: int
    number_of_replicas: int = 3
    frontend: Frontend = Frontend.NBD
    disable_frontend: bool = False
    node_id: str = ""
    data_locality: DataLocality = DataLocality.DISABLED
    replica_soft_anti_affinity: AffinityOverride = AffinityOverride.IGNORED
    replica_zone_soft_anti_affinity: AffinityOverride = AffinityOverride.IGNORED
    replica_disk_soft_anti_affinity: AffinityOverride = AffinityOverride.IGNORED
    disk_selector: tuple[str, ...] = ()
    node_selector: tuple[str, ...] = ()
    stale_replica_timeout: int = DEFAULT_STALE_REPLICA_TIMEOUT


@attrs.frozen(kw_only=True)
class VolumeStatus:
    """``actual_size``: bytes the replicas hold (the largest); ``expansion_required``: the spec
    asks for more than the engine serves."""

    owner_id: str = ""
    state: VolumeState = VolumeState.CREATING
    robustness: Robustness = Robustness.UNKNOWN
    current_node_id: str = ""
    frontend_disabled: bool = False
    conditions: tuple[Condition, ...] = ()
    last_degraded_at: dt.datetime | None = None
    last_auto_salvaged_at: dt.datetime | None = None
    actual_size: int = 0
    expansion_required: bool = False


@attrs.frozen(kw_only=True)
class Volume:
    KIND: ClassVar[str] = "Volume"

    meta: ObjectMeta
    spec: VolumeSpec
    status: VolumeStatus = attrs.field(factory=VolumeStatus)


def robustness(
    replica_modes: Mapping[str, Mode],
    number_of_replicas: int,
    *,
    engine_state: InstanceState = InstanceState.RUNNING,
) -> Robustness:
    """The volume's robustness from its engine's replica modes (Longhorn's
    ``ReconcileEngineReplicaState``): ``UNKNOWN`` unless the engine runs (a stopped or starting
    engine reports nothing, one on a down node cannot be seen); no RW replica is ``FAULTED``; at
    least ``number_of_replicas`` RW replicas is ``HEALTHY``; fewer is ``DEGRADED``. WO replicas
    (being rebuilt) do not count yet."""
    if engine_state is not InstanceState.RUNNING:
        return Robustness.UNKNOWN
    rw = sum(1 for mode in replica_modes.values() if mode is Mode.RW)
    if rw == 0:
        return Robustness.FAULTED
    if rw >= number_of_replicas:
        return Robustness.HEALTHY
    return Robustness.DEGRADED
