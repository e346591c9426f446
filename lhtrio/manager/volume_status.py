"""What the volume reconciler reads off a volume's replicas and engine, pure.

The observations :func:`lhtrio.manager.volume_plan.plan_volume` acts on (``longhorn-facts.md``
§6.3, §6.4):

- **Failures** (:func:`observe`): a replica the running engine reports ``ERR``, one on a node that
  is down while the volume is in use, or one whose instance errored, gets ``failed_at`` (and
  ``last_failed_at``) = now and is wanted stopped. A running engine that serves from none of
  the replicas the volume counts on (:func:`faulted`) fails them all. The first time a replica
  is ``RW`` again (first ever, or after a reuse) it gets ``healthy_at`` and its rebuild retries
  start over.
- **Liveness**: an engine on a node that is down is seen as neither running nor reporting; it
  counts as stopped (:func:`engine_stopped`), so a volume can leave it behind.
- **Robustness** (:func:`volume_robustness`): from the engine's replica modes, counting only
  replicas that are not failed; ``unknown`` unless the engine runs on a node that is up and no
  salvage is pending.
- **Reuse** (:func:`reusable_now`, :func:`may_come_back`): a failed replica is reused when its
  node is up with its disk, the engine has let it go, and its rebuilds have not failed too often;
  one that *may* come back later (its node still exists, even if down now) is worth waiting
  ``replica-replenishment-wait-interval`` for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from lhtrio.manager.scheduler import NodeView, Unschedulable
from lhtrio.models.cluster import Engine, Replica
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.meta import Condition, set_condition
from lhtrio.models.cluster.volume import CONDITION_SCHEDULED, Robustness, robustness
from lhtrio.models.volume import Mode

__all__ = [
    "MAX_REBUILD_RETRIES",
    "address",
    "engine_modes",
    "engine_stopped",
    "fail",
    "faulted",
    "forget_instance",
    "may_come_back",
    "observe",
    "replica_ready",
    "replica_stopped",
    "reusable_now",
    "salvage_pending",
    "scheduled_condition",
    "usable",
    "volume_robustness",
]

#: A failed replica reused this many times without becoming RW again is not reused (Longhorn's
#: ``FailedReplicaMaxRetryCount``).
MAX_REBUILD_RETRIES: Final = 5

_ACTIVE = (InstanceState.STARTING, InstanceState.RUNNING, InstanceState.STOPPING)


def usable(replica: Replica) -> bool:
    """Neither failed nor being deleted: a replica the volume counts on."""
    return not replica.failed and not replica.meta.deleting


def address(replica: Replica) -> str:
    """``host:port`` of a running replica, or ``""``."""
    status = replica.status
    return f"{status.ip}:{status.port}" if status.ip and status.port else ""


def replica_ready(replica: Replica, up: frozenset[str]) -> bool:
    """Running on a node that is up, with an address an engine can link."""
    return (
        replica.spec.node_id in up
        and replica.status.current_state is InstanceState.RUNNING
        and bool(address(replica))
    )


def replica_stopped(replica: Replica, up: frozenset[str]) -> bool:
    """Not running (or on a node that is down, where nothing can be seen or done)."""
    return replica.spec.node_id not in up or replica.status.current_state not in _ACTIVE


def engine_stopped(engine: Engine | None, up: frozenset[str]) -> bool:
    """No engine, an engine on a node that is down, or one that stopped or failed."""
    return (
        engine is None
        or engine.spec.node_id not in up
        or engine.status.current_state in (InstanceState.STOPPED, InstanceState.ERROR)
    )


def salvage_pending(engine: Engine | None) -> bool:
    """A salvage was asked of the engine and it has not done it yet."""
    return (
        engine is not None and engine.spec.salvage_requested and not engine.status.salvage_executed
    )


def engine_modes(engine: Engine | None, up: frozenset[str]) -> Mapping[str, Mode]:
    """The replica modes the engine reports, if it can be believed: it runs on a node that is up
    and is not about to salvage (its ERRs are then the past)."""
    if (
        engine is None
        or engine.spec.node_id not in up
        or engine.status.current_state is not InstanceState.RUNNING
        or salvage_pending(engine)
    ):
        return {}
    return engine.status.replica_mode_map


def fail(replica: Replica, now: dt.datetime) -> Replica:
    spec = attrs.evolve(
        replica.spec, failed_at=now, last_failed_at=now, desire_state=DesireState.STOPPED
    )
    return attrs.evolve(replica, spec=spec)


def forget_instance(replica: Replica) -> Replica:
    """``replica`` brought back from failed: what its status tells of its instance is from before
    it failed (it is restarting, most likely on another port), so it is forgotten until its node
    reports the instance anew. Linking the old address would leave it out of a salvage's choice
    or fail its rebuild."""
    status = attrs.evolve(
        replica.status, current_state=InstanceState.STOPPED, ip="", port=0, started=False
    )
    return attrs.evolve(replica, status=status)


def faulted(replicas: Iterable[Replica], modes: Mapping[str, Mode]) -> bool:
    """The running engine reports its replicas (``modes``) and serves from none the volume counts
    on: the volume is faulted, and those replicas are failed with the rest (they may be absent
    from the engine's map, their loss seen only as an address it dropped). A faulted volume's
    replicas are all failed: what auto-salvage and the operator's salvage start from."""
    return bool(modes) and not any(modes.get(r.meta.name) is Mode.RW for r in replicas if usable(r))


def observe(
    replica: Replica,
    modes: Mapping[str, Mode],
    *,
    up: frozenset[str],
    in_use: bool,
    now: dt.datetime,
) -> Replica:
    """``replica`` with what its engine (``modes``) and the nodes (``up``) say of it.

    ``in_use``: the volume is attaching or attached, so a replica on a node that is down is lost
    to it (it is failed, to be reused if its node comes back in time)."""
    if replica.meta.deleting or replica.failed:
        return replica
    spec = replica.spec
    mode = modes.get(replica.meta.name)
    crashed = (
        spec.desire_state is DesireState.RUNNING
        and spec.node_id in up
        and replica.status.current_state is InstanceState.ERROR
    )
    if mode is Mode.ERR or crashed or (in_use and spec.node_id not in up):
        return fail(replica, now)
    if mode is Mode.RW and (
        spec.healthy_at is None or spec.rebuild_retry_count or spec.salvage_requested
    ):
        spec = attrs.evolve(
            spec,
            healthy_at=spec.healthy_at or now,
            last_healthy_at=now,
            rebuild_retry_count=0,
            salvage_requested=False,
        )
        return attrs.evolve(replica, spec=spec)
    return replica


def volume_robustness(
    engine: Engine | None,
    replicas: Mapping[str, Replica],
    number_of_replicas: int,
    up: frozenset[str],
) -> Robustness:
    """Robustness as the engine sees the replicas the volume still counts on (see
    :func:`lhtrio.models.cluster.volume.robustness`); ``UNKNOWN`` without a believable engine."""
    if engine is None or salvage_pending(engine):
        return Robustness.UNKNOWN
    state = engine.status.current_state if engine.spec.node_id in up else InstanceState.UNKNOWN
    modes = {
        name: mode
        for name, mode in engine.status.replica_mode_map.items()
        if name in replicas and usable(replicas[name])
    }
    return robustness(modes, number_of_replicas, engine_state=state)


def reusable_now(
    replica: Replica, modes: Mapping[str, Mode], nodes: Mapping[str, NodeView]
) -> bool:
    """A failed replica that can be rebuilt in place now: its node is ready with its disk, the
    engine no longer holds it as ERR, and it has not failed too many rebuilds."""
    node = nodes.get(replica.spec.node_id)
    return (
        may_come_back(replica, nodes)
        and node is not None
        and node.ready
        and any(disk.name == replica.spec.disk_id for disk in node.disks)
        and modes.get(replica.meta.name) is not Mode.ERR
    )


def may_come_back(replica: Replica, nodes: Mapping[str, NodeView]) -> bool:
    """A failed replica that could be reused, now or once its node is back: its node still
    exists, it is not being evicted or deleted, and its rebuilds have not failed too often."""
    return (
        replica.failed
        and not replica.meta.deleting
        and not replica.spec.eviction_requested
        and replica.spec.rebuild_retry_count < MAX_REBUILD_RETRIES
        and replica.spec.node_id in nodes
    )


def _camel(name: str) -> str:
    return "".join(word.capitalize() for word in name.split("_"))


def scheduled_condition(
    conditions: tuple[Condition, ...], why: Unschedulable | None, now: dt.datetime
) -> tuple[Condition, ...]:
    """The ``Scheduled`` condition: true, or false with the scheduler's reason (CamelCase:
    ``AntiAffinity``, ``InsufficientStorage``...) and message."""
    if why is None:
        return set_condition(conditions, CONDITION_SCHEDULED, True, now=now)
    return set_condition(
        conditions,
        CONDITION_SCHEDULED,
        False,
        reason=_camel(why.reason.name),
        message=why.message,
        now=now,
    )
