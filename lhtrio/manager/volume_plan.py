"""The volume reconciler's decisions, pure: from a volume, its replicas and engine to what to write.

:func:`plan_volume` takes one look at a volume (what the store holds, which nodes are up, the
settings, the time) and says what to write (:class:`VolumePlan`); the I/O shell
(:mod:`lhtrio.manager.volume_control`) writes it, and the next change or resync plans again
from what the store holds then. Each plan is one step of Longhorn's state machine
(``longhorn-facts.md`` §6.3, §6.4, §3.7) on our kinds:

- **creating**: the replicas are placed (:func:`~lhtrio.manager.placement.place_replicas`) →
  **detached**; the ``Scheduled`` condition is true, or false with the scheduler's reason when
  some did not fit (the volume stays usable with those that did; placement is tried again).
- ``spec.node_id`` set while detached → **attaching**: the replicas are wanted running; once
  every usable one runs with an address, the engine is created (or moved) on that node, wanted
  running with their addresses; when it runs with an endpoint → **attached** there.
- ``spec.node_id`` cleared or changed → **detaching**: the engine is wanted stopped; once it is
  (or its node is down) the replicas are too; once they are → **detached**.
- deletion requested → **deleting**: the engine and every replica are deleted (their reconcilers
  clean up); the volume's finalizer may go once none is left. A replica whose node is down does
  not hold the deletion: its object goes, its data stays on that node (logged).
- **Replica count** lowered: the extra replicas are deleted while the volume is detached or
  attached and healthy (no rebuild under way); **expansion**: the replicas the engine grew take
  the volume's new size (:mod:`lhtrio.manager.operations` grows them before the spec).
- **Robustness** from the engine's replica modes; ``unknown`` unless an engine runs on the node
  the volume is attached to and that node is up. Becoming degraded records ``last_degraded_at``.
- **Healing** (:mod:`lhtrio.manager.volume_status`): a replica the engine reports ERR, or one on a
  node that is down while the volume is in use, is failed and wanted stopped; it leaves the
  engine's address map. While attached and degraded, a failed replica that can run again is
  reused (rebuilt in place); otherwise a new one is placed, but only once
  ``replica-replenishment-wait-interval`` has passed since ``last_degraded_at`` if a failed one
  may still come back (its node exists). A failed replica older than the volume's
  ``stale_replica_timeout`` is deleted while another holds the data.
- **Auto-salvage** (``auto-salvage``): when every replica failed while the volume is in use, those
  on nodes that are up are un-failed, the engine is asked to salvage (it picks the best copy),
  and ``last_auto_salvaged_at`` is recorded; the request is withdrawn once the engine did it.

A fresh volume (no replica ever was RW) has no data to lose: its replicas are placed at once in
any state but detaching. Deterministic: replicas by name, names from ``suffixes``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

import attrs

from lhtrio.manager.placement import place_replicas
from lhtrio.manager.policy import flag, number, volume_policy
from lhtrio.manager.scheduler import NodeView
from lhtrio.manager.volume_events import transition_events
from lhtrio.manager.volume_status import (
    address,
    engine_modes,
    engine_stopped,
    fail,
    faulted,
    may_come_back,
    observe,
    replica_ready,
    replica_stopped,
    reusable_now,
    salvage_pending,
    scheduled_condition,
    usable,
    volume_robustness,
)
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus, engine_name
from lhtrio.models.cluster.event import Occurrence
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import Robustness, VolumeState, VolumeStatus
from lhtrio.models.volume import Mode

__all__ = ["VolumePlan", "plan_volume"]

_IN_USE = (VolumeState.ATTACHING, VolumeState.ATTACHED)


@attrs.frozen(kw_only=True)
class VolumePlan:
    """What to write after one look at a volume.

    ``volume``: with its new status, or the very object read if nothing changed;
    ``engine``: to create or update (None: leave it); ``abandon_replicas``: replicas being
    deleted whose node is down: their objects go without waiting for their data to be removed
    (it is left on that node, logged); ``release_finalizer``: the volume is being deleted and
    nothing of it is left, so its finalizer may be removed; ``events``: what happened, to record
    once the rest is written (:mod:`lhtrio.manager.volume_events`); ``again``: seconds until one
    of the plan's timers runs out (the replenishment wait, a stale replica's timeout), to look
    again then rather than at the next resync."""

    volume: Volume
    create_replicas: tuple[Replica, ...] = ()
    update_replicas: tuple[Replica, ...] = ()
    delete_replicas: tuple[str, ...] = ()
    engine: Engine | None = None
    delete_engine: bool = False
    abandon_replicas: tuple[str, ...] = ()
    release_finalizer: bool = False
    events: tuple[Occurrence, ...] = ()
    again: float | None = None


@attrs.define
class _Pass:
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


def plan_volume(
    volume: Volume,
    replicas: Sequence[Replica],
    engine: Engine | None,
    *,
    nodes: Sequence[NodeView],
    up: frozenset[str],
    settings: Mapping[str, str],
    now: dt.datetime,
    suffixes: Iterator[str],
) -> VolumePlan:
    """What to write for ``volume`` (see the module docstring).

    ``replicas``: the volume's replicas; ``engine``: its engine, if there is one; ``nodes``: the
    scheduler's views of every node (:func:`~lhtrio.manager.placement.node_views`); ``up``: the
    nodes whose leases are valid; ``settings``: name -> text (unset ones take their defaults);
    ``suffixes``: 8 hex digits for each new replica's name."""
    if volume.meta.deleting:
        return _deleting(volume, replicas, engine, up)
    modes = engine_modes(engine, up)
    in_use = volume.status.state in _IN_USE
    seen = {
        r.meta.name: observe(r, modes, up=up, in_use=in_use, now=now)
        for r in sorted(replicas, key=lambda r: r.meta.name)
    }
    if in_use and faulted(seen.values(), modes):
        seen = {n: fail(r, now) if usable(r) else r for n, r in seen.items()}
    work = _Pass(
        volume=volume,
        status=volume.status,
        replicas=seen,
        engine=_salvage_done(engine),
        up=up,
        nodes={n.name: n for n in nodes},
        now=now,
    )
    _lifecycle(work)
    if work.status.state in _IN_USE and flag(settings, "auto-salvage"):
        _auto_salvage(work)
    _robustness(work)
    _replenish(work, settings, suffixes)
    _trim(work)
    _sizes(work)
    _run_engine(work)
    _drop_stale(work)
    return _diff(work, volume, replicas, engine)


def _deleting(
    volume: Volume, replicas: Sequence[Replica], engine: Engine | None, up: frozenset[str]
) -> VolumePlan:
    status = attrs.evolve(volume.status, state=VolumeState.DELETING)
    return VolumePlan(
        volume=volume if status == volume.status else attrs.evolve(volume, status=status),
        delete_replicas=tuple(sorted(r.meta.name for r in replicas if not r.meta.deleting)),
        abandon_replicas=tuple(
            sorted(r.meta.name for r in replicas if r.meta.deleting and r.spec.node_id not in up)
        ),
        delete_engine=engine is not None and not engine.meta.deleting,
        release_finalizer=engine is None and not replicas,
    )


def _serving(engine: Engine | None, node: str, up: frozenset[str]) -> bool:
    """The engine was asked to run on ``node``, does, and serves (or needs no frontend)."""
    return (
        engine is not None
        and engine.spec.node_id == node
        and node in up
        and engine.spec.desire_state is DesireState.RUNNING
        and engine.status.current_state is InstanceState.RUNNING
        and bool(engine.status.endpoint or engine.spec.disable_frontend)
    )


def _lifecycle(work: _Pass) -> None:
    """The state transition of this pass, and what the replicas and engine are asked to do."""
    status, target, engine = work.status, work.target, work.engine
    state, current = status.state, status.current_node_id
    elsewhere = (
        engine is not None
        and engine.spec.desire_state is DesireState.RUNNING
        and engine.spec.node_id != target
    )
    if state is VolumeState.CREATING:
        state = VolumeState.DETACHED
    elif state is VolumeState.DETACHED and target:
        state = VolumeState.ATTACHING
    elif (state is VolumeState.ATTACHING and (not target or elsewhere)) or (
        state is VolumeState.ATTACHED and target != current
    ):
        state = VolumeState.DETACHING
    if state is VolumeState.ATTACHING and _serving(engine, target, work.up):
        state, current = VolumeState.ATTACHED, target
    if state is VolumeState.DETACHING:
        work.stop_engine()
        if engine_stopped(engine, work.up):  # as read: stopped, or its node is down
            work.want_replicas(running=False)
            if all(replica_stopped(r, work.up) for r in work.replicas.values()):
                state, current = VolumeState.DETACHED, ""
    elif state in _IN_USE:
        work.want_replicas(running=True)
    else:
        work.want_replicas(running=False)
        work.stop_engine()
    work.status = attrs.evolve(status, state=state, current_node_id=current)


def _salvage_done(engine: Engine | None) -> Engine | None:
    if engine is None or not (engine.spec.salvage_requested and engine.status.salvage_executed):
        return engine
    return attrs.evolve(engine, spec=attrs.evolve(engine.spec, salvage_requested=False))


def _auto_salvage(work: _Pass) -> None:
    """Every replica failed while in use: un-fail those that can run, and ask for a salvage."""
    engine = work.engine
    members = [r for r in work.replicas.values() if not r.meta.deleting]
    if engine is None or not members or not all(r.failed for r in members):
        return
    back = [r for r in members if r.spec.node_id in work.up]
    if not back:
        return  # nothing could run: wait for a node to come back
    for replica in back:
        spec = attrs.evolve(replica.spec, failed_at=None, desire_state=DesireState.RUNNING)
        work.set_replica(replica, spec)
    work.engine = attrs.evolve(
        engine,
        spec=attrs.evolve(engine.spec, salvage_requested=True),
        status=attrs.evolve(engine.status, salvage_executed=False),
    )
    work.status = attrs.evolve(work.status, last_auto_salvaged_at=work.now)


def _robustness(work: _Pass) -> None:
    status, engine = work.status, work.engine
    if status.state not in _IN_USE or engine is None or engine.spec.node_id != work.target:
        value = Robustness.UNKNOWN
    else:
        value = volume_robustness(
            engine, work.replicas, work.volume.spec.number_of_replicas, work.up
        )
    degraded_at = status.last_degraded_at
    if value is Robustness.DEGRADED and status.robustness is not Robustness.DEGRADED:
        degraded_at = work.now
    work.status = attrs.evolve(status, robustness=value, last_degraded_at=degraded_at)
    work.judged = dict(work.replicas)  # (a replica reused after this counts only next time)


def _replenish(work: _Pass, settings: Mapping[str, str], suffixes: Iterator[str]) -> None:
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
    desire = DesireState.RUNNING if state in _IN_USE else DesireState.STOPPED
    engine = engine_name(volume.meta.name)
    for replica in created:
        spec = attrs.evolve(replica.spec, engine_name=engine, desire_state=desire)
        work.created.append(attrs.evolve(replica, spec=spec))
    conditions = scheduled_condition(work.status.conditions, why, work.now)
    work.status = attrs.evolve(work.status, conditions=conditions)


def _reuse(work: _Pass, missing: int) -> int:
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
            # what is known of its instance is from before it failed: its node reports anew
            status = attrs.evolve(
                replica.status, current_state=InstanceState.STOPPED, ip="", port=0, started=False
            )
            spec = attrs.evolve(
                replica.spec,
                failed_at=None,
                desire_state=DesireState.RUNNING,
                rebuild_retry_count=replica.spec.rebuild_retry_count + 1,
            )
            work.set_replica(attrs.evolve(replica, status=status), spec)
            reused += 1
    return reused


def _run_engine(work: _Pass) -> None:
    """While attaching or attached: the engine on the attach node, wanted running, linking the
    replicas that run. Started only once every usable replica runs, with those holding data
    (the others are rebuilt once it runs). An engine to be salvaged is (re)started that way
    too: until every replica to choose from runs, it links none (its node stops the faulted
    instance and waits), never the addresses of instances that are gone."""
    if work.status.state not in _IN_USE or work.target not in work.up:
        return
    engine = work.engine
    members = [r for r in work.replicas.values() if usable(r) and r.meta.name not in work.deleted]
    ready = [r for r in members if replica_ready(r, work.up)]
    salvaging = salvage_pending(engine)
    running = (
        engine is not None
        and engine.spec.node_id == work.target
        and engine.status.current_state is InstanceState.RUNNING
        and not salvaging
    )
    if not running:
        if len(ready) < len(members):
            if salvaging and engine is not None and engine.spec.replica_address_map:
                spec = attrs.evolve(engine.spec, replica_address_map={})
                work.engine = attrs.evolve(engine, spec=spec)
            return
        ready = [r for r in ready if r.spec.healthy_at] or ready
    if not ready:
        return
    addresses = {r.meta.name: address(r) for r in ready}
    salvage = any(r.spec.salvage_requested for r in ready)
    work.engine = _engine_on(work.volume, engine, work.target, addresses, salvage=salvage)


def _engine_on(
    volume: Volume,
    engine: Engine | None,
    node: str,
    addresses: dict[str, str],
    *,
    salvage: bool,
) -> Engine:
    """``engine`` (or a new one) wanted running on ``node`` with ``addresses``, at the volume's
    size; moved from another node (that one stopped or down), it starts with nothing seen of it.
    ``salvage``: a replica was salvaged by the operator: the engine starts by choosing the best
    one (a request already made stays until the engine did it)."""
    if engine is None:
        engine = Engine(
            meta=ObjectMeta(name=engine_name(volume.meta.name)),
            spec=EngineSpec(volume_name=volume.meta.name, volume_size=volume.spec.size),
        )
    elif engine.spec.node_id != node:
        engine = attrs.evolve(engine, status=EngineStatus())
    spec = attrs.evolve(
        engine.spec,
        node_id=node,
        volume_size=volume.spec.size,
        desire_state=DesireState.RUNNING,
        replica_address_map=addresses,
        salvage_requested=engine.spec.salvage_requested or salvage,
        frontend=volume.spec.frontend,
        disable_frontend=volume.spec.disable_frontend,
    )
    return attrs.evolve(engine, spec=spec)


def _trim(work: _Pass) -> None:
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


def _sizes(work: _Pass) -> None:
    """The volume grew (an expansion: the engine grew its replicas, then the spec says so): the
    replicas its running engine links are that size now. The others keep theirs: a replica
    opens only at its own size; one that missed the expansion is not reused."""
    size = work.volume.spec.size
    modes = engine_modes(work.engine, work.up)
    for replica in list(work.replicas.values()):
        linked = modes.get(replica.meta.name) in (Mode.RW, Mode.WO)
        if usable(replica) and linked and replica.spec.volume_size != size:
            work.set_replica(replica, attrs.evolve(replica.spec, volume_size=size))


def _drop_stale(work: _Pass) -> None:
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


def _diff(
    work: _Pass, volume: Volume, replicas: Sequence[Replica], engine: Engine | None
) -> VolumePlan:
    before = {r.meta.name: r for r in replicas}
    return VolumePlan(
        volume=volume if work.status == volume.status else attrs.evolve(volume, status=work.status),
        create_replicas=tuple(work.created),
        update_replicas=tuple(
            r for name, r in work.replicas.items() if r != before[name] and name not in work.deleted
        ),
        delete_replicas=tuple(work.deleted),
        engine=None if work.engine == engine else work.engine,
        events=transition_events(
            volume,
            replicas,
            engine,
            status=work.status,
            planned=work.replicas,
            judged=work.judged,
            up=work.up,
        ),
        again=min(((t - work.now).total_seconds() for t in work.timers), default=None),
    )
