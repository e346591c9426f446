"""Watches on the double, over raw HTTP: resuming from a revision, the current objects first when
no revision is given, 410 Gone after etcd compacted the revision, bookmarks that can be resumed
from, selectors and namespaces, and a deletion's event. Revisions are etcd's own throughout.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Any

from tests.kubeapi.conftest import Kube
from tests.kubeapi.watch_client import Events
from tests.kubeapi.watch_client import watching as open_watch

VOLUMES = "/apis/lhtrio.io/v1/namespaces/default/volumes"


def watching(kube: Kube, path: str = VOLUMES, **params: str) -> AbstractAsyncContextManager[Events]:
    return open_watch(kube.url, path, **params)


async def _create(kube: Kube, name: str, size: int = 1, **labels: str) -> dict[str, Any]:
    body = {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": size},
    }
    response = await kube.http.post(VOLUMES, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _merge(kube: Kube, name: str, change: dict[str, Any], sub: str = "") -> dict[str, Any]:
    response = await kube.http.patch(
        f"{VOLUMES}/{name}{sub}",
        content=json.dumps(change),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    changed: dict[str, Any] = response.json()
    return changed


def _rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def test_a_watch_resumes_after_the_revision_given(kube: Kube) -> None:
    await kube.create_crd()
    a1 = await _create(kube, "a")
    a2 = await _merge(kube, "a", {"spec": {"size": 2}})
    b = await _create(kube, "b")
    assert _rv(a1) < _rv(a2) < _rv(b) == await kube.revision()  # etcd's revisions
    async with watching(kube, resourceVersion=str(_rv(a1))) as events:
        first, second = await events.next(), await events.next()
        assert (first["type"], first["object"]["metadata"]["name"], _rv(first["object"])) == (
            "MODIFIED", "a", _rv(a2),
        )  # fmt: skip
        assert first["object"]["spec"]["size"] == 2
        assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "b")
        a3 = await _merge(kube, "a", {"spec": {"size": 3}})
        third = await events.next()
        assert (third["type"], _rv(third["object"])) == ("MODIFIED", _rv(a3))


async def test_a_watch_without_a_revision_sends_the_current_objects_first(kube: Kube) -> None:
    await kube.create_crd()
    await _create(kube, "a")
    await _create(kube, "b")
    async with watching(kube) as events:
        names = {(await events.next())["object"]["metadata"]["name"] for _ in range(2)}
        assert names == {"a", "b"}
        await _create(kube, "c")
        event = await events.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "c")


async def test_a_compacted_revision_is_410_gone(kube: Kube) -> None:
    await kube.create_crd()
    old = await _create(kube, "a")
    await _merge(kube, "a", {"spec": {"size": 2}})
    compacted = await kube.compact()
    async with watching(kube, resourceVersion=str(_rv(old))) as events:
        error = await events.next()
        assert error["type"] == "ERROR"
        status = error["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert f"too old resource version: {_rv(old)}" in status["message"]
        assert await events.ended()
    listed = await kube.http.get(
        VOLUMES, params={"resourceVersion": str(_rv(old)), "resourceVersionMatch": "Exact"}
    )
    assert (listed.status_code, listed.json()["reason"]) == (410, "Expired")
    async with watching(kube, resourceVersion=str(compacted)) as events:  # kept: fine
        await _merge(kube, "a", {"spec": {"size": 3}})
        assert (await events.next())["object"]["spec"]["size"] == 3


async def test_bookmarks_carry_a_revision_a_watch_can_resume_from(kube: Kube) -> None:
    await kube.create_crd()
    created = await _create(kube, "a")
    async with watching(
        kube, resourceVersion=str(_rv(created)), allowWatchBookmarks="true"
    ) as events:
        bookmark = await events.until("BOOKMARK")
        assert bookmark["object"]["kind"] == "Volume"
        assert bookmark["object"]["apiVersion"] == "lhtrio.io/v1"
        mark = _rv(bookmark["object"])
        assert mark > _rv(created)
    changed = await _merge(kube, "a", {"spec": {"size": 9}})
    async with watching(kube, resourceVersion=str(mark)) as events:
        event = await events.next()
        assert (event["type"], _rv(event["object"])) == ("MODIFIED", _rv(changed))
    listed = await kube.http.get(VOLUMES)
    assert [i["metadata"]["name"] for i in listed.json()["items"]] == ["a"]  # no heartbeat key


async def test_no_bookmarks_unless_asked(kube: Kube) -> None:
    await kube.create_crd()
    created = await _create(kube, "a")
    async with watching(kube, resourceVersion=str(_rv(created)), timeoutSeconds="1") as events:
        assert await events.ended()  # a quiet second, then the timeout: nothing at all


async def test_selectors_turn_changes_into_added_and_deleted(kube: Kube) -> None:
    await kube.create_crd()
    created = await _create(kube, "a", tier="gold")
    await _create(kube, "b", tier="bronze")
    async with watching(kube, labelSelector="tier=gold") as events:
        event = await events.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "a")
        await _merge(kube, "a", {"metadata": {"labels": {"tier": "bronze"}}})
        assert (await events.next())["type"] == "DELETED"  # left the selection
        await _merge(kube, "b", {"metadata": {"labels": {"tier": "gold"}}})
        event = await events.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")
    async with watching(
        kube, fieldSelector="metadata.name=a", resourceVersion=str(_rv(created))
    ) as events:
        event = await events.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "a")
    async with watching(kube, f"{VOLUMES}/b") as events:  # one object, by its path
        event = await events.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")
        await _merge(kube, "a", {"spec": {"size": 5}})
        await _merge(kube, "b", {"spec": {"size": 6}})
        event = await events.next()
        assert (event["type"], event["object"]["spec"]["size"]) == ("MODIFIED", 6)


async def test_a_watch_sees_its_namespace_only_and_deletions_carry_the_last_object(
    kube: Kube,
) -> None:
    await kube.create_crd()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}
    assert (await kube.http.post("/api/v1/namespaces", json=namespace)).status_code == 201
    created = await _create(kube, "a")
    elsewhere = {"apiVersion": "lhtrio.io/v1", "kind": "Volume", "metadata": {"name": "x"},
                 "spec": {"size": 1}}  # fmt: skip
    path = "/apis/lhtrio.io/v1/namespaces/other/volumes"
    async with watching(kube, resourceVersion=str(_rv(created))) as events:
        assert (await kube.http.post(path, json=elsewhere)).status_code == 201
        deleted = await kube.http.delete(f"{VOLUMES}/a")
        assert deleted.status_code == 200
        event = await events.next()
        assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "a")
        assert event["object"]["spec"] == {"size": 1, "replicas": 3, "frontend": "nbd"}
        assert _rv(event["object"]) == await kube.revision()  # the deletion's revision
    async with watching(kube, "/apis/lhtrio.io/v1/volumes") as events:  # every namespace
        event = await events.next()
        assert event["object"]["metadata"]["namespace"] == "other"


async def test_a_watch_with_a_bad_revision_is_refused_before_it_starts(kube: Kube) -> None:
    await kube.create_crd()
    for params in (
        {"watch": "true", "resourceVersion": "ten"},
        {"watch": "true", "labelSelector": "a in (b"},
        {"watch": "true", "sendInitialEvents": "true"},
        {"watch": "true", "timeoutSeconds": "-1"},
    ):
        response = await kube.http.get(VOLUMES, params=params)
        assert response.status_code == 400, params
        assert response.json()["reason"] == "BadRequest"
