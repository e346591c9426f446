"""The events of a volume's transitions, walked through its life with the volume plan's pure
simulator: each transition is told once, by the plan that makes it, and nothing is told while
nothing changes."""

from __future__ import annotations

from lhtrio.manager.volume_plan import VolumePlan
from lhtrio.models.cluster.event import EventType
from lhtrio.models.cluster.volume import Robustness, VolumeState
from lhtrio.models.volume import Mode
from tests.manager.test_volume_plan import (
    R1,
    R2,
    R3,
    R4,
    WAIT,
    Sim,
    attached,
    node,
    three_nodes,
)

WARNING, NORMAL = EventType.WARNING, EventType.NORMAL


def told(*plans: VolumePlan) -> list[tuple[str, str]]:
    return [(o.reason, o.message) for plan in plans for o in plan.events]


def reasons(*plans: VolumePlan) -> list[str]:
    return [o.reason for plan in plans for o in plan.events]


def test_attach_and_detach_are_told_once_with_the_node() -> None:
    sim = three_nodes()
    assert told(*sim.settle()) == []  # created and detached: nothing to tell
    sim.attach("n1")
    plans = sim.settle()
    assert told(*plans) == [("Attached", "volume v attached to node n1")]
    assert [o.type for p in plans for o in p.events] == [NORMAL]
    sim.attach("")
    assert told(*sim.settle()) == [("Detached", "volume v detached from node n1")]
    assert told(sim.step()) == []


def test_a_replica_on_a_node_that_went_down_degrades_the_volume_until_it_heals() -> None:
    sim = attached(4)
    sim.node_down("n3")
    plan = sim.step()
    assert told(plan) == [
        ("ReplicaFailed", f"replica {R3} on node n3 of volume v failed: node n3 is down"),
        ("Degraded", "volume v is degraded: 2 of 3 replicas are healthy"),
    ]
    assert [o.type for o in plan.events] == [WARNING, WARNING]
    assert told(sim.step()) == []  # still degraded: nothing new

    sim.later(300)
    sim.node_back("n3")
    # reused and rebuilt in place: the rebuild is the engine's to tell (engine_events)
    assert told(*sim.settle()) == [("Healthy", "volume v is healthy again")]


def test_a_replica_the_engine_reports_err_is_the_engines_to_tell() -> None:
    sim = attached(4)
    sim.engine_reports(R2=Mode.ERR)
    plan = sim.step()
    assert sim.replica(R2).failed
    assert told(plan) == [("Degraded", "volume v is degraded: 2 of 3 replicas are healthy")]


def test_a_new_replica_placed_after_the_wait_heals_the_volume() -> None:
    sim = attached(4)
    sim.node_down("n3")
    sim.step()
    sim.later(WAIT.total_seconds())
    plan = sim.step()
    assert [r.meta.name for r in plan.create_replicas] == [R4]
    assert told(plan) == []
    assert reasons(*sim.settle()) == ["Healthy"]


def test_every_replica_failing_is_faulted_without_auto_salvage() -> None:
    sim = attached()
    sim.settings["auto-salvage"] = "false"
    sim.engine_reports(R1=Mode.ERR, R2=Mode.ERR, R3=Mode.ERR)
    plan = sim.step()
    assert told(plan) == [("Faulted", "volume v is faulted: no replica is healthy")]
    assert sim.status[1] is Robustness.FAULTED


def test_auto_salvage_is_told() -> None:
    sim = attached()
    sim.engine_reports(R1=Mode.ERR, R2=Mode.ERR, R3=Mode.ERR)
    plan = sim.step()
    assert told(plan) == [
        (
            "AutoSalvaged",
            f"every replica of volume v failed: the engine salvages the best of {R1}, {R2}, "
            f"{R3} (auto-salvage)",
        )
    ]
    assert plan.events[0].type is WARNING
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")


def test_a_replica_that_cannot_be_placed_is_told_once_per_reason() -> None:
    sim = Sim(nodes=[node("n1"), node("n2")])
    plan = sim.step()
    (said,) = told(plan)
    assert said[0] == "FailedScheduling"
    assert said[1].startswith("cannot place a replica of volume v: ")
    assert said[1].endswith("(AntiAffinity)")
    assert told(sim.step()) == []  # the same reason: not told again
    sim.nodes = [*sim.nodes, node("n3")]
    sim.up = sim.up | {"n3"}
    assert told(sim.step()) == []  # placed now: nothing to tell
    assert sorted(r.spec.node_id for r in sim.replicas.values()) == ["n1", "n2", "n3"]


def test_a_quiet_volume_tells_nothing() -> None:
    sim = attached()
    for _ in range(3):
        assert told(sim.step()) == []
    assert sorted(sim.replicas) == [R1, R2, R3]


def test_degraded_counts_the_replicas_the_robustness_was_judged_from() -> None:
    """The engine's node comes back: its replica there failed while it was down, so the plan
    judges the volume degraded (2 of 3), then reuses that replica in the same plan; the event
    says what the robustness was judged from, not 3 of 3."""
    sim = attached(4)
    sim.node_down("n1")
    sim.step()
    sim.later(60)
    sim.node_back("n1")
    plan = sim.step()
    degraded = [m for reason, m in told(plan) if reason == "Degraded"]
    assert degraded == ["volume v is degraded: 2 of 3 replicas are healthy"], told(plan)
