"""The volume's desired state through its actions: data locality (strict-local needs one
replica: 422 otherwise), labels (the whole set, replaced), and the list filters that read them
(labelSelector, state, robustness)."""

from __future__ import annotations

from typing import Any

import pytest

from lhtrio.models.cluster import Volume
from lhtrio.models.cluster.volume import DataLocality
from tests.api.conftest import AUTH, Api
from tests.api.test_bad_input import refused


@pytest.fixture
async def existing(api: Api) -> Api:
    for name, replicas in (("v", 2), ("w", 1)):
        body = {"name": name, "size": "1Gi", "numberOfReplicas": replicas}
        assert (await api.post("/v1/volumes", body)).status_code == 201
    return api


async def act(api: Api, action: str, body: Any, volume: str = "v") -> Any:
    response = await api.post(f"/v1/volumes/{volume}?action={action}", body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("locality", ["best-effort", "disabled"])
async def test_the_data_locality_is_updated(existing: Api, locality: str) -> None:
    answer = await act(existing, "updateDataLocality", {"dataLocality": locality})
    assert answer["spec"]["dataLocality"] == locality
    volume = await existing.objects.get(Volume, "v")
    assert volume.spec.data_locality is DataLocality(locality)


@pytest.mark.parametrize("value", ["local", "", 1, None, ["best-effort"], "Best-Effort"])
async def test_bad_data_localities_are_refused(existing: Api, value: Any) -> None:
    answer = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=updateDataLocality",
        json={"dataLocality": value},
        headers=AUTH,
    )
    assert answer["details"] == {"field": "dataLocality"}
    assert "strict-local" in answer["message"]  # it names the values


async def test_strict_local_needs_one_replica(existing: Api) -> None:
    answer = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=updateDataLocality",
        json={"dataLocality": "strict-local"},
        headers=AUTH,
        status=422,
    )
    assert answer["code"] == "FailedPrecondition"
    assert "numberOfReplicas 1" in answer["message"]
    one = await act(existing, "updateDataLocality", {"dataLocality": "strict-local"}, "w")
    assert one["spec"]["dataLocality"] == "strict-local"
    more = await refused(
        existing,
        "POST",
        "/v1/volumes/w?action=updateReplicaCount",
        json={"replicaCount": 2},
        headers=AUTH,
        status=422,
    )
    assert "strict-local" in more["message"]


async def test_labels_are_replaced_whole(existing: Api) -> None:
    first = await act(existing, "updateLabels", {"labels": {"app": "db", "example.com/tier": "1"}})
    assert first["metadata"]["labels"] == {"app": "db", "example.com/tier": "1"}
    second = await act(existing, "updateLabels", {"labels": {"app": "web"}})
    assert second["metadata"]["labels"] == {"app": "web"}
    assert (await existing.objects.get(Volume, "v")).meta.labels == {"app": "web"}
    assert (await act(existing, "updateLabels", {"labels": {}}))["metadata"]["labels"] == {}


@pytest.mark.parametrize(
    "labels",
    [
        {"app": "no spaces"},
        {"-bad": "x"},
        {"Example.com/x": "y"},
        {"a": "x" * 64},
        {f"k{n}": "v" for n in range(65)},
        {"app": 1},
        ["app=db"],
        "app=db",
        None,
    ],
)
async def test_bad_labels_are_refused(existing: Api, labels: Any) -> None:
    answer = await refused(
        existing, "POST", "/v1/volumes/v?action=updateLabels", json={"labels": labels}, headers=AUTH
    )
    assert answer["details"] == {"field": "labels"}


async def test_labels_of_a_volume_being_deleted_may_change_its_spec_may_not(
    existing: Api,
) -> None:
    assert (await existing.client.delete("/v1/volumes/v")).status_code == 202
    await act(existing, "updateLabels", {"labels": {"going": "yes"}})
    answer = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=updateDataLocality",
        json={"dataLocality": "best-effort"},
        headers=AUTH,
        status=409,
    )
    assert "being deleted" in answer["message"]


async def names(api: Api, query: str) -> list[str]:
    response = await api.client.get(f"/v1/volumes?{query}")
    assert response.status_code == 200, response.text
    return [d["metadata"]["name"] for d in response.json()["data"]]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=db", ["v"]),
        ("app==db", ["v"]),
        ("app!=db", ["w", "x"]),
        ("app", ["v", "w"]),
        ("!app", ["x"]),
        ("app,tier=gold", ["w"]),
        ("app, tier = gold", ["w"]),
        ("tier=silver", []),
        ("", ["v", "w", "x"]),
    ],
)
async def test_volumes_are_listed_by_label(
    existing: Api, selector: str, expected: list[str]
) -> None:
    await act(existing, "updateLabels", {"labels": {"app": "db"}})
    await act(existing, "updateLabels", {"labels": {"app": "web", "tier": "gold"}}, "w")
    assert (await existing.post("/v1/volumes", {"name": "x", "size": "1Gi"})).status_code == 201
    assert await names(existing, f"labelSelector={selector}") == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("labelSelector=app in (db)", "labelSelector"),
        ("labelSelector=a b=c", "labelSelector"),
        ("labelSelector=app=", "labelSelector"),  # (an empty value is fine: this is "app" = "")
        ("labelSelector=,", "labelSelector"),
        ("labelSelector==db", "labelSelector"),
        ("state=Attached", "state"),
        ("state=", "state"),
        ("robustness=ok", "robustness"),
    ],
)
async def test_bad_filters_are_refused(existing: Api, query: str, field: str) -> None:
    if query == "labelSelector=app=":
        assert await names(existing, query) == []
        return
    answer = await refused(existing, "GET", f"/v1/volumes?{query}")
    assert answer["details"] == {"field": field}


async def test_volumes_are_listed_by_state_and_robustness(existing: Api) -> None:
    assert await names(existing, "state=creating") == ["v", "w"]
    assert await names(existing, "state=attached") == []
    assert await names(existing, "robustness=unknown") == ["v", "w"]
    assert await names(existing, "state=creating&robustness=healthy") == []
