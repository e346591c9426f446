"""Nodes and their disks through Longhorn's node actions, and deleting one replica to force a
rebuild — over HTTP, each refusal a clear 4xx that changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lhtrio.models.cluster import Node, ObjectMeta, Replica
from lhtrio.models.cluster.node import DiskSpec, DiskStatus, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import ReplicaSpec
from tests.api.conftest import AUTH, Api
from tests.api.test_bad_input import refused

T0 = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
GiB = 1 << 30
HOSTILE_PATHS = ["..%2Fx", "a%2Fb", "x" * 300, "a%00b", "-x", "a%20b"]


@pytest.fixture
async def existing(api: Api) -> Api:
    """Node n3 with two disks (d2 unschedulable), a volume v with replicas on n3's disks."""
    await api.objects.create(
        Node(
            meta=ObjectMeta(name="n3", labels={"rack": "r1"}),
            spec=NodeSpec(
                disks={
                    "d1": DiskSpec(path="/mnt/d1", tags=("ssd",)),
                    "d2": DiskSpec(path="/mnt/d2", allow_scheduling=False),
                }
            ),
            status=NodeStatus(
                disk_status={
                    "d1": DiskStatus(disk_uuid="uuid-1"),
                    "d2": DiskStatus(disk_uuid="uuid-2"),
                }
            ),
        )
    )
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    for name, disk, healthy, failed in (
        ("v-r-1", "uuid-1", True, False),
        ("v-r-2", "uuid-1", False, True),
        ("v-r-3", "uuid-1", False, False),
    ):
        await api.objects.create(
            Replica(
                meta=ObjectMeta(name=name, finalizers=("lhtrio.io/replica-data",)),
                spec=ReplicaSpec(
                    volume_name="v",
                    volume_size=GiB,
                    node_id="n3",
                    disk_id=disk,
                    healthy_at=T0 if healthy else None,
                    failed_at=T0 if failed else None,
                ),
            )
        )
    return api


async def node_action(api: Api, action: str, body: Any) -> Any:
    response = await api.post(f"/v1/nodes/n3?action={action}", body)
    assert response.status_code == 200, response.text
    return response.json()


# --- nodeUpdate -----------------------------------------------------------------------------


async def test_a_node_update_changes_what_it_gives(existing: Api) -> None:
    answer = await node_action(
        existing, "nodeUpdate", {"allowScheduling": False, "tags": ["b", "a", "b"], "zone": "z1"}
    )
    spec = answer["spec"]
    assert (spec["allowScheduling"], spec["tags"], spec["zone"], spec["region"]) == (
        False, ["a", "b"], "z1", "",
    )  # fmt: skip
    assert spec["disks"]["d1"]["tags"] == ["ssd"]  # untouched
    stored = await existing.objects.get(Node, "n3")
    assert stored.spec.tags == ("a", "b")
    evict = await node_action(existing, "nodeUpdate", {"evictionRequested": True})
    assert evict["spec"]["evictionRequested"]


async def test_eviction_with_scheduling_on_is_422(existing: Api) -> None:
    answer = await refused(
        existing,
        "POST",
        "/v1/nodes/n3?action=nodeUpdate",
        json={"evictionRequested": True},
        headers=AUTH,
        status=422,
    )
    assert "scheduling off" in answer["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allowScheduling": "false"}, "allowScheduling"),
        ({"tags": "ssd"}, "tags"),
        ({"tags": ["a b"]}, "tags"),
        ({"tags": ["../x"]}, "tags"),
        ({"zone": "zone a"}, "zone"),
        ({"zone": "-z"}, "zone"),
        ({"region": 1}, "region"),
        ({"name": "n4"}, "name"),
    ],
)
async def test_bad_node_updates_are_refused(
    existing: Api, body: dict[str, Any], field: str
) -> None:
    answer = await refused(
        existing, "POST", "/v1/nodes/n3?action=nodeUpdate", json=body, headers=AUTH
    )
    assert answer["details"] == {"field": field}


@pytest.mark.parametrize("action", ["", "?action=update", "?action=diskupdate"])
async def test_unknown_node_actions_are_refused(existing: Api, action: str) -> None:
    answer = await refused(existing, "POST", f"/v1/nodes/n3{action}", json={}, headers=AUTH)
    assert answer["details"] == {"field": "action"}
    assert "nodeUpdate, diskUpdate" in answer["message"]


async def test_an_unknown_node_is_404(existing: Api) -> None:
    await refused(
        existing, "POST", "/v1/nodes/n9?action=nodeUpdate", json={}, headers=AUTH, status=404
    )


@pytest.mark.parametrize("name", HOSTILE_PATHS)
async def test_hostile_node_names_are_refused(existing: Api, name: str) -> None:
    await refused(existing, "POST", f"/v1/nodes/{name}?action=nodeUpdate", json={}, headers=AUTH)


# --- diskUpdate -----------------------------------------------------------------------------


async def test_a_disk_is_added_and_an_empty_unschedulable_one_removed(existing: Api) -> None:
    answer = await node_action(
        existing,
        "diskUpdate",
        {"disks": {"d1": {}, "d3": {"path": "/mnt/d3", "storageReserved": "1Gi", "tags": ["hdd"]}}},
    )
    disks = answer["spec"]["disks"]
    assert sorted(disks) == ["d1", "d3"]
    assert disks["d1"]["tags"] == ["ssd"]  # kept: the request left it out
    assert disks["d3"] == {
        "path": "/mnt/d3",
        "allowScheduling": True,
        "evictionRequested": False,
        "storageReserved": GiB,
        "tags": ["hdd"],
    }


@pytest.mark.parametrize(
    ("disks", "problem"),
    [
        ({"d2": {}}, "still allows scheduling"),  # d1 left out: it allows scheduling
        ({"d1": {"path": "/mnt/elsewhere"}, "d2": {}}, "cannot change"),
        ({"d1": {"evictionRequested": True}, "d2": {}}, "scheduling off"),
    ],
)
async def test_disk_changes_the_disk_rules_out_are_422(
    existing: Api, disks: dict[str, Any], problem: str
) -> None:
    answer = await refused(
        existing,
        "POST",
        "/v1/nodes/n3?action=diskUpdate",
        json={"disks": disks},
        headers=AUTH,
        status=422,
    )
    assert problem in answer["message"]


async def test_a_disk_holding_replicas_is_not_removed(existing: Api) -> None:
    await node_action(
        existing, "diskUpdate", {"disks": {"d1": {"allowScheduling": False}, "d2": {}}}
    )
    answer = await refused(
        existing,
        "POST",
        "/v1/nodes/n3?action=diskUpdate",
        json={"disks": {"d2": {}}},
        headers=AUTH,
        status=422,
    )
    assert "v-r-1, v-r-2, v-r-3" in answer["message"]


@pytest.mark.parametrize(
    ("disks", "field"),
    [
        ({"d1": {}, "d2": {}, "d3": {}}, "disks"),  # new without a path
        ({"d1": {}, "d2": {}, "d3": {"path": "/mnt/d1"}}, "disks"),  # one directory twice
        ({"d1": {}, "d2": {}, "d3": {"path": "relative"}}, "disks.d3.path"),
        ({"d1": {}, "d2": {}, "d3": {"path": "/a\x00b"}}, "disks.d3.path"),
        ({"d1": {"storageReserved": -1}, "d2": {}}, "disks.d1.storageReserved"),
        ({"d1": {"storageReserved": "lots"}, "d2": {}}, "disks.d1.storageReserved"),
        ({"d1": {"size": 1}, "d2": {}}, "disks.d1.size"),
        ({"../x": {"path": "/mnt/x"}}, "disks.../x"),
        ({"d1": []}, "disks.d1"),
    ],
)
async def test_bad_disk_updates_are_refused(
    existing: Api, disks: dict[str, Any], field: str
) -> None:
    answer = await refused(
        existing, "POST", "/v1/nodes/n3?action=diskUpdate", json={"disks": disks}, headers=AUTH
    )
    if field == "disks":
        assert answer["code"] == "InvalidArgument"
    else:
        assert answer["details"] == {"field": field}


async def test_nodes_are_listed_by_label(existing: Api) -> None:
    response = await existing.client.get("/v1/nodes?labelSelector=rack=r1")
    assert [n["metadata"]["name"] for n in response.json()["data"]] == ["n3"]


# --- deleting a replica ---------------------------------------------------------------------


async def test_a_replica_is_deleted_to_force_a_rebuild(existing: Api) -> None:
    response = await existing.client.delete("/v1/replicas/v-r-3")
    assert response.status_code == 202, response.text
    assert response.json()["metadata"]["deletionTimestamp"]  # its node removes its data first
    again = await existing.client.delete("/v1/replicas/v-r-3")
    assert again.status_code == 202
    failed = await existing.client.delete("/v1/replicas/v-r-2")
    assert failed.status_code == 202


async def test_the_last_healthy_replica_is_not_deleted(existing: Api) -> None:
    answer = await refused(existing, "DELETE", "/v1/replicas/v-r-1", headers=AUTH, status=409)
    assert answer["code"] == "Conflict"
    assert "last healthy replica" in answer["message"]
    assert not (await existing.objects.get(Replica, "v-r-1")).meta.deleting


async def test_deleting_an_unknown_replica_is_404(existing: Api) -> None:
    await refused(existing, "DELETE", "/v1/replicas/v-r-9", headers=AUTH, status=404)


@pytest.mark.parametrize("name", HOSTILE_PATHS)
async def test_hostile_replica_names_are_refused(existing: Api, name: str) -> None:
    await refused(existing, "DELETE", f"/v1/replicas/{name}", headers=AUTH)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("node=n3", ["v-r-1", "v-r-2", "v-r-3"]),
        ("node=n1", []),
        ("volume=v&node=n3", ["v-r-1", "v-r-2", "v-r-3"]),
        ("volume=w", []),
    ],
)
async def test_replicas_are_listed_by_node_and_volume(
    existing: Api, query: str, expected: list[str]
) -> None:
    response = await existing.client.get(f"/v1/replicas?{query}")
    assert [r["metadata"]["name"] for r in response.json()["data"]] == expected


@pytest.mark.parametrize("query", ["node=a/b", "node=", "volume=..", "labelSelector=!"])
async def test_bad_member_filters_are_refused(existing: Api, query: str) -> None:
    for kind in ("replicas", "engines"):
        await refused(existing, "GET", f"/v1/{kind}?{query}")


async def test_attachments_are_listed(existing: Api) -> None:
    assert (await existing.post("/v1/volumes/v?action=attach", {"hostId": "n1"})).status_code == 200
    listed = (await existing.client.get("/v1/volumeattachments")).json()["data"]
    assert [a["metadata"]["name"] for a in listed] == ["v"]
    assert list(listed[0]["spec"]["attachmentTickets"]) == ["lhtrio-api"]
