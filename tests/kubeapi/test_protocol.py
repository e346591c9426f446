"""The double's protocol over raw HTTP (httpx): discovery that follows the CRDs, the metadata a
create fills in, 404/409/422 as Kubernetes Status objects, stale updates, the status
subresource and ``generation``, lists with selectors and pages, patches of every kind, the
Table format, finalizers, and revisions that are etcd's own. Watches: ``test_watch.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.kubeapi.conftest import Kube

VOLUMES = "/apis/lhtrio.io/v1/namespaces/default/volumes"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"


def volume(name: str, size: Any = 1, **more: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": name, **more},
        "spec": {"size": size},
    }


async def create(kube: Kube, body: dict[str, Any], path: str = VOLUMES) -> dict[str, Any]:
    response = await kube.http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def patch(
    kube: Kube, path: str, change: Any, kind: str = "merge-patch+json", **params: str
) -> Any:
    return await kube.http.patch(
        path, content=json.dumps(change), headers={"Content-Type": f"application/{kind}"},
        params=params,
    )  # fmt: skip


def status_of(response: Any, code: int, reason: str) -> dict[str, Any]:
    """The Status body of a refusal, checked."""
    assert response.status_code == code, response.text
    body: dict[str, Any] = response.json()
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason)
    return body


async def test_discovery_follows_the_crds(kube: Kube) -> None:
    version = (await kube.http.get("/version")).json()
    assert version["gitVersion"] == "v1.32.0"
    assert (await kube.http.get("/api")).json()["versions"] == ["v1"]
    groups = {g["name"] for g in (await kube.http.get("/apis")).json()["groups"]}
    assert {"apps", "rbac.authorization.k8s.io", "coordination.k8s.io"} <= groups
    assert "lhtrio.io" not in groups
    status_of(await kube.http.get("/apis/lhtrio.io/v1"), 404, "NotFound")

    crd = await kube.create_crd()
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["storedVersions"] == ["v1"]
    group = (await kube.http.get("/apis/lhtrio.io")).json()
    assert group["preferredVersion"] == {"groupVersion": "lhtrio.io/v1", "version": "v1"}
    listed = (await kube.http.get("/apis/lhtrio.io/v1")).json()
    assert listed["groupVersion"] == "lhtrio.io/v1"
    volumes, status = listed["resources"]
    assert volumes["name"] == "volumes"
    assert volumes["kind"] == "Volume"
    assert volumes["namespaced"] is True
    assert volumes["shortNames"] == ["lhv", "lhvol"]
    assert volumes["categories"] == ["lhtrio"]
    assert set(volumes["verbs"]) >= {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert (status["name"], status["verbs"]) == ("volumes/status", ["get", "patch", "update"])
    core = {r["name"]: r for r in (await kube.http.get("/api/v1")).json()["resources"]}
    assert core["namespaces"]["namespaced"] is False
    assert "services/status" in core

    await create(kube, volume("a"))
    deleted = await kube.http.delete(f"{CRDS}/volumes.lhtrio.io")
    assert deleted.status_code == 200
    status_of(await kube.http.get("/apis/lhtrio.io/v1"), 404, "NotFound")
    await kube.create_crd()  # again: its old objects went with it
    assert (await kube.http.get(VOLUMES)).json()["items"] == []


async def test_create_fills_in_what_the_server_owns(kube: Kube) -> None:
    await kube.create_crd()
    body = volume("", size=5)
    body["metadata"] = {"generateName": "vol-", "uid": "mine", "generation": 7}
    body["status"] = {"state": "attached"}  # the status writer's, not the creator's
    created = await create(kube, body)
    meta = created["metadata"]
    assert re.fullmatch(r"vol-[a-z0-9]{5}", meta["name"])
    assert meta["uid"] != "mine"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert meta["namespace"] == "default"
    assert int(meta["resourceVersion"]) == await kube.revision()
    assert "status" not in created
    assert created["spec"] == {"size": 5, "replicas": 3, "frontend": "nbd"}  # defaults
    fetched = (await kube.http.get(f"{VOLUMES}/{meta['name']}")).json()
    assert fetched == created

    again = await kube.http.post(VOLUMES, json={**body, "metadata": {"name": meta["name"]}})
    refused = status_of(again, 409, "AlreadyExists")
    assert refused["details"] == {"name": meta["name"], "group": "lhtrio.io", "kind": "volumes"}
    assert refused["message"] == f'volumes.lhtrio.io "{meta["name"]}" already exists'
    missing = status_of(await kube.http.get(f"{VOLUMES}/nope"), 404, "NotFound")
    assert missing["message"] == 'volumes.lhtrio.io "nope" not found'
    assert missing["details"]["name"] == "nope"


async def test_a_stale_update_is_a_conflict_and_changes_nothing(kube: Kube) -> None:
    await kube.create_crd()
    first = await create(kube, volume("a"))
    changed = first | {"spec": {"size": 2}}
    second = (await kube.http.put(f"{VOLUMES}/a", json=changed)).json()
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    before = await kube.revision()
    stale = await kube.http.put(f"{VOLUMES}/a", json=first | {"spec": {"size": 3}})
    refused = status_of(stale, 409, "Conflict")
    assert "the object has been modified" in refused["message"]
    assert await kube.revision() == before
    assert (await kube.http.get(f"{VOLUMES}/a")).json()["spec"]["size"] == 2
    unversioned = volume("a", size=4)
    status_of(await kube.http.put(f"{VOLUMES}/a", json=unversioned), 422, "Invalid")


async def test_the_status_subresource_and_generation(kube: Kube) -> None:
    await kube.create_crd()
    obj = await create(kube, volume("a"))
    obj = (await kube.http.put(f"{VOLUMES}/a", json=obj | {"status": {"state": "x"}})).json()
    assert "status" not in obj  # the main resource ignores status
    assert obj["metadata"]["generation"] == 1

    wanted = obj | {"spec": {"size": 99}, "status": {"state": "attached", "node": "n1"}}
    obj = (await kube.http.put(f"{VOLUMES}/a/status", json=wanted)).json()
    assert obj["status"] == {"state": "attached", "node": "n1"}
    assert obj["spec"]["size"] == 1  # /status ignores everything else
    assert obj["metadata"]["generation"] == 1

    response = await patch(kube, f"{VOLUMES}/a", {"metadata": {"labels": {"a": "b"}}})
    assert response.json()["metadata"]["generation"] == 1  # metadata: no new generation
    response = await patch(kube, f"{VOLUMES}/a", {"spec": {"size": 2}})
    assert response.json()["metadata"]["generation"] == 2
    assert response.json()["status"] == {"state": "attached", "node": "n1"}
    response = await patch(kube, f"{VOLUMES}/a/status", {"status": {"node": None}})
    assert response.json()["status"] == {"state": "attached"}

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": [{"port": 80}]}}  # fmt: skip
    created = await create(kube, service, "/api/v1/namespaces/default/services")
    response = await patch(
        kube, "/api/v1/namespaces/default/services/s/status",
        {"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}},
    )  # fmt: skip
    assert response.json()["status"]["loadBalancer"]["ingress"] == [{"ip": "10.0.0.1"}]
    assert response.json()["metadata"]["generation"] == created["metadata"]["generation"]


async def test_lists_select_by_label_and_field_and_come_in_pages(kube: Kube) -> None:
    await kube.create_crd()
    for i, tier in enumerate(["gold", "gold", "silver", "bronze", ""]):
        await create(kube, volume(f"v{i}", labels={"tier": tier} if tier else {}))

    async def names(**params: str) -> list[str]:
        response = await kube.http.get(VOLUMES, params=params)
        assert response.status_code == 200, response.text
        return [item["metadata"]["name"] for item in response.json()["items"]]

    assert await names(labelSelector="tier=gold") == ["v0", "v1"]
    assert await names(labelSelector="tier in (gold, silver)") == ["v0", "v1", "v2"]
    assert await names(labelSelector="tier notin (gold),tier") == ["v2", "v3"]
    assert await names(labelSelector="!tier") == ["v4"]
    assert await names(labelSelector="tier!=gold") == ["v2", "v3", "v4"]
    assert await names(fieldSelector="metadata.name=v3") == ["v3"]
    assert await names(fieldSelector="metadata.namespace=default,metadata.name!=v0") == [
        "v1", "v2", "v3", "v4",
    ]  # fmt: skip

    listed = (await kube.http.get(VOLUMES)).json()
    assert listed["kind"] == "VolumeList"
    assert int(listed["metadata"]["resourceVersion"]) == await kube.revision()
    pages, params = [], {"limit": "2"}
    while True:
        page = (await kube.http.get(VOLUMES, params=params)).json()
        pages.append([item["metadata"]["name"] for item in page["items"]])
        assert page["metadata"]["resourceVersion"] == listed["metadata"]["resourceVersion"]
        if not page["metadata"].get("continue"):
            break
        params = {"limit": "2", "continue": page["metadata"]["continue"]}
        await create(
            kube, volume(f"late-{len(pages)}")
        )  # not in this list: it is read at one revision
    assert pages == [["v0", "v1"], ["v2", "v3"], ["v4"]]

    for params in (
        {"labelSelector": "tier in (gold"},
        {"labelSelector": "ti er=gold"},
        {"fieldSelector": "spec.size=1"},
        {"fieldSelector": "metadata.name"},
        {"limit": "many"},
        {"continue": "not-a-token"},
    ):
        status_of(await kube.http.get(VOLUMES, params=params), 400, "BadRequest")


async def test_validation_refuses_with_causes_and_changes_nothing(kube: Kube) -> None:
    await kube.create_crd()
    before = await kube.revision()
    bad = volume("a", size="big")
    bad["spec"]["frontend"] = "iscsi"
    refused = status_of(await kube.http.post(VOLUMES, json=bad), 422, "Invalid")
    causes = {c["field"]: c for c in refused["details"]["causes"]}
    assert set(causes) == {"spec.size", "spec.frontend"}
    assert causes["spec.size"]["reason"] == "FieldValueInvalid"
    assert refused["message"].startswith('Volume.lhtrio.io "a" is invalid: [')
    required = volume("a")
    del required["spec"]["size"]
    refused = status_of(await kube.http.post(VOLUMES, json=required), 422, "Invalid")
    assert refused["details"]["causes"][0]["field"] == "spec.size"
    assert refused["details"]["causes"][0]["message"] == "Required value"
    status_of(await kube.http.post(VOLUMES, json=volume("a", size=0)), 422, "Invalid")  # minimum

    typo = volume("a")
    typo["spec"]["sise"] = 2
    strict = await kube.http.post(VOLUMES, json=typo, params={"fieldValidation": "Strict"})
    assert 'unknown field "spec.sise"' in status_of(strict, 400, "BadRequest")["message"]
    assert await kube.revision() == before

    warned = await kube.http.post(VOLUMES, json=typo)  # Warn, the default: pruned, with a warning
    assert warned.status_code == 201
    assert warned.headers["warning"] == '299 - "unknown field \\"spec.sise\\""'
    assert "sise" not in warned.json()["spec"]
    ignored = await kube.http.post(
        VOLUMES, json=typo | {"metadata": {"name": "b"}}, params={"fieldValidation": "Ignore"}
    )
    assert "warning" not in ignored.headers
    status_of(
        await kube.http.post(VOLUMES, json=volume("c"), params={"fieldValidation": "Loose"}),
        400, "BadRequest",
    )  # fmt: skip

    nameless = {"spec": {"containers": [{"image": "i"}]}}
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                 "spec": {"selector": {}, "template": nameless}}  # fmt: skip
    refused = status_of(
        await kube.http.post("/apis/apps/v1/namespaces/default/daemonsets", json=daemonset),
        422, "Invalid",
    )  # fmt: skip
    assert refused["details"]["causes"][0]["field"] == "spec.template.spec.containers[0].name"


async def test_patches_of_every_kind(kube: Kube) -> None:
    await kube.create_crd()
    await create(kube, volume("a", labels={"x": "1", "y": "2"}))
    path = f"{VOLUMES}/a"
    merged = (await patch(kube, path, {"metadata": {"labels": {"x": None}}})).json()
    assert merged["metadata"]["labels"] == {"y": "2"}
    ops = [{"op": "add", "path": "/metadata/labels/z", "value": "3"},
           {"op": "replace", "path": "/spec/size", "value": 8}]  # fmt: skip
    patched = (await patch(kube, path, ops, "json-patch+json")).json()
    assert (patched["metadata"]["labels"], patched["spec"]["size"]) == ({"y": "2", "z": "3"}, 8)

    before = await kube.revision()
    failed = [{"op": "test", "path": "/spec/size", "value": 1},
              {"op": "replace", "path": "/spec/size", "value": 9}]  # fmt: skip
    status_of(await patch(kube, path, failed, "json-patch+json"), 422, "Invalid")
    status_of(await patch(kube, path, {"op": "add"}, "json-patch+json"), 400, "BadRequest")
    status_of(await patch(kube, path, {"spec": {}}, "strategic-merge-patch+json"), 415,
              "UnsupportedMediaType")  # fmt: skip
    status_of(await patch(kube, path, {}, "xml"), 415, "UnsupportedMediaType")
    status_of(await patch(kube, path, {"spec": {"size": "x"}}), 422, "Invalid")
    status_of(await patch(kube, f"{VOLUMES}/nope", {"spec": {}}), 404, "NotFound")
    status_of(await patch(kube, path, {"metadata": {"resourceVersion": "1"}}), 409, "Conflict")
    status_of(await patch(kube, path, volume("a"), "apply-patch+yaml"), 400, "BadRequest")
    assert await kube.revision() == before

    applied = await kube.http.patch(
        f"{VOLUMES}/b", content="apiVersion: lhtrio.io/v1\nkind: Volume\nmetadata: {name: b}\n"
        "spec: {size: 3}\n", headers={"Content-Type": "application/apply-patch+yaml"},
        params={"fieldManager": "lhtrio"},
    )  # fmt: skip
    assert applied.status_code == 201, applied.text
    fields = applied.json()["metadata"]["managedFields"]
    assert [(f["manager"], f["operation"]) for f in fields] == [("lhtrio", "Apply")]
    assert fields[0]["fieldsV1"] == {"f:spec": {"f:size": {}}}

    ports = [{"name": "a", "port": 80}, {"name": "b", "port": 81}]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": ports}}  # fmt: skip
    await create(kube, service, "/api/v1/namespaces/default/services")
    smp = {"spec": {"ports": [{"port": 8080, "name": "c"}, {"port": 81, "$patch": "delete"}]}}
    response = await patch(kube, "/api/v1/namespaces/default/services/s", smp,
                           "strategic-merge-patch+json")  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["ports"] == [
        {"name": "a", "port": 80},
        {"port": 8080, "name": "c"},
    ]


async def test_get_as_a_table_shows_the_printer_columns(kube: Kube) -> None:
    await kube.create_crd()
    await create(kube, volume("a", size=5))
    await patch(
        kube, f"{VOLUMES}/a/status", {"status": {"state": "attached", "robustness": "healthy"}}
    )
    table = (await kube.http.get(VOLUMES, headers={"Accept": TABLE})).json()
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    columns = [(c["name"], c["type"]) for c in table["columnDefinitions"]]
    assert columns == [("Name", "string"), ("State", "string"), ("Robustness", "string"),
                       ("Size", "integer"), ("Node", "string"), ("Age", "date")]  # fmt: skip
    (row,) = table["rows"]
    assert row["cells"][:5] == ["a", "attached", "healthy", 5, None]
    assert re.fullmatch(r"\d+s", row["cells"][5])
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "a"
    one = (await kube.http.get(f"{VOLUMES}/a", headers={"Accept": TABLE})).json()
    assert one["rows"][0]["cells"][0] == "a"
    plain = (await kube.http.get("/api/v1/namespaces", headers={"Accept": TABLE})).json()
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Age"]
    assert {r["cells"][0] for r in plain["rows"]} >= {"default", "kube-system"}


async def test_finalizers_hold_a_deletion_until_they_are_gone(kube: Kube) -> None:
    await kube.create_crd()
    await create(kube, volume("a", finalizers=["lhtrio.io/data"]))
    deleting = await kube.http.delete(f"{VOLUMES}/a")
    assert deleting.status_code == 200
    held = deleting.json()
    assert held["metadata"]["deletionTimestamp"]
    assert (await kube.http.get(f"{VOLUMES}/a")).json() == held
    again = await kube.http.delete(f"{VOLUMES}/a")
    assert again.json()["metadata"]["resourceVersion"] == held["metadata"]["resourceVersion"]
    released = await patch(kube, f"{VOLUMES}/a", {"metadata": {"finalizers": None}})
    assert released.status_code == 200
    status_of(await kube.http.get(f"{VOLUMES}/a"), 404, "NotFound")

    await create(kube, volume("b"))
    precondition = {"preconditions": {"uid": "someone-else"}}
    refused = await kube.http.request("DELETE", f"{VOLUMES}/b", json=precondition)
    status_of(refused, 409, "Conflict")
    assert (await kube.http.delete(f"{VOLUMES}/b")).status_code == 200
    status_of(await kube.http.delete(f"{VOLUMES}/b"), 404, "NotFound")


async def test_bad_requests_are_refused_and_change_nothing(kube: Kube) -> None:
    await kube.create_crd()
    await create(kube, volume("a"))
    before = await kube.revision()

    async def refused(method: str, path: str, code: int, reason: str, **kw: Any) -> None:
        status_of(await kube.http.request(method, path, **kw), code, reason)

    await refused("POST", VOLUMES, 400, "BadRequest", content=b"{not json")
    await refused("POST", VOLUMES, 400, "BadRequest", json=[1, 2])
    await refused("POST", VOLUMES, 400, "BadRequest", json=volume("b") | {"kind": "Engine"})
    await refused("POST", VOLUMES, 400, "BadRequest", json=volume("b") | {"apiVersion": "x/v1"})
    await refused("POST", VOLUMES, 400, "BadRequest",
                  json=volume("b", namespace="kube-system"))  # fmt: skip
    await refused("POST", VOLUMES, 400, "BadRequest", json=volume("b", resourceVersion="5"))
    await refused("POST", VOLUMES, 422, "Invalid", json=volume("Not_A_Name"))
    await refused("POST", VOLUMES, 422, "Invalid", json=volume("") | {"metadata": {}})
    await refused("POST", "/apis/lhtrio.io/v1/namespaces/nowhere/volumes", 404, "NotFound",
                  json=volume("b"))  # fmt: skip
    await refused("POST", "/apis/lhtrio.io/v1/volumes", 405, "MethodNotAllowed", json=volume("b"))
    await refused("POST", f"{VOLUMES}/a", 405, "MethodNotAllowed", json=volume("b"))
    await refused("PUT", f"{VOLUMES}/a", 400, "BadRequest", json=volume("b"))  # name mismatch
    await refused("DELETE", VOLUMES, 405, "MethodNotAllowed")
    await refused("GET", "/apis/lhtrio.io/v1/namespaces/default/engines", 404, "NotFound")
    await refused("GET", f"{VOLUMES}/a/scale", 404, "NotFound")
    await refused("GET", "/api/v1/namespaces/default/serviceaccounts/x/status", 404, "NotFound")
    await refused("POST", VOLUMES, 413, "RequestEntityTooLarge", content=b" " * (4 << 20))
    assert await kube.revision() == before


async def test_deleting_a_namespace_takes_its_objects(kube: Kube) -> None:
    await kube.create_crd()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    created = await create(kube, namespace, "/api/v1/namespaces")
    assert created["status"] == {"phase": "Active"}
    await create(kube, volume("a"), "/apis/lhtrio.io/v1/namespaces/team/volumes")
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    await create(kube, config, "/api/v1/namespaces/team/configmaps")
    await create(kube, volume("a"))  # the same name in another namespace stays
    assert (await kube.http.delete("/api/v1/namespaces/team")).status_code == 200
    everywhere = (await kube.http.get("/apis/lhtrio.io/v1/volumes")).json()["items"]
    assert [(v["metadata"]["namespace"], v["metadata"]["name"]) for v in everywhere] == [
        ("default", "a")
    ]
    assert (await kube.http.get("/api/v1/namespaces/team/configmaps")).json()["items"] == []
