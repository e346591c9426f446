"""The volume actions beyond attach and detach, over HTTP, against a store with no node running:
what can be decided without an engine is (replica count, salvage's checks, an expansion that
would shrink: 422), what needs one is refused with 503 and leaves no ticket behind, and every bad
body is a 400 that changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lhtrio.models.cluster import ObjectMeta, Replica, Volume, VolumeAttachment
from lhtrio.models.cluster.replica import ReplicaSpec
from tests.api.conftest import AUTH, Api
from tests.api.test_bad_input import HOSTILE_NAMES, refused

GiB = 1 << 30
FAILED = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


@pytest.fixture
async def existing(api: Api) -> Api:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    return api


async def add_replica(api: Api, name: str, *, failed: bool) -> None:
    await api.objects.create(
        Replica(
            meta=ObjectMeta(name=name),
            spec=ReplicaSpec(
                volume_name="v",
                volume_size=GiB,
                node_id="n1",
                failed_at=FAILED if failed else None,
            ),
        )
    )


async def test_the_replica_count_is_updated(existing: Api) -> None:
    response = await existing.post("/v1/volumes/v?action=updateReplicaCount", {"replicaCount": 2})
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["numberOfReplicas"] == 2
    assert (await existing.objects.get(Volume, "v")).spec.number_of_replicas == 2


@pytest.mark.parametrize("count", [0, 100, -1, "2", 2.0, True, None])
async def test_bad_replica_counts_are_refused(existing: Api, count: Any) -> None:
    body = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=updateReplicaCount",
        json={"replicaCount": count},
        headers=AUTH,
    )
    assert body["details"] == {"field": "replicaCount"}


@pytest.mark.parametrize(
    ("act", "body", "field"),
    [
        ("expand", {}, "size"),
        ("expand", {"size": "-1"}, "size"),
        ("expand", {"size": "1G"}, "size"),
        ("expand", {"size": "2Gi", "more": 1}, "more"),
        ("snapshotCreate", {"name": "../x"}, "name"),
        ("snapshotCreate", {"name": "a/b"}, "name"),
        ("snapshotCreate", {"labels": {"k": 5}}, "labels"),
        ("snapshotCreate", {"labels": ["x"]}, "labels"),
        ("snapshotDelete", {}, "name"),
        ("snapshotDelete", {"name": "x" * 300}, "name"),
        ("snapshotRevert", {"name": "a\x00b"}, "name"),
        ("snapshotList", {"x": 1}, "x"),
        ("salvage", {}, "names"),
        ("salvage", {"names": []}, "names"),
        ("salvage", {"names": ["../x"]}, "names"),
        ("salvage", {"names": "v-r-1"}, "names"),
        ("attach", {"hostId": "n1", "attachmentID": "../x"}, "attachmentID"),
        ("detach", {"forceDetach": "yes"}, "forceDetach"),
    ],
)
async def test_bad_action_bodies_are_refused(
    existing: Api, act: str, body: dict[str, Any], field: str
) -> None:
    answer = await refused(existing, "POST", f"/v1/volumes/v?action={act}", json=body, headers=AUTH)
    assert answer["details"] == {"field": field}


async def test_unknown_actions_name_the_known_ones(existing: Api) -> None:
    answer = await refused(existing, "POST", "/v1/volumes/v?action=explode", json={}, headers=AUTH)
    assert "snapshotCreate" in answer["message"]
    assert "updateReplicaCount" in answer["message"]


async def test_an_expansion_never_shrinks(existing: Api) -> None:
    answer = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=expand",
        json={"size": "512Mi"},
        headers=AUTH,
        status=422,
    )
    assert answer["code"] == "FailedPrecondition"
    assert "cannot shrink" in answer["message"]


async def test_expanding_to_the_same_size_changes_nothing(existing: Api) -> None:
    before = await existing.state()
    response = await existing.post("/v1/volumes/v?action=expand", {"size": "1Gi"})
    assert response.status_code == 200
    assert await existing.state() == before


async def test_operations_needing_an_engine_answer_503_without_a_node_up(existing: Api) -> None:
    """No node holds a lease: nothing can attach the volume; no ticket is left behind."""
    for act, body in (
        ("snapshotCreate", {"name": "s1"}),
        ("snapshotList", {}),
        ("snapshotPurge", {}),
        ("expand", {"size": "2Gi"}),
    ):
        answer = await refused(
            existing, "POST", f"/v1/volumes/v?action={act}", json=body, headers=AUTH, status=503
        )
        assert answer["code"] == "Unavailable"
        assert "no node is up" in answer["message"]


async def test_salvage_checks_the_replicas(existing: Api) -> None:
    await add_replica(existing, "v-r-1", failed=True)
    await add_replica(existing, "v-r-2", failed=False)
    unknown = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=salvage",
        json={"names": ["v-r-9"]},
        headers=AUTH,
        status=404,
    )
    assert "v-r-9" in unknown["message"]
    working = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=salvage",
        json={"names": ["v-r-1"]},
        headers=AUTH,
        status=422,
    )
    assert working["code"] == "FailedPrecondition"
    assert "v-r-2" in working["message"]


async def test_salvage_unfails_the_named_replicas(existing: Api) -> None:
    await add_replica(existing, "v-r-1", failed=True)
    await add_replica(existing, "v-r-2", failed=True)
    response = await existing.post("/v1/volumes/v?action=salvage", {"names": ["v-r-1"]})
    assert response.status_code == 200, response.text
    salvaged = await existing.objects.get(Replica, "v-r-1")
    assert salvaged.spec.failed_at is None
    assert salvaged.spec.salvage_requested
    assert (await existing.objects.get(Replica, "v-r-2")).failed


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_volume_filters_are_refused(existing: Api, name: str) -> None:
    for path in ("/v1/replicas", "/v1/engines"):
        response = await existing.client.get(path, params={"volume": name})
        assert response.status_code == 400, response.text


async def test_replicas_and_engines_are_listed_per_volume(existing: Api) -> None:
    await add_replica(existing, "v-r-1", failed=False)
    listed = await existing.client.get("/v1/replicas", params={"volume": "v"})
    assert [d["metadata"]["name"] for d in listed.json()["data"]] == ["v-r-1"]
    other = await existing.client.get("/v1/replicas", params={"volume": "w"})
    assert other.json()["data"] == []
    one = await existing.client.get("/v1/replicas/v-r-1")
    assert one.json()["spec"]["volumeName"] == "v"
    assert (await existing.client.get("/v1/engines")).json()["data"] == []
    assert (await existing.client.get("/v1/engines/v-e-0")).status_code == 404


async def test_the_attachment_is_readable(existing: Api) -> None:
    await existing.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    response = await existing.client.get("/v1/volumeattachments/v")
    assert response.status_code == 200
    tickets = response.json()["spec"]["attachmentTickets"]
    assert tickets["lhtrio-api"]["nodeID"] == "n1"
    assert (await existing.objects.get(VolumeAttachment, "v")).spec.volume == "v"
