"""The volume reconciler's decisions, walked through a volume's life.

A small pure simulator (:class:`Sim`) applies each plan to the objects, then plays the nodes'
instance managers: replicas and engines on nodes that are up start or stop as asked and report
their state, address, endpoint and the engine's replica modes (a replica new to a running engine
is rebuilt: WO, then RW at the next look; an ERR stays ERR until the engine lets it go). Nodes
that are down report nothing. Tests inject failures by editing what the engine reports.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from lhtrio.manager.placement import node_views
from lhtrio.manager.volume_plan import VolumePlan, plan_volume
from lhtrio.models.cluster import Engine, Node, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.engine import EngineStatus
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.meta import Condition, get_condition
from lhtrio.models.cluster.node import CONDITION_READY, DiskSpec, DiskStatus, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import ReplicaStatus
from lhtrio.models.cluster.volume import CONDITION_SCHEDULED, Robustness, VolumeSpec, VolumeState
from lhtrio.models.volume import Mode

GiB = 1 << 30
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
WAIT = dt.timedelta(seconds=600)  # replica-replenishment-wait-interval's default
R1, R2, R3, R4 = (f"v-r-{n:08x}" for n in range(1, 5))  # placed on n1, n2, n3, then n4


def node(name: str, free: int = 100) -> Node:
    return Node(
        meta=ObjectMeta(name=name),
        spec=NodeSpec(disks={f"{name}-d": DiskSpec(path=f"/d/{name}")}),
        status=NodeStatus(
            conditions=(Condition(type=CONDITION_READY, status=True),),
            disk_status={
                f"{name}-d": DiskStatus(
                    storage_available=free * GiB, storage_maximum=100 * GiB, disk_uuid=f"{name}-d"
                )
            },
        ),
    )


VOLUME = Volume(meta=ObjectMeta(name="v"), spec=VolumeSpec(size=10 * GiB))


def ip(node_name: str) -> str:
    return f"127.0.0.{10 + int(node_name[1:])}"


def names() -> Iterator[str]:
    return (f"{n:08x}" for n in itertools.count(1))


@attrs.define
class Sim:
    """A volume, its replicas and engine, and the nodes that run them."""

    nodes: list[Node]
    volume: Volume = VOLUME
    up: frozenset[str] = frozenset()
    settings: dict[str, str] = attrs.Factory(dict)
    now: dt.datetime = T0
    replicas: dict[str, Replica] = attrs.Factory(dict)
    engine: Engine | None = None
    released: bool = False
    stalled: set[str] = attrs.Factory(set)  # replicas whose instances do not start yet
    suffixes: Iterator[str] = attrs.Factory(names)

    def __attrs_post_init__(self) -> None:
        if not self.up:
            self.up = frozenset(n.meta.name for n in self.nodes)

    def plan(self) -> VolumePlan:
        return plan_volume(
            self.volume,
            list(self.replicas.values()),
            self.engine,
            nodes=node_views(self.nodes, self.up),
            up=self.up,
            settings=self.settings,
            now=self.now,
            suffixes=self.suffixes,
        )

    def apply(self, plan: VolumePlan) -> None:
        self.volume = plan.volume
        for replica in plan.create_replicas:
            assert replica.meta.name not in self.replicas
            self.replicas[replica.meta.name] = replica
        for replica in plan.update_replicas:
            assert replica.meta.name in self.replicas
            self.replicas[replica.meta.name] = replica
        for name in plan.delete_replicas:
            del self.replicas[name]
        if plan.delete_engine:
            self.engine = None
        elif plan.engine is not None:
            self.engine = plan.engine
        self.released = self.released or plan.release_finalizer

    def instances(self) -> None:
        """The instance managers of the nodes that are up act and report."""
        for name, replica in sorted(self.replicas.items()):
            if replica.spec.node_id not in self.up or name in self.stalled:
                continue
            if replica.spec.desire_state is DesireState.RUNNING and not replica.failed:
                status = ReplicaStatus(
                    current_state=InstanceState.RUNNING,
                    ip=ip(replica.spec.node_id),
                    port=10000 + int(name[-8:], 16),
                    started=True,
                )
            else:
                status = ReplicaStatus()
            self.replicas[name] = attrs.evolve(replica, status=status)
        engine = self.engine
        if engine is None or engine.spec.node_id not in self.up:
            return
        if engine.spec.desire_state is DesireState.STOPPED:
            self.engine = attrs.evolve(engine, status=EngineStatus())
            return
        was = engine.status
        salvaging = engine.spec.salvage_requested and not was.salvage_executed
        if salvaging and not engine.spec.replica_address_map:
            return  # a salvage waits for replicas to choose from: the node starts nothing yet
        fresh = salvaging or was.current_state is not InstanceState.RUNNING
        modes = {}
        for name in engine.spec.replica_address_map:
            old = was.replica_mode_map.get(name)
            if fresh or old is Mode.WO:
                modes[name] = Mode.RW  # started with it, or its rebuild is done
            else:
                modes[name] = Mode.WO if old is None else old  # new: rebuilt; ERR stays
        self.engine = attrs.evolve(
            engine,
            status=EngineStatus(
                current_state=InstanceState.RUNNING,
                ip=ip(engine.spec.node_id),
                port=9000,
                started=True,
                endpoint=f"nbd://{ip(engine.spec.node_id)}:10809/v",
                current_replica_address_map=dict(engine.spec.replica_address_map),
                replica_mode_map=modes,
                salvage_executed=salvaging or was.salvage_executed,
            ),
        )

    def step(self) -> VolumePlan:
        plan = self.plan()
        self.apply(plan)
        self.instances()
        return plan

    def settle(self) -> list[VolumePlan]:
        """Plan and run until there is nothing to write and the instances report nothing new."""
        plans = []
        for _ in range(20):
            seen = (self.volume, dict(self.replicas), self.engine)
            plans.append(self.step())
            if seen == (self.volume, self.replicas, self.engine):
                return plans
        raise AssertionError(f"no rest after 20 plans; the last: {plans[-1]}")

    def attach(self, node_id: str) -> None:
        self.volume = attrs.evolve(
            self.volume, spec=attrs.evolve(self.volume.spec, node_id=node_id)
        )

    def engine_reports(self, **modes: Mode) -> None:
        assert self.engine is not None
        names = {f"R{n}": f"v-r-{n:08x}" for n in range(1, 10)}
        mode_map = dict(self.engine.status.replica_mode_map)
        mode_map.update({names[k]: m for k, m in modes.items()})
        status = attrs.evolve(self.engine.status, replica_mode_map=mode_map)
        self.engine = attrs.evolve(self.engine, status=status)

    def node_down(self, name: str) -> None:
        self.up = self.up - {name}

    def node_back(self, name: str) -> None:
        """The node's lease is valid again and its instance manager reports what runs (its
        instances died with it)."""
        self.up = self.up | {name}
        self.instances()

    def later(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    @property
    def status(self) -> tuple[VolumeState, Robustness, str]:
        s = self.volume.status
        return s.state, s.robustness, s.current_node_id

    def replica(self, name: str) -> Replica:
        return self.replicas[name]


def three_nodes(n: int = 3) -> Sim:
    return Sim(nodes=[node(f"n{i}") for i in range(1, n + 1)])


def attached(n: int = 3) -> Sim:
    sim = three_nodes(n)
    sim.settle()
    sim.attach("n1")
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    return sim


def empty(plan: VolumePlan, volume: Volume) -> bool:
    """Nothing to write: ``plan`` leaves ``volume`` (the very object) and its members alone."""
    return plan.volume is volume and plan == VolumePlan(volume=volume)


def scheduled(volume: Volume) -> Condition:
    condition = get_condition(volume.status.conditions, CONDITION_SCHEDULED)
    assert condition is not None
    return condition


# --- creating → detached ---------------------------------------------------------------------


def test_a_new_volume_gets_three_replicas_on_three_nodes_and_is_detached() -> None:
    sim = three_nodes()
    plan = sim.step()
    assert plan.volume.status.state is VolumeState.DETACHED
    assert plan.volume.status.robustness is Robustness.UNKNOWN
    assert [(r.meta.name, r.spec.node_id) for r in plan.create_replicas] == [
        (R1, "n1"),
        (R2, "n2"),
        (R3, "n3"),
    ]
    assert all(r.spec.desire_state is DesireState.STOPPED for r in plan.create_replicas)
    assert all(r.spec.engine_name == "v-e-0" for r in plan.create_replicas)
    assert plan.engine is None
    assert scheduled(plan.volume).status is True
    assert empty(sim.plan(), sim.volume)  # nothing changes: the very object


@pytest.mark.parametrize(
    ("nodes", "placed", "reason"),
    [
        ([node("n1"), node("n2")], ["n1", "n2"], "AntiAffinity"),
        ([node("n1", free=10), node("n2", free=10)], [], "InsufficientStorage"),
    ],
)
def test_an_unschedulable_volume_says_why_and_keeps_what_was_placed(
    nodes: list[Node], placed: list[str], reason: str
) -> None:
    sim = Sim(nodes=nodes)
    plan = sim.step()
    assert [r.spec.node_id for r in plan.create_replicas] == placed
    assert plan.volume.status.state is VolumeState.DETACHED
    condition = scheduled(plan.volume)
    assert (condition.status, condition.reason) == (False, reason)
    assert condition.message
    assert empty(sim.plan(), sim.volume)  # it tries again, and says nothing new

    sim.nodes = [*sim.nodes, node("n7"), node("n8"), node("n9")]
    sim.up = sim.up | {"n7", "n8", "n9"}
    plan = sim.step()
    assert len(plan.create_replicas) == 3 - len(placed)
    assert scheduled(plan.volume).status is True


# --- attach, detach --------------------------------------------------------------------------


def test_attach_starts_the_replicas_then_the_engine_then_is_attached() -> None:
    sim = three_nodes()
    sim.settle()
    sim.attach("n1")
    sim.stalled = {R3}

    plan = sim.step()
    assert sim.status == (VolumeState.ATTACHING, Robustness.UNKNOWN, "")
    assert {r.meta.name: r.spec.desire_state for r in plan.update_replicas} == {
        R1: DesireState.RUNNING,
        R2: DesireState.RUNNING,
        R3: DesireState.RUNNING,
    }
    assert plan.engine is None
    assert sim.step().engine is None  # R3 does not run yet: the engine waits for it

    sim.stalled = set()
    sim.instances()
    plan = sim.step()
    assert plan.engine is not None
    assert (plan.engine.meta.name, plan.engine.spec.node_id) == ("v-e-0", "n1")
    assert plan.engine.spec.desire_state is DesireState.RUNNING
    assert plan.engine.spec.replica_address_map == {
        R1: "127.0.0.11:10001",
        R2: "127.0.0.12:10002",
        R3: "127.0.0.13:10003",
    }
    assert sim.status[0] is VolumeState.ATTACHING

    sim.step()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    sim.settle()
    assert all(r.spec.healthy_at == T0 for r in sim.replicas.values())
    assert empty(sim.plan(), sim.volume)


def test_detach_stops_the_engine_first_then_the_replicas() -> None:
    sim = attached()
    sim.attach("")

    plan = sim.step()
    assert sim.status == (VolumeState.DETACHING, Robustness.UNKNOWN, "n1")
    assert plan.engine is not None
    assert plan.engine.spec.desire_state is DesireState.STOPPED
    assert plan.update_replicas == ()  # the engine still runs: its replicas stay

    plan = sim.step()
    assert sim.status[0] is VolumeState.DETACHING
    assert {r.meta.name: r.spec.desire_state for r in plan.update_replicas} == {
        R1: DesireState.STOPPED,
        R2: DesireState.STOPPED,
        R3: DesireState.STOPPED,
    }

    sim.step()
    assert sim.status == (VolumeState.DETACHED, Robustness.UNKNOWN, "")
    assert empty(sim.plan(), sim.volume)


def test_a_volume_detached_again_attaches_elsewhere_with_the_same_engine() -> None:
    sim = attached()
    sim.attach("")
    sim.settle()
    sim.attach("n2")
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n2")
    assert sim.engine is not None
    assert (sim.engine.meta.name, sim.engine.spec.node_id) == ("v-e-0", "n2")


# --- deleting --------------------------------------------------------------------------------


def test_delete_removes_the_engine_and_every_replica_then_releases_the_finalizer() -> None:
    sim = attached()
    sim.volume = attrs.evolve(sim.volume, meta=attrs.evolve(sim.volume.meta, deletion_requested=T0))
    plan = sim.plan()
    assert plan.volume.status.state is VolumeState.DELETING
    assert plan.delete_engine
    assert plan.delete_replicas == (R1, R2, R3)
    assert not plan.release_finalizer  # its engine and replicas are still there

    sim.apply(plan)
    plan = sim.plan()
    assert plan.release_finalizer
    assert not plan.delete_engine
    assert plan.delete_replicas == ()


# --- failures, replenishment, reuse ----------------------------------------------------------


def test_a_replica_reported_err_is_failed_and_replaced_only_after_the_wait_interval() -> None:
    sim = attached(4)
    sim.node_down("n3")
    sim.engine_reports(R3=Mode.ERR)

    plan = sim.step()
    r3 = sim.replica(R3)
    assert (r3.spec.failed_at, r3.spec.desire_state) == (T0, DesireState.STOPPED)
    assert sim.status == (VolumeState.ATTACHED, Robustness.DEGRADED, "n1")
    assert sim.volume.status.last_degraded_at == T0
    assert plan.engine is not None
    assert sorted(plan.engine.spec.replica_address_map) == [R1, R2]  # the engine lets it go
    assert plan.create_replicas == ()
    assert plan.again == WAIT.total_seconds()  # looked at again when the wait runs out

    sim.later(WAIT.total_seconds() - 1)
    plan = sim.step()
    assert (plan.create_replicas, plan.again) == ((), 1.0)  # n3 may still come back

    sim.later(1)
    plan = sim.step()
    assert [(r.meta.name, r.spec.node_id) for r in plan.create_replicas] == [(R4, "n4")]
    assert plan.create_replicas[0].spec.desire_state is DesireState.RUNNING
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    assert sim.engine is not None
    assert sorted(sim.engine.spec.replica_address_map) == [R1, R2, R4]


def test_a_failed_replica_that_can_never_come_back_is_replaced_at_once() -> None:
    sim = attached(4)
    sim.node_down("n3")
    sim.nodes = [n for n in sim.nodes if n.meta.name != "n3"]  # the node is gone for good
    sim.engine_reports(R3=Mode.ERR)
    plan = sim.step()
    assert [(r.meta.name, r.spec.node_id) for r in plan.create_replicas] == [(R4, "n4")]


def test_a_failed_replica_whose_node_comes_back_in_time_is_reused() -> None:
    sim = attached(4)
    sim.node_down("n3")
    sim.step()
    assert sim.replica(R3).spec.failed_at == T0  # on a node that is down while attached
    assert sim.volume.status.robustness is Robustness.DEGRADED

    sim.later(300)
    sim.node_back("n3")
    plan = sim.step()
    assert plan.create_replicas == ()
    r3 = sim.replica(R3)
    assert (r3.spec.failed_at, r3.spec.last_failed_at) == (None, T0)
    assert r3.spec.desire_state is DesireState.RUNNING
    assert r3.spec.rebuild_retry_count == 1

    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    assert sim.engine is not None
    assert sorted(sim.engine.spec.replica_address_map) == [R1, R2, R3]
    assert sim.replica(R3).spec.rebuild_retry_count == 0
    sim.later(WAIT.total_seconds())
    sim.settle()
    assert sorted(sim.replicas) == [R1, R2, R3]


def test_a_replica_err_on_a_node_that_is_up_is_rebuilt_in_place() -> None:
    sim = attached(4)
    sim.engine_reports(R3=Mode.ERR)
    plan = sim.step()
    assert sim.replica(R3).spec.failed_at == T0  # failed first, not reused while still ERR
    assert plan.engine is not None
    assert sorted(plan.engine.spec.replica_address_map) == [R1, R2]

    sim.step()  # the engine let it go
    assert sim.replica(R3).spec.failed_at is None
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    assert sorted(sim.replicas) == [R1, R2, R3]


def test_a_failed_replica_is_deleted_once_stale_while_others_hold_the_data() -> None:
    sim = attached(4)
    sim.node_down("n3")
    sim.step()
    sim.later(WAIT.total_seconds())
    sim.settle()
    assert R3 in sim.replicas
    stale = sim.volume.spec.stale_replica_timeout * 60
    assert sim.step().again == stale - WAIT.total_seconds()  # looked at again when stale
    sim.later(stale - WAIT.total_seconds() - 1)
    plan = sim.step()
    assert (plan.delete_replicas, plan.again) == ((), 1.0)
    sim.later(1)
    plan = sim.step()
    assert (plan.delete_replicas, plan.again) == ((R3,), None)


# --- salvage ---------------------------------------------------------------------------------


def test_every_replica_err_with_auto_salvage_asks_the_engine_to_salvage() -> None:
    sim = attached()
    sim.later(60)
    sim.engine_reports(R1=Mode.ERR, R2=Mode.ERR, R3=Mode.ERR)
    plan = sim.step()
    assert plan.engine is not None
    assert plan.engine.spec.salvage_requested
    assert sim.volume.status.last_auto_salvaged_at == T0 + dt.timedelta(seconds=60)
    for replica in sim.replicas.values():
        assert replica.spec.failed_at is None
        assert replica.spec.last_failed_at == T0 + dt.timedelta(seconds=60)
        assert replica.spec.desire_state is DesireState.RUNNING
    assert sim.volume.status.robustness is Robustness.UNKNOWN

    sim.settle()
    assert sim.engine is not None
    assert not sim.engine.spec.salvage_requested  # done: withdrawn
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")


def test_auto_salvage_links_no_address_of_the_failed_instances() -> None:
    """The replicas auto-salvage brings back restart, most likely on other ports: what their
    status told of their instances is forgotten, and the engine to salvage links none of them
    until each node reports its replica anew (a dead address would leave that replica, perhaps
    the one holding the newest writes, out of the salvage's choice)."""
    sim = attached()
    before = {name: (r.status.ip, r.status.port) for name, r in sim.replicas.items()}
    sim.engine_reports(R1=Mode.ERR, R2=Mode.ERR, R3=Mode.ERR)
    plan = sim.plan()
    assert plan.engine is not None
    assert plan.engine.spec.salvage_requested
    assert plan.engine.spec.replica_address_map == {}
    assert {r.meta.name for r in plan.update_replicas} == {R1, R2, R3}
    for replica in plan.update_replicas:
        assert replica.status.current_state is InstanceState.STOPPED
        assert (replica.status.ip, replica.status.port) == ("", 0)
    sim.apply(plan)
    assert sim.plan().engine is None  # still nothing to link: the nodes have not reported
    sim.instances()  # now they have (this simulator keeps each replica's port)
    plan = sim.plan()
    assert plan.engine is not None
    assert {n: tuple(a.split(":")) for n, a in plan.engine.spec.replica_address_map.items()} == {
        n: (ip, str(port)) for n, (ip, port) in before.items()
    }


def test_every_replica_err_without_auto_salvage_leaves_the_volume_faulted() -> None:
    sim = attached()
    sim.settings["auto-salvage"] = "false"
    sim.engine_reports(R1=Mode.ERR, R2=Mode.ERR, R3=Mode.ERR)
    plan = sim.step()
    assert plan.engine is None  # nothing is asked of it: no salvage
    assert sim.engine is not None
    assert not sim.engine.spec.salvage_requested
    assert all(r.spec.failed_at == T0 for r in sim.replicas.values())
    assert sim.status == (VolumeState.ATTACHED, Robustness.FAULTED, "n1")
    assert sim.volume.status.last_auto_salvaged_at is None


# --- the engine's node down ------------------------------------------------------------------


def test_the_engines_node_down_makes_robustness_unknown_and_the_volume_can_move() -> None:
    sim = attached()
    sim.node_down("n1")
    sim.step()
    assert sim.status == (VolumeState.ATTACHED, Robustness.UNKNOWN, "n1")
    assert sim.replica(R1).failed

    sim.attach("n2")
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.DEGRADED, "n2")
    assert sim.engine is not None
    assert sim.engine.spec.node_id == "n2"
    assert sorted(sim.engine.spec.replica_address_map) == [R2, R3]
    assert sorted(sim.replicas) == [R1, R2, R3]  # R1 may come back: no new one yet


# --- replica count, expansion, deletion with a node down, salvage by the operator -------------


def with_spec(sim: Sim, **changes: Any) -> None:
    sim.volume = attrs.evolve(sim.volume, spec=attrs.evolve(sim.volume.spec, **changes))


def test_a_lower_replica_count_removes_the_extra_replica_of_a_healthy_volume() -> None:
    sim = attached()
    with_spec(sim, number_of_replicas=2)
    plan = sim.plan()
    assert len(plan.delete_replicas) == 1
    gone = plan.delete_replicas[0]
    assert plan.engine is not None
    assert gone not in plan.engine.spec.replica_address_map  # the engine lets it go
    sim.apply(plan)
    sim.instances()
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    assert len(sim.replicas) == 2


def test_a_lower_replica_count_waits_while_a_replica_is_rebuilt() -> None:
    sim = attached()
    sim.engine_reports(R3=Mode.WO)
    with_spec(sim, number_of_replicas=2)
    assert sim.plan().delete_replicas == ()  # nothing is removed under a rebuild
    sim.engine_reports(R3=Mode.RW)
    assert sim.plan().delete_replicas == (R3,)  # all RW: the last by name goes


def test_a_lower_replica_count_of_a_detached_volume_keeps_one_per_node() -> None:
    sim = three_nodes()
    sim.settle()
    with_spec(sim, number_of_replicas=1)
    plan = sim.plan()
    assert plan.delete_replicas == (R3, R2)  # no data anywhere: the first by name stays


def test_an_expansion_gives_the_linked_replicas_the_new_size() -> None:
    sim = attached(4)
    sim.engine_reports(R3=Mode.ERR)
    sim.step()
    assert sim.replica(R3).failed
    with_spec(sim, size=20 * GiB)  # (the engine grew its replicas first)
    plan = sim.step()
    assert plan.engine is not None
    assert plan.engine.spec.volume_size == 20 * GiB
    assert sim.replica(R1).spec.volume_size == sim.replica(R2).spec.volume_size == 20 * GiB
    assert sim.replica(R3).spec.volume_size == 10 * GiB  # it missed the expansion
    sim.later(WAIT.total_seconds())
    sim.settle()
    assert sim.replica(R3).failed  # not reused at the old size: replaced
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    assert all(r.spec.volume_size == 20 * GiB for r in sim.replicas.values() if not r.failed)


def test_a_deleted_volumes_replica_on_a_down_node_is_let_go() -> None:
    sim = attached()
    sim.volume = attrs.evolve(sim.volume, meta=attrs.evolve(sim.volume.meta, deletion_requested=T0))
    for name, replica in list(sim.replicas.items()):
        sim.replicas[name] = attrs.evolve(
            replica, meta=attrs.evolve(replica.meta, deletion_requested=T0)
        )
    sim.node_down("n3")
    plan = sim.plan()
    assert plan.abandon_replicas == (R3,)  # n1 and n2 remove their data themselves


def test_a_salvaged_replica_makes_the_next_engine_salvage_then_forgets_it() -> None:
    sim = attached()
    for name, replica in list(sim.replicas.items()):
        spec = attrs.evolve(replica.spec, failed_at=None, salvage_requested=name == R1)
        sim.replicas[name] = attrs.evolve(replica, spec=spec)
    sim.engine = None  # (the old engine is gone)
    plan = sim.step()
    assert plan.engine is not None
    assert plan.engine.spec.salvage_requested
    sim.settle()
    assert not sim.replica(R1).spec.salvage_requested  # RW again: the request is done


# --- a replica deleted by hand (DELETE /v1/replicas/NAME) -----------------------------------


def test_a_replica_deleted_by_hand_is_let_go_and_replaced_at_once() -> None:
    sim = attached(4)
    r3 = sim.replica(R3)
    sim.replicas[R3] = attrs.evolve(r3, meta=attrs.evolve(r3.meta, deletion_requested=T0))
    plan = sim.step()
    assert plan.engine is not None
    assert sorted(plan.engine.spec.replica_address_map) == [R1, R2]  # the engine lets it go
    assert [(r.meta.name, r.spec.node_id) for r in plan.create_replicas] == [(R4, "n4")]
    del sim.replicas[R3]  # its node removed its data and released its finalizer
    sim.settle()
    assert sim.status == (VolumeState.ATTACHED, Robustness.HEALTHY, "n1")
    assert sim.engine is not None
    assert sorted(sim.engine.spec.replica_address_map) == [R1, R2, R4]


def test_an_engine_serving_from_no_replica_fails_them_all_and_salvages() -> None:
    """The engine lost both replicas; it reports one ERR and has dropped the other (its loss seen
    only as an address gone): the volume is faulted with every replica failed, and auto-salvage
    brings back those on nodes that are up."""
    sim = attached()
    assert sim.engine is not None
    status = attrs.evolve(sim.engine.status, replica_mode_map={R1: Mode.ERR})
    sim.engine = attrs.evolve(sim.engine, status=status)
    sim.settings["auto-salvage"] = "false"
    plan = sim.plan()
    assert {r.meta.name for r in plan.update_replicas if r.failed} == {R1, R2, R3}
    assert plan.volume.status.robustness is Robustness.FAULTED
    sim.settings["auto-salvage"] = "true"
    plan = sim.plan()
    assert plan.engine is not None
    assert plan.engine.spec.salvage_requested
    assert not any(r.failed for r in plan.update_replicas)


def test_an_engine_to_salvage_links_no_replica_until_every_one_runs() -> None:
    """A salvage was asked (the replicas un-failed, restarting on new addresses): until each
    runs again, the engine links none rather than the addresses of instances that are gone;
    then it links them all, to choose from."""
    sim = attached()
    assert sim.engine is not None
    sim.engine = attrs.evolve(
        sim.engine,
        spec=attrs.evolve(sim.engine.spec, salvage_requested=True),
        status=attrs.evolve(sim.engine.status, salvage_executed=False),
    )
    for name, replica in list(sim.replicas.items()):
        sim.replicas[name] = attrs.evolve(replica, status=ReplicaStatus())  # not running yet
    plan = sim.plan()
    assert plan.engine is not None
    assert plan.engine.spec.replica_address_map == {}
    sim.apply(plan)
    sim.instances()  # the replicas run again
    plan = sim.plan()
    assert plan.engine is not None
    assert plan.engine.spec.replica_address_map.keys() == {R1, R2, R3}
