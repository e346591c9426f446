"""The etcd store's format, without etcd: URLs, the key layout, what a write sends, and how watch
results become events (the fuzz invariant: any answer either decodes or is CorruptMetadataError)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import CorruptMetadataError, InvalidArgumentError
from lhtrio.manager.store.api import Document, EventType
from lhtrio.manager.store.etcd_format import (
    EtcdTarget,
    Json,
    decode_kv,
    is_compacted,
    is_future,
    key_after,
    kind_range,
    lease_ttl,
    object_key,
    parse_etcd_url,
    put_op,
    watch_events,
    watch_request,
)


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def unb64(text: object) -> bytes:
    assert isinstance(text, str)
    return base64.b64decode(text)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("etcd://127.0.0.1:2379", EtcdTarget(("http://127.0.0.1:2379",), "lhtrio")),
        (
            "etcd://10.0.0.1:2379,10.0.0.2:2379,[::1]:2379/prod",
            EtcdTarget(
                ("http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://[::1]:2379"), "prod"
            ),
        ),
        ("etcd://etcd.local:2379/", EtcdTarget(("http://etcd.local:2379",), "lhtrio")),
    ],
)
def test_a_url_names_the_members_and_the_prefix(url: str, target: EtcdTarget) -> None:
    assert parse_etcd_url(url) == target


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h:1", "not an etcd store URL"),
        ("etcd:h:1", "not an etcd store URL"),
        ("etcd://", "bad etcd member ''"),
        ("etcd://h", "bad etcd member 'h'"),
        ("etcd://:2379", "bad etcd member ':2379'"),
        ("etcd://h:x", "bad etcd member"),
        ("etcd://h:70000", "bad etcd member"),
        ("etcd://u@h:1", "bad etcd member"),
        ("etcd://h%41:1", "bad etcd member"),
        ("etcd://-h:1", "bad etcd member"),
        ("etcd://[zz]:1", "bad etcd member"),
        ("etcd://h:1/a/b", "bad key prefix 'a/b'"),
        ("etcd://h:1/..", "bad key prefix"),
        ("etcd://h:1/é", "bad key prefix"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidArgumentError, match=says):
        parse_etcd_url(url)


def test_a_kind_is_a_key_range_that_no_other_kind_shares() -> None:
    start, end = (unb64(k) for k in kind_range("lhtrio", "Volume"))
    assert (start, end) == (b"/lhtrio/Volume/", b"/lhtrio/Volume0")
    inside = unb64(object_key("lhtrio", "Volume", "a" * 128))
    beside = unb64(object_key("lhtrio", "VolumeAttachment", "a"))
    assert start <= inside < end
    assert not start <= beside < end
    assert unb64(key_after(b64("/lhtrio/Volume/a"))) == b"/lhtrio/Volume/a\x00"


def volume(**meta: object) -> Document:
    return {"kind": "Volume", "metadata": {"name": "v", **meta}, "spec": {"size": "1"}}


def test_a_stored_value_has_no_resource_version_and_a_read_one_its_mod_revision() -> None:
    put = put_op(b64("/k"), volume(resourceVersion="7", uid="u"), None)["request_put"]
    assert isinstance(put, dict)
    assert "lease" not in put
    stored = json.loads(unb64(put["value"]))
    assert stored["metadata"] == {"name": "v", "uid": "u"}
    kv = {"key": b64("/lhtrio/Volume/v"), "value": put["value"], "mod_revision": "42"}
    assert decode_kv(kv)["metadata"] == {"name": "v", "uid": "u", "resourceVersion": "42"}
    leased = put_op(b64("/k"), volume(), 123)["request_put"]
    assert isinstance(leased, dict)
    assert leased["lease"] == "123"


def test_only_a_node_lease_lives_on_an_etcd_lease() -> None:
    lease: Document = {"kind": "NodeLease", "metadata": {"name": "n1"}, "spec": {}}
    assert lease_ttl(lease) == 15
    assert lease_ttl({**lease, "spec": {"leaseDurationSeconds": 40}}) == 40
    assert lease_ttl({**lease, "spec": {"leaseDurationSeconds": "40"}}) == 15
    assert lease_ttl(volume()) is None


def test_watch_results_become_the_stores_events() -> None:
    value = b64(json.dumps(volume()))
    key = b64("/lhtrio/Volume/v")
    result: Json = {
        "header": {"revision": "9"},
        "events": [
            {"kv": {"key": key, "value": value, "version": "1", "mod_revision": "5"}},
            {"kv": {"key": key, "value": value, "version": "2", "mod_revision": "6"}},
            {
                "type": "DELETE",
                "kv": {"key": key, "mod_revision": "7"},
                "prev_kv": {"key": key, "value": value, "mod_revision": "6"},
            },
            {"type": "DELETE", "kv": {"key": key, "mod_revision": "8"}},  # its value compacted
        ],
    }
    events = watch_events(result)
    assert [(e.type, e.revision) for e in events] == [
        (EventType.ADDED, 5),
        (EventType.MODIFIED, 6),
        (EventType.DELETED, 7),
        (EventType.DELETED, 8),
    ]
    assert events[2].document["spec"] == {"size": "1"}
    assert events[2].document["metadata"] == {"name": "v", "resourceVersion": "7"}
    assert events[3].document == {
        "kind": "Volume",
        "metadata": {"name": "v", "resourceVersion": "8"},
    }
    assert watch_events({"header": {}, "created": True}) == []
    with pytest.raises(CorruptMetadataError, match="not an object's key"):
        watch_events({"events": [{"type": "DELETE", "kv": {"key": b64("v")}}]})


def test_a_watch_starts_after_the_revision_given_and_asks_for_previous_values() -> None:
    create = watch_request("lhtrio", "Volume", 41)["create_request"]
    assert isinstance(create, dict)
    assert create["start_revision"] == "42"
    assert create["prev_kv"] is True
    assert (create["key"], create["range_end"]) == kind_range("lhtrio", "Volume")


def test_etcds_revision_errors_are_told_apart() -> None:
    compacted: Json = {
        "error": "etcdserver: mvcc: required revision has been compacted",
        "code": 11,
    }
    future: Json = {"message": "etcdserver: mvcc: required revision is a future revision"}
    assert is_compacted(compacted)
    assert not is_future(compacted)
    assert is_future(future)
    assert not is_compacted({"error": {"message": "etcdserver: request timed out"}})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
kv_like = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from([b64("/lhtrio/Volume/v"), b64("v"), "***", 3]) | json_values,
        "value": st.sampled_from([b64(json.dumps(volume())), b64("[]"), "@@"]) | json_values,
        "mod_revision": st.sampled_from(["5", "x", 5]) | json_values,
        "version": st.sampled_from(["1", "2", "y"]) | json_values,
    },
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["PUT", "DELETE"]) | json_values,
        "kv": kv_like | json_values,
        "prev_kv": kv_like | json_values,
    },
)


@given(st.fixed_dictionaries({}, optional={"events": st.lists(event_like) | json_values}))
def test_any_watch_result_decodes_or_is_corrupt_metadata(result: dict[str, object]) -> None:
    try:
        events = watch_events(result)
    except CorruptMetadataError:
        return
    for event in events:
        assert isinstance(event.document.get("metadata"), dict)
        assert event.revision >= 0
