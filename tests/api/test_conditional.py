"""``If-Match`` on every change of an existing object: the change is made only if the object is
at the version the caller read; a stale version is 409 ``Conflict`` with the object's current
``resourceVersion`` in ``details``, and changes nothing; a malformed one is 400."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lhtrio.models.cluster import ObjectMeta, Replica
from lhtrio.models.cluster.replica import ReplicaSpec
from tests.api.conftest import AUTH, Api
from tests.api.test_bad_input import refused

T0 = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)

#: (method, path, body, the path to read the object's version from)
CHANGES: list[tuple[str, str, Any, str]] = [
    ("DELETE", "/v1/volumes/v", None, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=attach", {"hostId": "n1"}, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=detach", {}, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=updateReplicaCount", {"replicaCount": 2}, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=updateLabels", {"labels": {"a": "b"}}, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=updateDataLocality", {"dataLocality": "best-effort"},
     "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=salvage", {"names": ["v-r-1"]}, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=snapshotCreate", {}, "/v1/volumes/v"),
    ("POST", "/v1/volumes/v?action=expand", {"size": "2Gi"}, "/v1/volumes/v"),
    ("DELETE", "/v1/replicas/v-r-1", None, "/v1/replicas/v-r-1"),
    ("POST", "/v1/nodes/n1?action=nodeUpdate", {"allowScheduling": False}, "/v1/nodes/n1"),
    ("POST", "/v1/nodes/n1?action=diskUpdate", {"disks": {"d": {"path": "/mnt/d"}}},
     "/v1/nodes/n1"),
    ("PUT", "/v1/settings/auto-salvage", {"value": "false"}, "/v1/settings/auto-salvage"),
]  # fmt: skip


@pytest.fixture
async def existing(api: Api) -> Api:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    for name in ("v-r-1", "v-r-2"):
        await api.objects.create(
            Replica(
                meta=ObjectMeta(name=name),
                spec=ReplicaSpec(volume_name="v", volume_size=1 << 30, node_id="n1", healthy_at=T0),
            )
        )
    put = await api.client.put("/v1/settings/auto-salvage", json={"value": "true"})
    assert put.status_code == 200
    return api


async def version_of(api: Api, path: str) -> str:
    version: str = (await api.client.get(path)).json()["metadata"]["resourceVersion"]
    return version


@pytest.mark.parametrize("change", CHANGES, ids=lambda x: str(x)[:50])
@pytest.mark.parametrize("spelling", ['"{}"', "{}"])
async def test_a_stale_version_is_409_with_the_current_one(
    existing: Api, change: tuple[str, str, Any, str], spelling: str
) -> None:
    method, path, body, read = change
    current = await version_of(existing, read)
    stale = spelling.format(int(current) - 1)
    answer = await refused(
        existing, method, path, json=body, headers={**AUTH, "If-Match": stale}, status=409
    )
    assert answer["code"] == "Conflict"
    assert answer["details"] == {"resourceVersion": current}
    assert current in answer["message"]


CURRENT_OK = [c for c in CHANGES if "snapshotCreate" not in c[1] and "expand" not in c[1]
              and "salvage" not in c[1]]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "read"), CURRENT_OK, ids=lambda x: str(x)[:50])
async def test_the_current_version_lets_the_change_through(
    existing: Api, method: str, path: str, body: Any, read: str
) -> None:
    current = await version_of(existing, read)  # (v-r-2 is healthy too: v-r-1 may go)
    response = await existing.client.request(
        method, path, json=body, headers={"If-Match": f'"{current}"'}
    )
    assert response.status_code in (200, 202), response.text


async def test_star_is_no_condition(existing: Api) -> None:
    response = await existing.post(
        "/v1/volumes/v?action=updateReplicaCount", {"replicaCount": 1}, headers={"If-Match": "*"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header", ['W/"1"', "abc", "-1", "1, 2", '"1', "1.0", '""1""', ""])
async def test_a_malformed_version_is_400(existing: Api, header: str) -> None:
    answer = await refused(
        existing,
        "POST",
        "/v1/volumes/v?action=updateReplicaCount",
        json={"replicaCount": 1},
        headers={**AUTH, "If-Match": header},
    )
    assert answer["details"] == {"field": "If-Match"}


async def test_an_unset_setting_is_set_on_condition_it_is_still_unset(api: Api) -> None:
    """A setting never set is at no version: ``If-Match: ""`` sets it only then."""
    listed = await api.client.get("/v1/settings/default-replica-count")
    assert listed.json()["metadata"]["resourceVersion"] == ""
    first = await api.client.put(
        "/v1/settings/default-replica-count", json={"value": "2"}, headers={"If-Match": '""'}
    )
    assert first.status_code == 200, first.text
    again = await refused(
        api,
        "PUT",
        "/v1/settings/default-replica-count",
        json={"value": "1"},
        headers={**AUTH, "If-Match": '""'},
        status=409,
    )
    assert again["details"] == {"resourceVersion": first.json()["metadata"]["resourceVersion"]}


async def test_a_change_racing_in_between_is_never_written_over(existing: Api) -> None:
    """Two clients read version N; the first change wins, the second is refused."""
    current = await version_of(existing, "/v1/volumes/v")
    headers = {"If-Match": current}
    first = await existing.post(
        "/v1/volumes/v?action=updateLabels", {"labels": {"by": "first"}}, headers=headers
    )
    assert first.status_code == 200
    second = await existing.post(
        "/v1/volumes/v?action=updateLabels", {"labels": {"by": "second"}}, headers=headers
    )
    assert second.status_code == 409
    assert second.json()["details"] == {
        "resourceVersion": first.json()["metadata"]["resourceVersion"]
    }
    volume = await existing.client.get("/v1/volumes/v")
    assert volume.json()["metadata"]["labels"] == {"by": "first"}
