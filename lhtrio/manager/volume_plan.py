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

Here: the state machine, robustness, auto-salvage and the engine. The plan's working copies
and its steps on the replica set (replenishment and reuse, a lowered count, sizes after an
expansion, stale replicas) are in :mod:`lhtrio.manager.volume_replicas`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

import attrs

from lhtrio.manager.policy import flag
from lhtrio.manager.scheduler import NodeView
from lhtrio.manager.volume_events import transition_events
from lhtrio.manager.volume_replicas import IN_USE, PlanPass, drop_stale, replenish, sizes, trim
from lhtrio.manager.volume_status import (
    address,
    engine_modes,
    engine_stopped,
    fail,
    faulted,
    forget_instance,
    observe,
    replica_ready,
    replica_stopped,
    salvage_pending,
    usable,
    volume_robustness,
)
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus, engine_name
from lhtrio.models.cluster.event import Occurrence
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.volume import Robustness, VolumeState

__all__ = ["VolumePlan", "plan_volume"]


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
    in_use = volume.status.state in IN_USE
    seen = {
        r.meta.name: observe(r, modes, up=up, in_use=in_use, now=now)
        for r in sorted(replicas, key=lambda r: r.meta.name)
    }
    if in_use and faulted(seen.values(), modes):
        seen = {n: fail(r, now) if usable(r) else r for n, r in seen.items()}
    work = PlanPass(
        volume=volume,
        status=volume.status,
        replicas=seen,
        engine=_salvage_done(engine),
        up=up,
        nodes={n.name: n for n in nodes},
        now=now,
    )
    _lifecycle(work)
    if work.status.state in IN_USE and flag(settings, "auto-salvage"):
        _auto_salvage(work)
    _robustness(work)
    replenish(work, settings, suffixes)
    trim(work)
    sizes(work)
    _run_engine(work)
    drop_stale(work)
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


def _lifecycle(work: PlanPass) -> None:
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
    elif state in IN_USE:
        work.want_replicas(running=True)
    else:
        work.want_replicas(running=False)
        work.stop_engine()
    work.status = attrs.evolve(status, state=state, current_node_id=current)


def _salvage_done(engine: Engine | None) -> Engine | None:
    if engine is None or not (engine.spec.salvage_requested and engine.status.salvage_executed):
        return engine
    return attrs.evolve(engine, spec=attrs.evolve(engine.spec, salvage_requested=False))


def _auto_salvage(work: PlanPass) -> None:
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
        work.set_replica(forget_instance(replica), spec)
    work.engine = attrs.evolve(
        engine,
        spec=attrs.evolve(engine.spec, salvage_requested=True),
        status=attrs.evolve(engine.status, salvage_executed=False),
    )
    work.status = attrs.evolve(work.status, last_auto_salvaged_at=work.now)


def _robustness(work: PlanPass) -> None:
    status, engine = work.status, work.engine
    if status.state not in IN_USE or engine is None or engine.spec.node_id != work.target:
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


def _run_engine(work: PlanPass) -> None:
    """While attaching or attached: the engine on the attach node, wanted running, linking the
    replicas that run. Started only once every usable replica runs, with those holding data
    (the others are rebuilt once it runs). An engine to be salvaged is (re)started that way
    too: until every replica to choose from runs, it links none (its node stops the faulted
    instance and waits), never the addresses of instances that are gone."""
    if work.status.state not in IN_USE or work.target not in work.up:
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


def _diff(
    work: PlanPass, volume: Volume, replicas: Sequence[Replica], engine: Engine | None
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
