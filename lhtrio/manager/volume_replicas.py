"""A volume plan's working copies, and its steps that keep the volume's replica set.

:func:`~lhtrio.manager.volume_plan.plan_volume` walks the volume's state machine on a
:class:`PlanPass` (its working copies of the volume's status, replicas and engine: the plan is
their difference from what was read), and each pass keeps the replicas the spec asks for with
the steps here:

- :func:`replenish`: what the volume lacks is placed (never while detaching); while the volume
  holds data, only when attached and healthy or degraded, a failed replica that can run again
  reused first (rebuilt in place), and a new one placed only once the replenishment wait is
  over if a failed one may still come back.
- :func:`trim`: the extra replicas of a lowered count are deleted while the volume is detached,
  or attached and healthy with no rebuild under way.
- :func:`sizes`: after an expansion, the replicas the running engine grew take the new size.
- :func:`drop_stale`: a failed replica older than the stale timeout is deleted while another
  holds the data.

Pure, as the plan is: the timers a step waits on go to ``PlanPass.timers`` (the plan's
``again``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

from lhtrio.manager.placement import place_replicas
from lhtrio.manager.policy import number, volume_policy
from lhtrio.manager.scheduler import NodeView
from lhtrio.manager.volume_status import (
    engine_modes,
    forget_instance,
    may_come_back,
    reusable_now,
    scheduled_condition,
    usable,
)
from lhtrio.models.cluster import Engine, Replica, Volume
from lhtrio.models.cluster.engine import engine_name
from lhtrio.models.cluster.instance import DesireState
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import Robustness, VolumeState, VolumeStatus
from lhtrio.models.volume import Mode

__all__ = ["IN_USE", "PlanPass", "drop_stale", "replenish", "sizes", "trim"]

#: The states of a volume in use: its replicas run, and an engine links them.
IN_USE: Final = (VolumeState.ATTACHING, VolumeState.ATTACHED)


@attrs.define
class PlanPass:
    """One plan's working copies; the plan is their difference from what was read."""

    volume: Volume
    status: VolumeStatus
    replicas: dict[str, Replica]  # by name, in name order
    engine: Engine | None
    up: frozenset[str]
    nodes: dict[str, NodeView]
    now: dt.datetime
    created: list[Replica] = attrs.Factory(list)
    deleted: list[str] = attrs.Factory(list)
    timers: list[dt.datetime] = attrs.Factory(list)  # when a decision waited on may change
    judged: dict[str, Replica] = attrs.Factory(dict)  # the replicas robustness was judged from

    @property
    def target(self) -> str:
        return self.volume.spec.node_id

    def set_replica(self, replica: Replica, spec: ReplicaSpec) -> None:
        self.replicas[replica.meta.name] = attrs.evolve(replica, spec=spec)

    def want_replicas(self, running: bool) -> None:
        for replica in list(self.replicas.values()):
            if replica.meta.deleting:
                continue
            want = DesireState.RUNNING if running and not replica.failed else DesireState.STOPPED
            if replica.spec.desire_state is not want:
                self.set_replica(replica, attrs.evolve(replica.spec, desire_state=want))

    def stop_engine(self) -> None:
        engine = self.engine
        if engine is not None and engine.spec.desire_state is not DesireState.STOPPED:
            spec = attrs.evolve(engine.spec, desire_state=DesireState.STOPPED)
            self.engine = attrs.evolve(engine, spec=spec)


def replenish(work: PlanPass, settings: Mapping[str, str], suffixes: Iterator[str]) -> None:
    """Place (or reuse) what the volume lacks, when the rules allow it now."""
    state, volume = work.status.state, work.volume
    missing = volume.spec.number_of_replicas - sum(1 for r in work.replicas.values() if usable(r))
    if missing > 0 and state is VolumeState.DETACHING:
        return
    if missing > 0 and any(r.spec.healthy_at for r in work.replicas.values()):
        # the volume holds data: a new replica is rebuilt from the running engine
        if state is not VolumeState.ATTACHED or work.status.robustness not in (
            Robustness.HEALTHY,
            Robustness.DEGRADED,
        ):
            return
        missing -= _reuse(work, missing)
        wait = dt.timedelta(seconds=number(settings, "replica-replenishment-wait-interval"))
        since = work.status.last_degraded_at or work.now
        if (
            missing > 0
            and work.now < since + wait
            and any(may_come_back(r, work.nodes) for r in work.replicas.values())
        ):
            work.timers.append(since + wait)
            return  # a failed replica may still come back: wait for it
    if missing <= 0:
        conditions = scheduled_condition(work.status.conditions, None, work.now)
        work.status = attrs.evolve(work.status, conditions=conditions)
        return
    created, why = place_replicas(
        attrs.evolve(volume, status=work.status),
        list(work.replicas.values()),
        list(work.nodes.values()),
        volume_policy(volume, settings),
        suffixes,
    )
    desire = DesireState.RUNNING if state in IN_USE else DesireState.STOPPED
    engine = engine_name(volume.meta.name)
    for replica in created:
        spec = attrs.evolve(replica.spec, engine_name=engine, desire_state=desire)
        work.created.append(attrs.evolve(replica, spec=spec))
    conditions = scheduled_condition(work.status.conditions, why, work.now)
    work.status = attrs.evolve(work.status, conditions=conditions)


def _reuse(work: PlanPass, missing: int) -> int:
    """Reuse up to ``missing`` failed replicas that can run again; how many were."""
    modes = engine_modes(work.engine, work.up)
    reused = 0
    for replica in list(work.replicas.values()):
        if reused == missing:
            break
        if (
            replica.failed
            and replica.spec.volume_size == work.volume.spec.size  # (it missed no expansion)
            and reusable_now(replica, modes, work.nodes)
        ):
            spec = attrs.evolve(
                replica.spec,
                failed_at=None,
                desire_state=DesireState.RUNNING,
                rebuild_retry_count=replica.spec.rebuild_retry_count + 1,
            )
            work.set_replica(forget_instance(replica), spec)
            reused += 1
    return reused


def trim(work: PlanPass) -> None:
    """More usable replicas than asked (the count was lowered): remove the extra ones while the
    volume is detached, or attached and healthy with no rebuild under way. Those holding no data
    go first, then those the engine does not report RW, then those sharing a node, then by name
    (last first)."""
    state = work.status.state
    members = [r for r in work.replicas.values() if usable(r)]
    extra = len(members) - work.volume.spec.number_of_replicas
    if extra <= 0:
        return
    modes = engine_modes(work.engine, work.up)
    if state is VolumeState.ATTACHED:
        if work.status.robustness is not Robustness.HEALTHY or Mode.WO in modes.values():
            return
    elif state is not VolumeState.DETACHED:
        return
    per_node: dict[str, int] = {}
    for replica in members:
        per_node[replica.spec.node_id] = per_node.get(replica.spec.node_id, 0) + 1

    def worth(r: Replica) -> tuple[bool, bool, int]:
        return (
            r.spec.healthy_at is not None,
            state is VolumeState.DETACHED or modes.get(r.meta.name) is Mode.RW,
            -per_node[r.spec.node_id],
        )

    by_name = sorted(members, key=lambda r: r.meta.name, reverse=True)
    for replica in sorted(by_name, key=worth)[:extra]:  # (stable: the last names first)
        work.deleted.append(replica.meta.name)


def sizes(work: PlanPass) -> None:
    """The volume grew (an expansion: the engine grew its replicas, then the spec says so): the
    replicas its running engine links are that size now. The others keep theirs: a replica
    opens only at its own size; one that missed the expansion is not reused."""
    size = work.volume.spec.size
    modes = engine_modes(work.engine, work.up)
    for replica in list(work.replicas.values()):
        linked = modes.get(replica.meta.name) in (Mode.RW, Mode.WO)
        if usable(replica) and linked and replica.spec.volume_size != size:
            work.set_replica(replica, attrs.evolve(replica.spec, volume_size=size))


def drop_stale(work: PlanPass) -> None:
    """Delete failed replicas older than the stale timeout, unless no other copy holds data."""
    if not any(
        usable(r) and r.spec.healthy_at and not r.spec.rebuild_retry_count
        for r in work.replicas.values()
    ):
        return
    timeout = dt.timedelta(minutes=work.volume.spec.stale_replica_timeout)
    for name, replica in work.replicas.items():
        failed_at = replica.spec.failed_at
        if failed_at is None or replica.meta.deleting:
            continue
        if failed_at + timeout <= work.now:
            work.deleted.append(name)
        else:
            work.timers.append(failed_at + timeout)
