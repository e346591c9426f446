"""The double's sans-I/O parts on their own: patches (merge, JSON, strategic merge), selectors,
managed fields and server-side apply, the Table's cells and ages, CRD schemas as JSON Schema,
the CRD checks, and what create, update and delete do to metadata."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.kubeapi import fields, rules, schemas
from tests.kubeapi.crds import check_crd
from tests.kubeapi.patch import PatchMeta, json_patch, merge_patch, strategic_merge_patch
from tests.kubeapi.resources import BUILTINS, Resource, resources_of_crd
from tests.kubeapi.selectors import field_selector, label_selector
from tests.kubeapi.status import KubeError
from tests.kubeapi.table import age, parse_path, wants_table

DAEMONSET = next(r for r in BUILTINS if r.kind == "DaemonSet")
CRD_BODY: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "volumes.lhtrio.io"},
    "spec": {
        "group": "lhtrio.io",
        "scope": "Namespaced",
        "names": {"kind": "Volume", "plural": "volumes"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 1},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "note": {"type": "string", "nullable": True},
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "disks": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "path": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}
VOLUME: Resource = resources_of_crd(CRD_BODY)[0]


def ds_meta() -> PatchMeta:
    defs = schemas.builtin_definitions(strict=False)
    return PatchMeta(defs[schemas.definition_of(DAEMONSET) or ""], defs)


# --- patches ---------------------------------------------------------------------------------


def test_merge_patch_merges_objects_removes_nulls_and_replaces_the_rest() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    out = merge_patch(target, {"a": {"b": None, "c": [3], "e": {"f": None}}, "d": None})
    assert out == {"a": {"c": [3], "e": {}}}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}  # untouched


def test_json_patch_operations_and_their_refusals() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [
        {"op": "add", "path": "/a/1", "value": 9},
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "move", "from": "/b/c", "path": "/d"},
        {"op": "copy", "from": "/d", "path": "/b/e~1f"},
        {"op": "test", "path": "/a", "value": [1, 9, 2, 3]},
        {"op": "replace", "path": "/d", "value": "x"},
        {"op": "remove", "path": "/a/0"},
    ])  # fmt: skip
    assert out == {"a": [9, 2, 3], "b": {"e/f": 1}, "d": "x"}
    assert doc == {"a": [1, 2], "b": {"c": 1}}
    for ops, code in (
        ([{"op": "test", "path": "/a", "value": []}], 422),
        ([{"op": "remove", "path": "/nope"}], 422),
        ([{"op": "replace", "path": "/a/7", "value": 1}], 422),
        ([{"op": "add", "path": "/a/01", "value": 1}], 422),
        ([{"op": "jump", "path": "/a"}], 400),
        ([{"op": "add", "path": "a", "value": 1}], 400),
        ([{"op": "add", "path": "/a"}], 400),
        ({"op": "add"}, 400),
    ):
        with pytest.raises(KubeError) as refused:
            json_patch(doc, ops)
        assert refused.value.code == code, ops


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    doc=st.dictionaries(st.sampled_from("abc"), _JSON, max_size=3),
    ops=st.lists(
        st.fixed_dictionaries(
            {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "x"])},
            optional={
                "path": st.sampled_from(["", "/a", "/a/0", "/a/-", "/b/c", "/~1", 3]),
                "from": st.sampled_from(["/a", "/b", "/a/1"]),
                "value": _JSON,
            },
        ),
        max_size=4,
    ),
)
def test_json_patch_applies_or_refuses_and_never_touches_its_input(
    doc: dict[str, Any], ops: list[dict[str, Any]]
) -> None:
    before = copy.deepcopy(doc)
    code = 200
    try:
        json_patch(doc, ops)
    except KubeError as exc:  # the only way a patch fails
        code = exc.code
    assert code in {200, 400, 422}
    assert doc == before


def test_strategic_merge_merges_containers_by_name_and_obeys_directives() -> None:
    ds: dict[str, Any] = {"spec": {"template": {"spec": {
        "containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "args": ["x"]},
            {"name": "b", "image": "b:1"},
        ],
        "volumes": [{"name": "data", "hostPath": {"path": "/d"}}],
    }}}}  # fmt: skip
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
        "containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}], "args": ["y"]},
            {"name": "c", "image": "c:1"},
        ],
        "volumes": [{"name": "data", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}],
    }}}}  # fmt: skip
    out = strategic_merge_patch(ds, patch, ds_meta())
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["c", "a", "b"]
    assert containers[1] == {
        "name": "a",
        "image": "a:2",
        "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],  # merged by name
        "args": ["y"],  # an atomic list: replaced
    }
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]

    deleted = strategic_merge_patch(
        out, {"spec": {"template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}},
        ds_meta(),
    )  # fmt: skip
    assert [c["name"] for c in deleted["spec"]["template"]["spec"]["containers"]] == ["c", "a"]
    replaced = strategic_merge_patch(
        out, {"spec": {"template": {"spec": {"$patch": "replace", "containers": []}}}}, ds_meta()
    )
    assert replaced["spec"]["template"]["spec"] == {"containers": []}
    finalized = strategic_merge_patch(
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}},
        ds_meta(),
    )
    assert finalized["metadata"]["finalizers"] == ["b", "c"]
    keyless = {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
    with pytest.raises(KubeError):
        strategic_merge_patch(ds, keyless, ds_meta())


# --- selectors -------------------------------------------------------------------------------


def _labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "n", "namespace": "ns", "labels": labels}}


def test_label_selectors() -> None:
    obj = _labelled(app="x", tier="gold")
    cases = {
        "app=x": True, "app==x": True, "app!=x": False, "app": True, "!app": False,
        "tier in (gold,silver)": True, "tier notin (gold)": False, "app=x,tier=bronze": False,
        "example.com/role": False, "": True,
    }  # fmt: skip
    for text, expected in cases.items():
        assert label_selector(text)(obj) is expected, text
    for bad in ("a in (b", "a b", "=x", "a=b=c", "a in (b c)"):
        with pytest.raises(KubeError) as refused:
            label_selector(bad)
        assert refused.value.code == 400, bad


def test_field_selectors() -> None:
    obj = _labelled()
    supported = ("metadata.name", "metadata.namespace")
    assert field_selector("metadata.name=n,metadata.namespace!=x", supported)(obj)
    assert not field_selector("metadata.name==m", supported)(obj)
    for bad in ("spec.size=1", "metadata.name"):
        with pytest.raises(KubeError):
            field_selector(bad, supported)


# --- managed fields and server-side apply ------------------------------------------------------


def test_fields_v1_round_trips_with_map_list_elements() -> None:
    obj = {"spec": {"size": 1, "disks": [{"name": "a", "path": "/a"}], "tags": ["x"]}}
    meta = PatchMeta(VOLUME.schema, {})
    paths = fields.leaf_paths(obj, meta)
    assert paths == {
        ("spec", "size"),
        ("spec", "disks", 'k:{"name":"a"}', "name"),
        ("spec", "disks", 'k:{"name":"a"}', "path"),
        ("spec", "tags"),
    }
    tree = fields.to_fields_v1(paths)
    assert tree["f:spec"]["f:disks"]['k:{"name":"a"}'] == {".": {}, "f:name": {}, "f:path": {}}
    assert fields.from_fields_v1(tree) == paths
    assert fields.from_fields_v1({"f:spec": {"f:tags": {"v:x": {}}}}) == {("spec", "tags")}


def _apply(current: dict[str, Any] | None, applied: dict[str, Any], manager: str,
           force: bool = False) -> dict[str, Any]:  # fmt: skip
    return fields.apply(current, applied, manager=manager, force=force, api_version="lhtrio.io/v1",
                        now="2026-01-01T00:00:00Z", with_status=False,
                        meta=PatchMeta(VOLUME.schema, {}))  # fmt: skip


def test_apply_owns_removes_shares_and_conflicts() -> None:
    first = _apply(None, {"spec": {"size": 1, "note": "n", "disks": [{"name": "a"}]}}, "one")
    second = _apply(first, {"spec": {"size": 1, "disks": [{"name": "b"}]}}, "two")  # shared size
    assert [d["name"] for d in second["spec"]["disks"]] == ["a", "b"]  # element by element
    with pytest.raises(KubeError) as refused:
        _apply(second, {"spec": {"size": 2}}, "two")
    assert refused.value.code == 409
    assert refused.value.details["causes"][0]["field"] == ".spec.size"
    assert 'conflict with "one"' in refused.value.message
    third = _apply(second, {"spec": {"disks": [{"name": "a"}]}}, "one")  # note, size dropped
    assert "note" not in third["spec"]  # one's alone: removed
    assert third["spec"]["size"] == 1  # two's too: kept
    forced = _apply(third, {"spec": {"size": 5}}, "two", force=True)
    assert forced["spec"]["size"] == 5
    owners = {e["manager"]: fields.from_fields_v1(e["fieldsV1"])
              for e in forced["metadata"]["managedFields"]}  # fmt: skip
    assert ("spec", "size") not in owners["one"]
    assert ("spec", "size") in owners["two"]


def test_kubectl_takes_over_what_client_side_apply_applied() -> None:
    annotations = {"kubectl.kubernetes.io/last-applied-configuration": '{"spec": {"size": 1}}'}
    owner = {"manager": "kubectl-client-side-apply", "operation": "Update",
             "fieldsV1": {"f:spec": {"f:size": {}}}}  # fmt: skip
    live: dict[str, Any] = {
        "metadata": {"annotations": annotations, "managedFields": [owner]},
        "spec": {"size": 1},
    }
    moved = _apply(live, {"spec": {"size": 2}}, "kubectl")
    assert moved["spec"]["size"] == 2
    with pytest.raises(KubeError):
        _apply(live, {"spec": {"size": 2}}, "someone")  # only kubectl moves so
    live["spec"]["size"] = 3  # changed since it was applied: a real conflict again
    with pytest.raises(KubeError):
        _apply(live, {"spec": {"size": 2}}, "kubectl")


def test_an_update_takes_the_fields_it_changes() -> None:
    old: dict[str, Any] = {"metadata": {"name": "a"}, "spec": {"size": 1, "note": "x"}}
    fields.record_update(None, old, manager="one", api_version="v1", now="t", status_only=False)
    new = copy.deepcopy(old)
    new["spec"] = {"size": 2}
    fields.record_update(old, new, manager="two", api_version="v1", now="t", status_only=False)
    owners = {e["manager"]: fields.from_fields_v1(e["fieldsV1"])
              for e in new["metadata"]["managedFields"]}  # fmt: skip
    assert owners == {"two": {("spec", "size")}}  # one's note went, its size is two's now


# --- the Table -------------------------------------------------------------------------------


def test_ages_read_as_kubectl_prints_them() -> None:
    created = "2026-01-01T00:00:00Z"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cases = {0: "0s", 59: "59s", 119: "119s", 150: "2m30s", 600: "10m", 3 * 3600: "3h",
             5 * 3600 + 60: "5h1m", 30 * 3600: "30h", 50 * 3600: "2d2h", 9 * 86400: "9d",
             800 * 86400: "2y70d"}  # fmt: skip
    for seconds, text in cases.items():
        assert age(created, start + dt.timedelta(seconds=seconds)) == text, seconds
    assert age("yesterday", start) == "<invalid>"


def test_printer_column_paths_and_table_accept_headers() -> None:
    assert parse_path(".status.conditions[0].type") == ["status", "conditions", 0, "type"]
    assert parse_path(".metadata.labels['app.kubernetes.io/name']") == [
        "metadata", "labels", "app.kubernetes.io/name",
    ]  # fmt: skip
    with pytest.raises(KubeError):
        parse_path(".items[*].name")
    assert wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not wants_table("application/json")


# --- schemas and CRDs ------------------------------------------------------------------------


def test_crd_schemas_validate_prune_and_default() -> None:
    spec = {"port": "http", "note": None, "extra": {"any": 1}, "junk": 1}
    obj: dict[str, Any] = {
        "apiVersion": "lhtrio.io/v1", "kind": "Volume", "metadata": {"name": "a"}, "spec": spec,
    }  # fmt: skip
    schemas.fill_defaults(obj, VOLUME.schema)
    assert obj["spec"]["size"] == 1
    found = schemas.check(VOLUME, obj)
    assert found.invalid == []
    assert found.unknown_text() == ["spec.junk"]
    found.prune(obj)
    assert "junk" not in obj["spec"]
    obj["spec"]["port"] = 1.5
    obj["metadata"]["bogus"] = 1
    found = schemas.check(VOLUME, obj)
    assert [field for field, _ in found.invalid] == ["spec.port"]
    assert found.unknown_text() == ["metadata.bogus"]


def test_a_crd_is_checked_beyond_its_schema() -> None:
    check_crd(copy.deepcopy(CRD_BODY))
    bad = copy.deepcopy(CRD_BODY)
    bad["metadata"]["name"] = "vols.lhtrio.io"
    bad["spec"]["group"] = "apps"
    bad["spec"]["versions"][0]["storage"] = False
    with pytest.raises(KubeError) as refused:
        check_crd(bad)
    causes = {c["field"] for c in refused.value.details["causes"]}
    assert causes == {"metadata.name", "spec.group", "spec.versions"}


# --- create, update, delete ------------------------------------------------------------------


def test_create_update_and_delete_rules() -> None:
    body = {"metadata": {"generateName": "v-"}, "spec": {"size": 1}, "status": {"x": 1}}
    created = rules.prepare_create(VOLUME, body, namespace="ns", manager="m", moment="t")
    assert created["metadata"]["name"].startswith("v-")
    assert created["metadata"]["generation"] == 1
    assert "status" not in created
    created["metadata"]["resourceVersion"] = "5"
    changed = copy.deepcopy(created) | {"spec": {"size": 2}}
    updated = rules.prepare_update(VOLUME, created, changed, subresource=None, manager="m",
                                   moment="t", require_version=True)  # fmt: skip
    assert isinstance(updated, dict)
    assert updated["metadata"]["generation"] == 2
    stale = copy.deepcopy(changed)
    stale["metadata"]["resourceVersion"] = "4"
    with pytest.raises(KubeError) as refused:
        rules.prepare_update(VOLUME, created, stale, subresource=None, manager="m", moment="t",
                             require_version=True)  # fmt: skip
    assert refused.value.code == 409
    held = copy.deepcopy(created)
    held["metadata"]["finalizers"] = ["f"]
    marked = rules.prepare_delete(VOLUME, held, None, moment="now")
    assert marked is not None
    assert marked["metadata"]["deletionTimestamp"] == "now"
    released = copy.deepcopy(marked)
    released["metadata"]["finalizers"] = []
    verdict = rules.prepare_update(VOLUME, marked, released, subresource=None, manager="m",
                                   moment="t", require_version=False)  # fmt: skip
    assert isinstance(verdict, rules.Removal)
    assert rules.prepare_delete(VOLUME, created, None, moment="now") is None
    with pytest.raises(KubeError):
        rules.prepare_delete(VOLUME, created, {"uid": "other"}, moment="now")
