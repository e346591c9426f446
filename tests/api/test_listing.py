"""Lists answer from documents rendered once per version: a change shows at once (its version
moved), a deleted object goes, and a document the codec refuses is still a 503 naming it."""

from __future__ import annotations

import copy
from typing import Any

from tests.api.conftest import Api


async def names_and_labels(api: Api) -> list[tuple[str, dict[str, str]]]:
    response = await api.client.get("/v1/volumes")
    assert response.status_code == 200, response.text
    return [(d["metadata"]["name"], d["metadata"]["labels"]) for d in response.json()["data"]]


async def test_a_list_follows_every_change(api: Api) -> None:
    for name in ("a", "b", "c"):
        assert (await api.post("/v1/volumes", {"name": name, "size": "1Gi"})).status_code == 201
    assert await names_and_labels(api) == [("a", {}), ("b", {}), ("c", {})]
    labelled = await api.post("/v1/volumes/b?action=updateLabels", {"labels": {"x": "1"}})
    assert labelled.status_code == 200
    assert await names_and_labels(api) == [("a", {}), ("b", {"x": "1"}), ("c", {})]
    assert (await api.client.delete("/v1/volumes/c")).status_code == 202
    released: dict[str, Any] = copy.deepcopy(await api.store.inner.get("Volume", "c"))
    released["metadata"]["finalizers"] = []  # as its reconciler does once it is cleaned up
    await api.store.inner.update(released)
    assert (await api.client.delete("/v1/volumes/a")).status_code == 202
    assert [n for n, _ in await names_and_labels(api)] == ["a", "b"]  # (a: its finalizer holds it)
    listed = (await api.client.get("/v1/volumes")).json()["data"]
    assert listed[0]["metadata"]["deletionTimestamp"]
    assert (await api.client.get("/v1/volumes?labelSelector=x=1")).json()["data"] == [listed[1]]


async def test_a_document_the_codec_refuses_is_503_even_after_a_good_list(api: Api) -> None:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    assert len((await api.client.get("/v1/volumes")).json()["data"]) == 1
    document: dict[str, Any] = copy.deepcopy(await api.store.inner.get("Volume", "v"))
    document["spec"]["numberOfReplicas"] = "3"  # a string: the codec refuses it
    await api.store.inner.update(document)  # (a new resourceVersion, as every write has)
    response = await api.client.get("/v1/volumes")
    assert response.status_code == 503
    assert response.json()["code"] == "StoreUnavailable"
    assert "numberOfReplicas" in response.json()["message"]
