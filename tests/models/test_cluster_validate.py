"""What a control-plane object may hold: hostile names and bad references are refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.cluster import ClusterObject, validate
from lhtrio.models.cluster.attachment import AttachmentTicket, TicketType
from lhtrio.models.cluster.event import Event, ObjectReference
from lhtrio.models.cluster.node import DiskSpec
from tests.manager.golden import GOLDEN

GOLDEN_EVENT = GOLDEN["event"]
assert isinstance(GOLDEN_EVENT, Event)
HOSTILE = ["../x", "a/b", "", "x" * 300, "a\0b", "-a", ".", "..", "a b", "é"]


def _renamed(obj: ClusterObject, name: str) -> ClusterObject:
    return attrs.evolve(obj, meta=attrs.evolve(obj.meta, name=name))


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_the_golden_objects_are_valid(kind: str) -> None:
    validate(GOLDEN[kind])


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_a_hostile_name_is_refused(kind: str, name: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate(_renamed(GOLDEN[kind], name))
    assert repr(name) in info.value.message
    assert info.value.message.startswith(type(GOLDEN[kind]).KIND)


def test_volume_names_are_limited_to_63_characters_and_instances_to_128() -> None:
    validate(_renamed(GOLDEN["volume"], "v" * 63))
    with pytest.raises(InvalidArgumentError, match="the limit is 63"):
        validate(_renamed(GOLDEN["volume"], "v" * 64))
    replica = GOLDEN["replica"]
    validate(_renamed(replica, "r" * 128))
    with pytest.raises(InvalidArgumentError, match="the limit is 128"):
        validate(_renamed(replica, "r" * 129))


def _spec(kind: str, **changes: Any) -> ClusterObject:
    obj: Any = GOLDEN[kind]
    changed: ClusterObject = attrs.evolve(obj, spec=attrs.evolve(obj.spec, **changes))
    return changed


@pytest.mark.parametrize(
    ("kind", "changes", "expected"),
    [
        ("volume", {"size": 0}, "Volume 'db-1': size: size 0 is not positive"),
        ("volume", {"size": -4096}, "size: size -4096 is not positive"),
        ("volume", {"size": 4097}, "not a multiple of 4096"),
        ("volume", {"number_of_replicas": 0}, "numberOfReplicas: 0 is not from 1 to 20"),
        ("volume", {"number_of_replicas": 100}, "numberOfReplicas: 100 is not from 1 to 20"),
        ("volume", {"node_id": "../n"}, "Volume 'db-1': nodeID: invalid node name '../n'"),
        ("volume", {"disk_selector": ("a/b",)}, "diskSelector: invalid tag name 'a/b'"),
        ("engine", {"volume_name": "a/b"}, "Engine 'db-1-e-0': volumeName: invalid volume name"),
        ("engine", {"replica_address_map": {"../r": "x:1"}}, "invalid replica name '../r'"),
        ("replica", {"data_directory_name": ".."}, "dataDirectoryName: invalid data directory"),
        ("replica", {"disk_path": "relative/dir"}, "diskPath: 'relative/dir' is not an absolute"),
        ("replica", {"disk_path": "/a\0b"}, "is not an absolute path"),
        ("replica", {"hard_node_affinity": "a/b"}, "hardNodeAffinity: invalid node name"),
        ("node", {"disks": {"../d": DiskSpec(path="/d")}}, "invalid disk name '../d'"),
        ("node", {"disks": {"d": DiskSpec(path="d")}}, "disks['d'].path: 'd' is not an absolute"),
        ("node", {"tags": ("",)}, "tags: invalid tag name ''"),
        ("nodelease", {"lease_duration_seconds": 0}, "leaseDurationSeconds: it is not positive"),
        ("setting", {"value": "0"}, "for setting default-replica-count: it must be an integer"),
        ("volumeattachment", {"volume": "db-2"}, "volume: 'db-2' is not the object's name"),
        (
            "volumeattachment",
            {
                "attachment_tickets": {
                    "a": AttachmentTicket(id="b", type=TicketType.CSI_ATTACHER, node_id="n1")
                }
            },
            "attachmentTickets['a'].id: 'b' is not its key",
        ),
        (
            "volumeattachment",
            {
                "attachment_tickets": {
                    "a/b": AttachmentTicket(id="a/b", type=TicketType.CSI_ATTACHER, node_id="n1")
                }
            },
            "invalid ticket name 'a/b'",
        ),
        (
            "volumeattachment",
            {
                "attachment_tickets": {
                    "a": AttachmentTicket(id="a", type=TicketType.CSI_ATTACHER, node_id="..")
                }
            },
            "attachmentTickets['a'].nodeID: invalid node name '..'",
        ),
    ],
)
def test_a_bad_spec_is_refused(kind: str, changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate(_spec(kind, **changes))
    assert expected in info.value.message


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown setting 'replica-count'"):
        validate(_renamed(GOLDEN["setting"], "replica-count"))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("labels", {"a/b/c": "x"}, "labels: invalid label key 'a/b/c'"),
        ("labels", {"app": "-x"}, "labels: invalid value '-x' of label 'app'"),
        ("finalizers", ("lhtrio.io/../x",), "finalizers: 'lhtrio.io/../x' is not a qualified"),
        ("finalizers", ("",), "finalizers: '' is not a qualified name"),
        ("resource_version", -1, "resourceVersion: -1 is negative"),
    ],
)
def test_bad_metadata_is_refused(field: str, value: Any, expected: str) -> None:
    obj = GOLDEN["volume"]
    bad = attrs.evolve(obj, meta=attrs.evolve(obj.meta, **{field: value}))
    with pytest.raises(InvalidArgumentError) as info:
        validate(bad)
    assert expected in info.value.message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"reason": "degraded"}, "reason: 'degraded' is not a CamelCase word"),
        ({"reason": ""}, "reason: '' is not a CamelCase word"),
        ({"reason": "Bad Reason"}, "is not a CamelCase word"),
        ({"message": "x" * 1025}, "message: it is longer than 1024 characters"),
        ({"count": 0}, "count: 0 is not positive"),
        ({"reporting_node": "../n1"}, "reportingNode: invalid node name '../n1'"),
        (
            {"involved_object": ObjectReference(kind="volume", name="db-1")},
            "involvedObject.kind: 'volume' is not a kind",
        ),
        (
            {"involved_object": ObjectReference(kind="Volume", name="../db-1")},
            "involvedObject.name: invalid object name '../db-1'",
        ),
        (
            {"last_timestamp": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
            "lastTimestamp: it is before firstTimestamp",
        ),
    ],
)
def test_a_bad_event_is_refused(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate(attrs.evolve(GOLDEN_EVENT, **changes))
    assert info.value.message.startswith("Event 'db-1.5f3c9a0e1b2d4c6f': ")
    assert expected in info.value.message
