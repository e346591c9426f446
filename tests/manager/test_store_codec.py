"""The store format: every kind round-trips through its document, documents look like
Kubernetes objects with Longhorn's keys, and a malformed document is refused by name."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import CorruptMetadataError
from lhtrio.manager.store.codec import API_VERSION, KINDS, from_document, key_of, to_document
from lhtrio.models.cluster import ClusterObject, validate
from lhtrio.models.cluster.meta import ObjectMeta
from lhtrio.models.cluster.volume import Volume, VolumeSpec
from tests.manager.golden import GOLDEN
from tests.models.cluster_strategies import BY_KIND

DOCUMENTS = Path(__file__).parent / "documents"


def test_every_kind_has_a_strategy_and_a_golden_document() -> None:
    assert set(BY_KIND) == set(KINDS) == {type(obj).KIND for obj in GOLDEN.values()}
    assert {p.stem for p in DOCUMENTS.glob("*.json")} == set(GOLDEN)


@pytest.mark.parametrize("kind", sorted(BY_KIND))
@given(data=st.data())
def test_every_kind_round_trips_through_json(kind: str, data: st.DataObject) -> None:
    obj: ClusterObject = data.draw(BY_KIND[kind])
    validate(obj)
    document = to_document(obj)
    assert document["apiVersion"] == API_VERSION
    assert document["kind"] == kind
    if kind == "Event":  # Kubernetes' flat shape: a record, not desired state
        assert list(document)[:3] == ["apiVersion", "kind", "metadata"]
        assert "spec" not in document
    else:
        assert list(document) == ["apiVersion", "kind", "metadata", "spec", "status"]
    text = json.dumps(document, allow_nan=False)
    assert from_document(KINDS[kind], json.loads(text)) == obj
    assert from_document(KINDS[kind], document) == obj


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_documents(name: str) -> None:
    obj = GOLDEN[name]
    text = (DOCUMENTS / f"{name}.json").read_text()
    assert json.dumps(to_document(obj), indent=2) + "\n" == text
    assert from_document(type(obj), json.loads(text)) == obj


def test_keys_are_spelled_as_longhorn_spells_them() -> None:
    assert key_of("number_of_replicas") == "numberOfReplicas"
    assert key_of("node_id") == "nodeID"
    assert key_of("owner_id") == "ownerID"
    assert key_of("current_node_id") == "currentNodeID"
    assert key_of("disk_uuid") == "diskUUID"
    assert key_of("replica_address_map") == "replicaAddressMap"
    assert key_of("id") == "id"
    assert key_of("ip") == "ip"
    assert key_of("meta") == "metadata"


def _volume() -> dict[str, Any]:
    obj = Volume(meta=ObjectMeta(name="db-1", resource_version=7), spec=VolumeSpec(size=1 << 30))
    return to_document(obj)


def test_an_unstored_object_has_an_empty_resource_version_and_no_timestamps() -> None:
    document = Volume(meta=ObjectMeta(name="db-1"), spec=VolumeSpec(size=4096))
    metadata = to_document(document)["metadata"]
    assert metadata == {
        "name": "db-1",
        "resourceVersion": "",
        "uid": "",
        "labels": {},
        "finalizers": [],
    }


def test_missing_keys_take_defaults_and_unknown_keys_are_ignored() -> None:
    document = {
        "apiVersion": API_VERSION,
        "kind": "Volume",
        "metadata": {"name": "db-1", "resourceVersion": "3"},
        "spec": {"size": "8192", "aFieldOfTomorrow": [1, 2]},
    }
    obj = from_document(Volume, document)
    assert obj == Volume(
        meta=ObjectMeta(name="db-1", resource_version=3), spec=VolumeSpec(size=8192)
    )


def _refused(document: object, *expected: str) -> str:
    with pytest.raises(CorruptMetadataError) as info:
        from_document(Volume, document)
    for part in expected:
        assert part in info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "numberOfReplicas"), "3", "field spec.numberOfReplicas: expected an integer"),
        (("spec", "numberOfReplicas"), True, "field spec.numberOfReplicas: expected an integer"),
        (("spec", "size"), 4096, "field spec.size: expected a decimal number as a string"),
        (("spec", "size"), "-4096", "field spec.size"),
        (("spec", "size"), "0x1000", "field spec.size"),
        (("spec", "disableFrontend"), 1, "field spec.disableFrontend: expected true or false"),
        (("spec", "nodeSelector"), "ssd", "field spec.nodeSelector: expected an array"),
        (("spec", "nodeSelector"), ["ssd", 3], "field spec.nodeSelector[1]: expected a string"),
        (("spec", "dataLocality"), "local", "field spec.dataLocality: expected one of"),
        (("status", "state"), "ATTACHED", "field status.state: expected one of"),
        (("status", "lastDegradedAt"), "yesterday", "field status.lastDegradedAt"),
        (("status", "lastDegradedAt"), "2026-01-01T00:00:00", "field status.lastDegradedAt"),
        (("metadata", "resourceVersion"), 7, "field metadata.resourceVersion"),
        (("metadata", "labels"), {"a": 1}, "field metadata.labels['a']: expected a string"),
        (("metadata", "labels"), [], "field metadata.labels: expected an object"),
        (
            ("status", "conditions"),
            [{"type": "Scheduled", "status": "maybe"}],
            "field status.conditions[0].status",
        ),
        (("status", "conditions"), [{"status": "True"}], "field status.conditions[0].type"),
    ],
)
def test_a_malformed_field_is_named(path: tuple[str, str], value: object, expected: str) -> None:
    document = _volume()
    section = document[path[0]]
    assert isinstance(section, dict)
    section[path[1]] = value
    message = _refused(document, expected)
    assert message.startswith("Volume 'db-1': ")


def test_every_problem_is_named_at_once() -> None:
    document = _volume()
    spec = document["spec"]
    assert isinstance(spec, dict)
    spec["numberOfReplicas"] = "3"
    spec["frontend"] = "iscsi"
    message = _refused(document, "spec.numberOfReplicas", "spec.frontend")
    assert message.count("field ") == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("spec"), "field spec: required field missing"),
        (lambda d: d["spec"].pop("size"), "field spec.size: required field missing"),
        (lambda d: d.update(kind="Engine"), "not a Volume"),
        (lambda d: d.update(apiVersion="longhorn.io/v1beta2"), "not a Volume of 'lhtrio.io/v1'"),
        (lambda d: d.update(metadata=[]), "field metadata"),
        (lambda d: d["metadata"].update(name=5), "field metadata.name"),
    ],
)
def test_a_malformed_document_is_refused(change: Any, expected: str) -> None:
    document = _volume()
    change(document)
    _refused(document, expected)


def test_a_document_that_is_not_an_object_is_refused() -> None:
    _refused(["Volume"], "not a JSON object")


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 300, "a\0b", "-a", ".."])
def test_a_stored_hostile_name_is_refused(name: str) -> None:
    document = _volume()
    metadata = document["metadata"]
    assert isinstance(metadata, dict)
    metadata["name"] = name
    _refused(document, "invalid volume name")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("numberOfReplicas", 0, "a stored Volume 'db-1': numberOfReplicas: 0 is not from 1 to 20"),
        ("numberOfReplicas", 100, "numberOfReplicas: 100 is not from 1 to 20"),
        ("size", "4097", "a stored Volume 'db-1': size: size 4097 bytes is not a multiple of 4096"),
        ("size", "0", "size: size 0 is not positive"),
        ("nodeID", "../n1", "nodeID: invalid node name '../n1'"),
    ],
)
def test_a_stored_object_is_validated(key: str, value: object, expected: str) -> None:
    document = _volume()
    spec = document["spec"]
    assert isinstance(spec, dict)
    spec[key] = value
    _refused(document, expected)


def test_a_stored_setting_with_an_invalid_value_is_refused_naming_the_kind() -> None:
    document = {
        "apiVersion": API_VERSION,
        "kind": "Setting",
        "metadata": {"name": "default-replica-count"},
        "spec": {"value": ""},
    }
    with pytest.raises(CorruptMetadataError) as info:
        from_document(KINDS["Setting"], document)
    assert info.value.message == (
        "a stored Setting 'default-replica-count': invalid value '' for setting "
        "default-replica-count: it must be an integer from 1 to 20"
    )


def test_to_document_returns_a_new_map_each_time() -> None:
    obj = GOLDEN["volume"]
    first = to_document(obj)
    kept = copy.deepcopy(first)
    metadata = first["metadata"]
    assert isinstance(metadata, dict)
    metadata["labels"]["changed"] = "yes"
    assert to_document(obj) == kept
    assert obj.meta.labels == {"app": "db"}


def test_times_are_rfc3339_utc() -> None:
    document = to_document(GOLDEN["volume"])
    metadata = document["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["creationTimestamp"] == "2026-01-02T03:04:05Z"
    tokyo = dt.timezone(dt.timedelta(hours=9))
    metadata["creationTimestamp"] = "2026-01-02T12:04:05+09:00"
    again = from_document(Volume, document)
    assert again.meta.created == dt.datetime(2026, 1, 2, 12, 4, 5, tzinfo=tokyo)
    assert to_document(again)["metadata"]["creationTimestamp"] == "2026-01-02T03:04:05Z"  # type: ignore[index]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@pytest.mark.parametrize("kind", sorted(BY_KIND))
@given(data=st.data())
def test_garbage_parses_or_is_refused_as_corrupt(kind: str, data: st.DataObject) -> None:
    """The fuzz invariant: any change to a valid document either reads back as a valid object
    or raises CorruptMetadataError, nothing else."""
    document: Any = to_document(data.draw(BY_KIND[kind]))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(document)[1:]))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = data.draw(json_values)
    try:
        obj = from_document(KINDS[kind], document)
    except CorruptMetadataError as exc:
        refused = exc.message
    else:
        validate(obj)
        return
    assert kind in refused  # the message names the kind (and the object, and the field)
