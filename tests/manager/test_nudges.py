"""What nudges every volume besides the volumes' own changes: a setting, a node's spec or
readiness (not its disks' free space)."""

from __future__ import annotations

import datetime as dt

import attrs
import trio
import trio.testing

from lhtrio.manager.nudges import follow_operator
from lhtrio.manager.objects import Objects
from lhtrio.manager.scope import EVERY
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Node, ObjectMeta, Setting, Volume
from lhtrio.models.cluster.meta import set_condition
from lhtrio.models.cluster.node import CONDITION_READY, DiskSpec, DiskStatus, NodeSpec
from lhtrio.models.cluster.setting import SettingSpec
from lhtrio.models.cluster.volume import VolumeSpec

MiB = 1 << 20
NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def node(available: int, *, scheduling: bool = True) -> Node:
    ready = set_condition((), CONDITION_READY, True, now=NOW)
    return Node(
        meta=ObjectMeta(name="n1"),
        spec=NodeSpec(disks={"d1": DiskSpec(path="/d1")}, allow_scheduling=scheduling),
        status=attrs.evolve(
            Node(meta=ObjectMeta(name="n1"), spec=NodeSpec()).status,
            conditions=ready,
            disk_status={"d1": DiskStatus(storage_available=available, conditions=ready)},
        ),
    )


async def nudged(receive: trio.MemoryReceiveChannel[str]) -> list[str]:
    """The names nudged by now (the autojump clock lets every task run first)."""
    await trio.sleep(1)
    names = []
    while True:
        try:
            names.append(receive.receive_nowait())
        except trio.WouldBlock:
            return sorted(names)


async def test_a_setting_or_a_nodes_spec_nudges_every_volume_its_free_space_does_not(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0
    objects = Objects(MemoryStore())
    for name in ("v1", "v2"):
        await objects.create(Volume(meta=ObjectMeta(name=name), spec=VolumeSpec(size=4 * MiB)))
    n1 = await objects.create(node(100 * MiB))
    send, receive = trio.open_memory_channel[str](16)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_operator, objects.store, send)
        await trio.sleep(1)

        n1 = await objects.update(attrs.evolve(node(90 * MiB), meta=n1.meta))  # its first change
        assert await nudged(receive) == [EVERY]
        n1 = await objects.update(attrs.evolve(node(80 * MiB), meta=n1.meta))  # space only
        assert await nudged(receive) == []
        n1 = await objects.update(attrs.evolve(node(80 * MiB, scheduling=False), meta=n1.meta))
        assert await nudged(receive) == [EVERY]

        await objects.create(
            Setting(meta=ObjectMeta(name="auto-salvage"), spec=SettingSpec(value="false"))
        )
        assert await nudged(receive) == [EVERY]
        nursery.cancel_scope.cancel()
