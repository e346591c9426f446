"""Mutating calls need the bearer token; reads do not (yet: issue 19 adds the option)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import AUTH, TOKEN, Api

MUTATIONS: list[tuple[str, str, Any]] = [
    ("POST", "/v1/volumes", {"name": "w", "size": "1Gi"}),
    ("DELETE", "/v1/volumes/v", None),
    ("POST", "/v1/volumes/v?action=attach", {"hostId": "n1"}),
    ("POST", "/v1/volumes/v?action=detach", {}),
    ("POST", "/v1/volumes/v?action=snapshotCreate", {"name": "s"}),
    ("POST", "/v1/volumes/v?action=snapshotList", {}),
    ("POST", "/v1/volumes/v?action=snapshotRevert", {"name": "s"}),
    ("POST", "/v1/volumes/v?action=expand", {"size": "2Gi"}),
    ("POST", "/v1/volumes/v?action=updateReplicaCount", {"replicaCount": 1}),
    ("POST", "/v1/volumes/v?action=salvage", {"names": ["v-r-1"]}),
    ("PUT", "/v1/settings/default-replica-count", {"value": "2"}),
    ("POST", "/v1/volumes/nope?action=attach", {"hostId": "n1"}),  # 401 before 404
    ("POST", "/v1/volumes", {"name": "../x"}),  # 401 before 400
]

WRONG: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"X-Api-Token": TOKEN},
]


@pytest.fixture
async def existing(api: Api) -> Api:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    return api


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
@pytest.mark.parametrize("headers", WRONG)
async def test_mutations_without_the_token_are_401_and_change_nothing(
    existing: Api, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    before = await existing.state()
    response = await existing.client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert await existing.state() == before


async def test_the_scheme_is_case_insensitive(existing: Api) -> None:
    response = await existing.client.put(
        "/v1/settings/auto-salvage",
        json={"value": "false"},
        headers={"Authorization": f"bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text


async def test_the_message_says_how_to_authenticate(existing: Api) -> None:
    response = await existing.client.delete("/v1/volumes/v")
    assert "Authorization: Bearer" in response.json()["message"]
    assert "api-token" in response.json()["message"]


@pytest.mark.parametrize(
    "path", ["/v1/volumes", "/v1/volumes/v", "/v1/nodes", "/v1/nodes/n1", "/v1/settings",
             "/v1/settings/auto-salvage"],
)  # fmt: skip
async def test_reads_need_no_token(existing: Api, path: str) -> None:
    assert (await existing.client.get(path)).status_code == 200
    assert (await existing.client.get(path, headers=AUTH)).status_code == 200
