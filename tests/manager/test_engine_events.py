"""The engine's view of its replicas, told as events: a replica the engine sets ERR failed, one it
takes as WO is being rebuilt, a WO one that becomes RW is rebuilt; recorded once, by the node the
engine runs on, about the engine's volume."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio
import trio.testing

from lhtrio.manager import events
from lhtrio.manager.engine_events import follow_engine_events, mode_events
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Engine, Event, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus
from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import VolumeSpec
from lhtrio.models.volume import Mode

MiB = 1 << 20
RW, WO, ERR = Mode.RW, Mode.WO, Mode.ERR
WHERE = {"r1": "n1", "r2": "n2", "r3": "n3"}


def test_mode_changes_are_events() -> None:
    before = {"r1": RW, "r2": RW, "r3": RW}
    assert mode_events(before, before, WHERE, "v") == ()
    failed = mode_events(before, {"r1": RW, "r2": RW, "r3": ERR}, WHERE, "v")
    assert [(o.reason, o.message, o.type.value) for o in failed] == [
        (
            "ReplicaFailed",
            "replica r3 on node n3 of volume v failed: the engine reported it ERR",
            "Warning",
        )
    ]
    started = mode_events({"r1": RW, "r2": RW}, {"r1": RW, "r2": RW, "r3": WO}, WHERE, "v")
    assert [(o.reason, o.message) for o in started] == [
        ("Rebuilding", "rebuilding replica r3 on node n3 of volume v")
    ]
    done = mode_events({"r1": RW, "r3": WO}, {"r1": RW, "r3": RW}, WHERE, "v")
    assert [(o.reason, o.message) for o in done] == [
        ("Rebuilt", "replica r3 on node n3 of volume v is rebuilt (RW)")
    ]
    lost = mode_events(before, {"r1": RW, "r2": RW, "r3": WO}, WHERE, "v")
    assert [(o.reason, o.message) for o in lost] == [
        (
            "ReplicaFailed",
            "replica r3 on node n3 of volume v failed: the engine lost it (it is back, to be "
            "rebuilt)",
        ),
        ("Rebuilding", "rebuilding replica r3 on node n3 of volume v"),
    ]
    # an engine that starts with its replicas RW, or lets one go: nothing to tell
    assert mode_events({}, before, WHERE, "v") == ()
    assert mode_events(before, {"r1": RW, "r2": RW}, WHERE, "v") == ()


async def until_events(objects: Objects, done: Callable[[list[Event]], bool]) -> list[Event]:
    with trio.fail_after(10):
        while True:
            kept, revision = await objects.list(Event)
            if done(kept):
                return await events.events_of(objects)
            async with objects.store.watch("Event", revision) as changes:
                async for _ in changes:
                    break


async def test_the_engines_node_tells_its_replicas_story() -> None:
    objects = Objects(MemoryStore())
    volume = await objects.create(Volume(meta=ObjectMeta(name="v"), spec=VolumeSpec(size=MiB)))
    for name, node in WHERE.items():
        await objects.create(
            Replica(
                meta=ObjectMeta(name=name),
                spec=ReplicaSpec(volume_name="v", volume_size=MiB, node_id=node),
            )
        )
    engine = await objects.create(
        Engine(
            meta=ObjectMeta(name="v-e-0"),
            spec=EngineSpec(volume_name="v", volume_size=MiB, node_id="n1"),
            status=EngineStatus(
                current_state=InstanceState.RUNNING, replica_mode_map={"r1": RW, "r2": RW, "r3": RW}
            ),
        )
    )

    async def report(**modes: Mode) -> None:
        await objects.change(
            Engine,
            "v-e-0",
            lambda e: attrs.evolve(e, status=attrs.evolve(e.status, replica_mode_map=modes)),
        )

    async with trio.open_nursery() as nursery:
        for node in ("n1", "n2"):  # n2 is not the engine's node: it tells nothing
            nursery.start_soon(follow_engine_events, objects, node)
        await trio.testing.wait_all_tasks_blocked()
        await report(r1=RW, r2=RW, r3=ERR)
        await report(r1=RW, r2=RW)
        await report(r1=RW, r2=RW, r3=WO)
        await report(r1=RW, r2=RW, r3=RW)
        told = await until_events(objects, lambda kept: len(kept) == 3)
        nursery.cancel_scope.cancel()
    assert [(e.reason, e.count, e.reporting_node) for e in told] == [
        ("ReplicaFailed", 1, "n1"),
        ("Rebuilding", 1, "n1"),
        ("Rebuilt", 1, "n1"),
    ]
    for event in told:
        assert event.involved_object.kind == "Volume"
        assert (event.involved_object.name, event.involved_object.uid) == ("v", volume.meta.uid)
    assert engine.spec.node_id == "n1"


async def test_a_replica_dropped_then_back_to_be_rebuilt_failed_all_the_same() -> None:
    """Its instance restarted on another port: the engine's map lost it (its ERR never reached
    the store), then has it again as WO."""
    objects = Objects(MemoryStore())
    await objects.create(Volume(meta=ObjectMeta(name="v"), spec=VolumeSpec(size=MiB)))
    await objects.create(
        Replica(
            meta=ObjectMeta(name="r3"),
            spec=ReplicaSpec(volume_name="v", volume_size=MiB, node_id="n3"),
        )
    )
    await objects.create(
        Engine(
            meta=ObjectMeta(name="v-e-0"),
            spec=EngineSpec(volume_name="v", volume_size=MiB, node_id="n1"),
            status=EngineStatus(replica_mode_map={"r1": RW, "r3": RW}),
        )
    )

    async def report(**modes: Mode) -> None:
        await objects.change(
            Engine,
            "v-e-0",
            lambda e: attrs.evolve(e, status=attrs.evolve(e.status, replica_mode_map=modes)),
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_engine_events, objects, "n1")
        await trio.testing.wait_all_tasks_blocked()
        await report(r1=RW)
        await report(r1=RW, r3=WO)
        told = await until_events(objects, lambda kept: len(kept) == 2)
        nursery.cancel_scope.cancel()
    assert [e.reason for e in told] == ["ReplicaFailed", "Rebuilding"]
