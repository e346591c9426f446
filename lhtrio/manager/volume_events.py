"""What happened to a volume in one plan, pure: the events of a transition, for the operator.

:func:`transition_events` compares what :func:`~lhtrio.manager.volume_plan.plan_volume` read with
what it writes, and says what an operator would want told (Kubernetes-style events, recorded by
:mod:`lhtrio.manager.events` once the plan is written):

* ``Attached`` / ``Detached`` (Normal): the volume became attached to (detached from) a node;
* ``Degraded`` (Warning): robustness became degraded (the message counts the healthy replicas);
  ``Faulted`` (Warning): no replica is healthy; ``Healthy`` (Normal): healthy again after
  degraded or faulted;
* ``ReplicaFailed`` (Warning): a replica was failed because its node is down or its instance
  errored (one the engine reports ERR is told by :mod:`lhtrio.manager.engine_events`, with the
  start and end of every rebuild: they are the engine's to see);
* ``FailedScheduling`` (Warning): a replica could not be placed (the scheduler's message and
  reason, as the ``Scheduled`` condition shows them; told again only when they change);
* ``AutoSalvaged`` (Warning): every replica failed and ``auto-salvage`` asked the engine to
  salvage.

Each transition happens in exactly one plan that is written (the next plan starts from what it
wrote), so each is told once; a plan whose writes fail is made again, and so are its events.
Messages carry no times or counters that change between two occurrences of the same thing, so a
repeated occurrence is counted on its event rather than recorded anew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lhtrio.manager.volume_status import engine_modes, usable
from lhtrio.models.cluster import Engine, Replica, Volume
from lhtrio.models.cluster.event import EventType, Occurrence
from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.meta import get_condition
from lhtrio.models.cluster.volume import (
    CONDITION_SCHEDULED,
    Robustness,
    VolumeState,
    VolumeStatus,
)
from lhtrio.models.volume import Mode

__all__ = ["transition_events"]

_WARNING = EventType.WARNING


def transition_events(
    volume: Volume,
    replicas: Sequence[Replica],
    engine: Engine | None,
    *,
    status: VolumeStatus,
    planned: Mapping[str, Replica],
    judged: Mapping[str, Replica] | None = None,
    up: frozenset[str],
) -> tuple[Occurrence, ...]:
    """The events of one plan of ``volume``: ``replicas`` and ``engine`` as read, ``status`` and
    ``planned`` (the replicas read, by name) as the plan writes them, ``judged`` the replicas as
    the plan judged the robustness from (default ``planned``), ``up`` the nodes that are up."""
    name, before = volume.meta.name, volume.status
    found: list[Occurrence] = []
    found += _state(name, before, status)
    found += _failures(name, replicas, engine, planned, up)
    found += _robustness(volume, status, planned if judged is None else judged, engine)
    found += _scheduling(name, before, status)
    if status.last_auto_salvaged_at != before.last_auto_salvaged_at:
        back = ", ".join(n for n, r in planned.items() if usable(r)) or "none"
        found.append(
            Occurrence(
                reason="AutoSalvaged",
                message=f"every replica of volume {name} failed: the engine salvages the best "
                f"of {back} (auto-salvage)",
                type=_WARNING,
            )
        )
    return tuple(found)


def _state(name: str, before: VolumeStatus, after: VolumeStatus) -> list[Occurrence]:
    if after.state is VolumeState.ATTACHED and before.state is not VolumeState.ATTACHED:
        node = after.current_node_id
        return [Occurrence(reason="Attached", message=f"volume {name} attached to node {node}")]
    if after.state is VolumeState.DETACHED and before.state is VolumeState.DETACHING:
        node = before.current_node_id
        return [Occurrence(reason="Detached", message=f"volume {name} detached from node {node}")]
    return []


def _robustness(
    volume: Volume, after: VolumeStatus, planned: Mapping[str, Replica], engine: Engine | None
) -> list[Occurrence]:
    name, was, now = volume.meta.name, volume.status.robustness, after.robustness
    if now is was:
        return []
    if now is Robustness.DEGRADED:
        modes = engine.status.replica_mode_map if engine is not None else {}
        healthy = sum(1 for n, r in planned.items() if usable(r) and modes.get(n) is Mode.RW)
        return [
            Occurrence(
                reason="Degraded",
                message=f"volume {name} is degraded: {healthy} of "
                f"{volume.spec.number_of_replicas} replicas are healthy",
                type=_WARNING,
            )
        ]
    if now is Robustness.FAULTED:
        return [
            Occurrence(
                reason="Faulted",
                message=f"volume {name} is faulted: no replica is healthy",
                type=_WARNING,
            )
        ]
    if now is Robustness.HEALTHY and was in (Robustness.DEGRADED, Robustness.FAULTED):
        return [Occurrence(reason="Healthy", message=f"volume {name} is healthy again")]
    return []


def _why_failed(replica: Replica, up: frozenset[str]) -> str:
    node = replica.spec.node_id
    if node not in up:
        return f"node {node} is down"
    if replica.status.current_state is InstanceState.ERROR:
        return "its instance errored"
    return "it stopped"


def _failures(
    name: str,
    replicas: Sequence[Replica],
    engine: Engine | None,
    planned: Mapping[str, Replica],
    up: frozenset[str],
) -> list[Occurrence]:
    """Replicas failed by this plan, but for those the engine reports ERR (told by
    :mod:`lhtrio.manager.engine_events`, as the engine reports it)."""
    modes = engine_modes(engine, up)
    found = []
    for old in sorted(replicas, key=lambda r: r.meta.name):
        new = planned.get(old.meta.name)
        if new is None or old.failed or not new.failed or modes.get(old.meta.name) is Mode.ERR:
            continue
        found.append(
            Occurrence(
                reason="ReplicaFailed",
                message=f"replica {old.meta.name} on node {old.spec.node_id} of volume {name} "
                f"failed: {_why_failed(old, up)}",
                type=_WARNING,
            )
        )
    return found


def _scheduling(name: str, before: VolumeStatus, after: VolumeStatus) -> list[Occurrence]:
    new = get_condition(after.conditions, CONDITION_SCHEDULED)
    if new is None or new.status:
        return []
    old = get_condition(before.conditions, CONDITION_SCHEDULED)
    if old is not None and (old.status, old.reason, old.message) == (
        False,
        new.reason,
        new.message,
    ):
        return []  # said already
    return [
        Occurrence(
            reason="FailedScheduling",
            message=f"cannot place a replica of volume {name}: {new.message} ({new.reason})",
            type=_WARNING,
        )
    ]
