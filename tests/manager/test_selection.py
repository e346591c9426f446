"""Replicas read by label: a volume's and a node's, whatever their names (a name no label value
can hold is labelled by a digest), and the labels follow the spec on every write."""

from __future__ import annotations

import attrs

from lhtrio.manager.objects import Objects
from lhtrio.manager.selection import replicas_of, replicas_on
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Event, ObjectMeta, Replica
from lhtrio.models.cluster.event import ObjectReference
from lhtrio.models.cluster.labels import (
    INVOLVED_NAME_LABEL,
    VOLUME_LABEL,
    label_value,
)
from lhtrio.models.cluster.replica import ReplicaSpec

MiB = 1 << 20
LONG_NODE = "node-" + "x" * 80  # longer than a label value may be


def replica(name: str, volume: str, node: str) -> Replica:
    return Replica(
        meta=ObjectMeta(name=name, labels={"team": "db", VOLUME_LABEL: "forged"}),
        spec=ReplicaSpec(volume_name=volume, volume_size=4 * MiB, node_id=node),
    )


async def test_a_volumes_replicas_and_a_nodes_are_read_by_label() -> None:
    objects = Objects(MemoryStore())
    for name, volume, node in (
        ("a-1", "db", "n1"),
        ("a-2", "db", LONG_NODE),
        ("b-1", "db-", "n1"),  # ends in '-': no label value, a digest
        ("c-1", "other", "n2"),
    ):
        await objects.create(replica(name, volume, node))
    assert [r.meta.name for r in await replicas_of(objects, "db")] == ["a-1", "a-2"]
    assert [r.meta.name for r in await replicas_of(objects, "db-")] == ["b-1"]
    assert [r.meta.name for r in await replicas_on(objects, "n1")] == ["a-1", "b-1"]
    assert [r.meta.name for r in await replicas_on(objects, LONG_NODE)] == ["a-2"]
    assert await replicas_of(objects, "nothing") == []

    stored = await objects.get(Replica, "b-1")
    assert stored.meta.labels["team"] == "db"  # the caller's labels stay; the forged one does not
    assert stored.meta.labels[VOLUME_LABEL] == label_value("db-") != "db-"

    moved = attrs.evolve(stored, spec=attrs.evolve(stored.spec, node_id="n3"))
    await objects.update(moved)  # the labels follow the spec
    assert [r.meta.name for r in await replicas_on(objects, "n3")] == ["b-1"]
    assert [r.meta.name for r in await replicas_on(objects, "n1")] == ["a-1"]


async def test_events_carry_the_object_they_are_about() -> None:
    objects = Objects(MemoryStore())
    about = ObjectReference(kind="Volume", name="db-")
    event = await objects.create(
        Event(meta=ObjectMeta(name="db-.1"), involved_object=about, reason="R", message="m")
    )
    assert event.meta.labels[INVOLVED_NAME_LABEL] == label_value("db-")


def test_a_label_value_is_the_name_when_it_can_be() -> None:
    assert label_value("db-1") == "db-1"
    assert label_value("db-") != label_value("db_")  # digests of different names differ
    assert len(label_value("x" * 64)) <= 63
