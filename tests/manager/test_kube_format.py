"""The Kubernetes store's format (lhtrio.manager.store.kube_format), sans-I/O: every valid object
of every kind survives a trip through its Kubernetes object (leases as Leases, events as Events,
the rest as lhtrio's custom resources), a change becomes merge patches of only what changed
(spec through the main resource, status through /status, a touch when nothing did), and a watch
stream's bytes become events whatever their chunks, a 410 becoming GoneError."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lhtrio.errors import GoneError, InvalidArgumentError, StorageError
from lhtrio.manager.store.api import EventType
from lhtrio.manager.store.codec import KINDS, from_document, to_document
from lhtrio.manager.store.kube_format import (
    KIND_LABEL,
    TOUCHED,
    WatchBrokenError,
    WatchLines,
    from_kube,
    merge_patch,
    plan_update,
    resource_of,
    to_kube,
    watch_event,
    watch_refused,
    watch_target,
)
from lhtrio.models.cluster import ClusterObject
from tests.models.cluster_strategies import BY_KIND

NS = "lhtrio-system"


def served(obj: ClusterObject) -> ClusterObject:
    """``obj`` as read back: the metadata the server owns is the server's."""
    meta = attrs.evolve(obj.meta, resource_version=0, uid="", created=None, deletion_requested=None)
    return attrs.evolve(obj, meta=meta)


@pytest.mark.parametrize("kind", sorted(BY_KIND))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_valid_object_survives_its_kubernetes_object(kind: str, data: st.DataObject) -> None:
    obj = data.draw(BY_KIND[kind])
    resource = resource_of(kind)
    kube = to_kube(resource, to_document(obj), NS)
    assert kube["apiVersion"] == resource.api_version
    assert kube["kind"] == resource.kube_kind
    assert kube["metadata"]["namespace"] == NS
    assert "uid" not in kube["metadata"]
    assert "resourceVersion" not in kube["metadata"]
    json.dumps(kube)  # JSON all the way down
    assert from_document(KINDS[kind], from_kube(resource, kube)) == served(obj)


def lease_document() -> dict[str, Any]:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "NodeLease",
        "metadata": {"name": "n1", "resourceVersion": "7", "uid": "u", "labels": {"zone": "a"}},
        "spec": {
            "holderIdentity": "n1",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-02T03:04:05Z",
            "renewTime": "2026-01-02T03:04:09Z",
            "leaseTransitions": 0,
        },
        "status": {},
    }


def test_a_node_lease_is_a_coordination_lease_labelled_as_lhtrios() -> None:
    lease = to_kube(resource_of("NodeLease"), lease_document(), NS)
    assert lease == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "n1",
            "namespace": NS,
            "labels": {"zone": "a", KIND_LABEL: "NodeLease"},
        },
        "spec": {
            "holderIdentity": "n1",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-02T03:04:05.000000Z",
            "renewTime": "2026-01-02T03:04:09.000000Z",
            "leaseTransitions": 0,
        },
    }
    back = from_kube(resource_of("NodeLease"), lease)
    assert back["spec"] == lease_document()["spec"]
    assert back["metadata"] == {"name": "n1", "labels": {"zone": "a"}}


def test_an_event_is_a_core_event_about_an_lhtrio_object() -> None:
    document = {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Event",
        "metadata": {"name": "v1.abc", "labels": {}, "finalizers": []},
        "involvedObject": {"kind": "Volume", "name": "v1", "uid": "u1"},
        "reason": "Degraded",
        "message": "replica v1-r-1 failed",
        "type": "Warning",
        "count": 2,
        "firstTimestamp": "2026-01-02T03:04:05Z",
        "lastTimestamp": "2026-01-02T03:05:05Z",
        "reportingNode": "n2",
    }
    event = to_kube(resource_of("Event"), document, NS)
    assert event["apiVersion"] == "v1"
    assert event["metadata"] == {
        "name": "v1.abc",
        "namespace": NS,
        "labels": {KIND_LABEL: "Event"},
    }
    assert event["involvedObject"] == {
        "apiVersion": "lhtrio.io/v1",
        "namespace": NS,
        "kind": "Volume",
        "name": "v1",
        "uid": "u1",
    }
    assert event["source"] == {"component": "lhtrio", "host": "n2"}
    assert event["count"] == 2
    back = from_kube(resource_of("Event"), event)
    assert {k: v for k, v in back.items() if k != "metadata"} == {
        k: v for k, v in document.items() if k != "metadata"
    }


def test_server_metadata_is_read_and_never_written() -> None:
    served_volume = {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {
            "name": "v1",
            "namespace": NS,
            "uid": "u",
            "resourceVersion": "12",
            "generation": 3,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"size": "1024"},
    }
    document = from_kube(resource_of("Volume"), served_volume)
    assert document == {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {
            "name": "v1",
            "resourceVersion": "12",
            "uid": "u",
            "creationTimestamp": "2026-01-02T03:04:05Z",
        },
        "spec": {"size": "1024"},
    }
    assert to_kube(resource_of("Volume"), document, NS)["metadata"] == {
        "name": "v1",
        "namespace": NS,
    }


@pytest.mark.parametrize("kind", ["", "Pod", "volume", "Lease"])
def test_a_kind_the_store_does_not_keep_is_refused(kind: str) -> None:
    with pytest.raises(InvalidArgumentError, match="keeps no kind"):
        resource_of(kind)


# --- changes -------------------------------------------------------------------------------------


def served_volume(**status: object) -> dict[str, Any]:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {
            "name": "v1",
            "namespace": NS,
            "resourceVersion": "40",
            "labels": {"a": "1"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": {"size": "1024", "numberOfReplicas": 3},
        "status": {"state": "detached", "robustness": "unknown", **status},
    }


def wanted(current: dict[str, Any], **changes: Any) -> dict[str, Any]:
    document = from_kube(resource_of("Volume"), current)
    for part, value in changes.items():
        document[part] = value
    return document


def test_a_status_change_is_one_status_patch_of_what_changed() -> None:
    current = served_volume(ownerID="n1")
    change = wanted(current, status={"state": "attached", "robustness": "unknown", "ownerID": "n1"})
    writes = plan_update(resource_of("Volume"), current, change, NS)
    assert writes.main is None
    assert writes.status == {"status": {"state": "attached"}}


def test_a_spec_change_is_one_main_patch_of_what_changed() -> None:
    current = served_volume()
    change = wanted(current, spec={"size": "1024", "numberOfReplicas": 2, "nodeID": "n2"})
    writes = plan_update(resource_of("Volume"), current, change, NS)
    assert writes.main == {"spec": {"numberOfReplicas": 2, "nodeID": "n2"}}
    assert writes.status is None


def test_removed_keys_labels_and_finalizers_are_nulls_and_nulls_are_no_change() -> None:
    current = served_volume(lastDegradedAt="2026-01-02T03:04:05Z")
    current["metadata"]["finalizers"] = ["lhtrio.io/cleanup"]
    document = wanted(current, spec={"size": "1024"})
    document["metadata"] = {**document["metadata"], "labels": {}, "finalizers": []}
    document["status"] = {**document["status"], "lastDegradedAt": None, "currentNodeID": None}
    writes = plan_update(resource_of("Volume"), current, document, NS)
    assert writes.main == {
        "spec": {"numberOfReplicas": None},
        "metadata": {"labels": None, "finalizers": None},
    }
    assert writes.status == {"status": {"lastDegradedAt": None}}


def test_a_change_that_changes_nothing_is_a_touch() -> None:
    current = served_volume()
    writes = plan_update(resource_of("Volume"), current, wanted(current), NS)
    assert writes.main == {"metadata": {"annotations": {TOUCHED: "40"}}}
    assert writes.status is None


def test_both_parts_changed_are_two_patches() -> None:
    current = served_volume()
    change = wanted(current, spec={"size": "2048", "numberOfReplicas": 3})
    change["status"] = {"state": "attaching", "robustness": "unknown"}
    writes = plan_update(resource_of("Volume"), current, change, NS)
    assert writes.main == {"spec": {"size": "2048"}}
    assert writes.status == {"status": {"state": "attaching"}}


def test_a_lease_renewal_patches_the_lease_spec() -> None:
    resource = resource_of("NodeLease")
    current = to_kube(resource, lease_document(), NS)
    current["metadata"]["resourceVersion"] = "9"
    document = lease_document()
    document["spec"]["renewTime"] = "2026-01-02T03:04:14Z"
    writes = plan_update(resource, current, document, NS)
    assert writes.main == {"spec": {"renewTime": "2026-01-02T03:04:14.000000Z"}}
    assert writes.status is None


@given(
    old=st.recursive(
        st.integers() | st.text(max_size=3),
        lambda c: st.dictionaries(st.sampled_from("abc"), c, max_size=3),
    ),
    new=st.recursive(
        st.integers() | st.text(max_size=3),
        lambda c: st.dictionaries(st.sampled_from("abc"), c, max_size=3),
    ),
)
def test_a_merge_patch_applied_to_the_old_map_gives_the_new_one(old: Any, new: Any) -> None:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    assert apply_merge_patch(old, merge_patch(old, new)) == new


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written out for the test."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


# --- watch streams -------------------------------------------------------------------------------


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def test_watch_lines_come_whole_whatever_the_chunks() -> None:
    stream = b"".join(
        line(kind, {"metadata": {"name": f"v{i}", "resourceVersion": str(10 + i)}})
        for i, kind in enumerate(["ADDED", "MODIFIED", "BOOKMARK", "DELETED"])
    )
    for size in (1, 3, 17, len(stream)):
        lines = WatchLines()
        got = [
            watch_event(whole)
            for at in range(0, len(stream), size)
            for whole in lines.feed(stream[at : at + size])
        ]
        assert [(kind, obj["metadata"]["resourceVersion"]) for kind, obj in got] == [
            (EventType.ADDED, "10"),
            (EventType.MODIFIED, "11"),
            ("BOOKMARK", "12"),
            (EventType.DELETED, "13"),
        ]


def test_a_410_error_event_is_gone_and_other_errors_break_the_watch() -> None:
    expired = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 5",
    }
    with pytest.raises(GoneError, match="too old resource version: 5"):
        watch_event(line("ERROR", expired))
    with pytest.raises(WatchBrokenError, match="internal error"):
        watch_event(line("ERROR", {"kind": "Status", "code": 500, "message": "internal error"}))


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b"[]",
        b'{"type": "ADDED"}',
        b'{"type": "ADDED", "object": {"metadata": {}}}',
        b'{"type": "ADDED", "object": {"metadata": {"resourceVersion": "x"}}}',
        b'{"type": "SIDEWAYS", "object": {"metadata": {"resourceVersion": "3"}}}',
    ],
)
def test_a_line_that_is_not_an_event_breaks_the_watch(garbage: bytes) -> None:
    with pytest.raises(WatchBrokenError):
        watch_event(garbage)


def test_a_line_past_the_limit_breaks_the_watch() -> None:
    lines = WatchLines()
    assert lines.feed(b"x" * (8 << 20)) == []
    with pytest.raises(WatchBrokenError, match="more than"):
        lines.feed(b"x" * (9 << 20))


def test_what_a_refused_watch_means() -> None:
    body = json.dumps({"kind": "Status", "message": "forbidden: no"}).encode()
    assert isinstance(watch_refused(410, body), GoneError)
    assert isinstance(watch_refused(503, body), WatchBrokenError)
    assert isinstance(watch_refused(429, b""), WatchBrokenError)
    refused = watch_refused(403, body)
    assert isinstance(refused, StorageError)
    assert not isinstance(refused, WatchBrokenError)
    assert "forbidden: no" in refused.message


def test_a_watch_of_a_built_in_selects_lhtrios_objects() -> None:
    target = watch_target(resource_of("Event"), NS, 41, 300)
    assert target == (
        "/api/v1/namespaces/lhtrio-system/events?watch=true&resourceVersion=41"
        "&allowWatchBookmarks=true&timeoutSeconds=300&labelSelector=lhtrio.io%2Fkind%3DEvent"
    )
    assert watch_target(resource_of("Volume"), NS, 1, 5).startswith(
        "/apis/lhtrio.io/v1/namespaces/lhtrio-system/volumes?watch=true&resourceVersion=1&"
    )
