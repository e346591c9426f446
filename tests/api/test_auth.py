"""Every call needs the bearer token (reads too, unless the node serves them anonymously: watches
and metrics as well), but for the OpenAPI document and the health probes."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Node, ObjectMeta
from tests.api.conftest import AUTH, TOKEN, Api
from tests.api.sse_client import curl

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
    ("POST", "/v1/volumes/v?action=updateLabels", {"labels": {"a": "b"}}),
    ("POST", "/v1/volumes/v?action=updateDataLocality", {"dataLocality": "best-effort"}),
    ("DELETE", "/v1/replicas/v-r-1", None),
    ("POST", "/v1/nodes/n1?action=nodeUpdate", {"allowScheduling": False}),
    ("POST", "/v1/nodes/n1?action=diskUpdate", {"disks": {}}),
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
    response = await existing.bare.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert await existing.state() == before


async def test_the_scheme_is_case_insensitive(existing: Api) -> None:
    response = await existing.bare.put(
        "/v1/settings/auto-salvage",
        json={"value": "false"},
        headers={"Authorization": f"bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text


async def test_the_message_says_how_to_authenticate(existing: Api) -> None:
    response = await existing.bare.delete("/v1/volumes/v")
    assert "Authorization: Bearer" in response.json()["message"]
    assert "api-token" in response.json()["message"]


READS = ["/v1/volumes", "/v1/volumes/v", "/v1/nodes", "/v1/nodes/n1", "/v1/settings",
         "/v1/settings/auto-salvage", "/v1/replicas", "/v1/engines", "/v1/volumeattachments",
         "/v1/events", "/v1/volumes/v/events", "/metrics", "/v1/volumes?watch=true",
         "/v1/watch?kind=Node", "/v1/nothing"]  # fmt: skip
STREAMS = ("/v1/volumes?watch=true", "/v1/watch?kind=Node")


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("headers", WRONG)
async def test_reads_need_the_token(existing: Api, path: str, headers: dict[str, str]) -> None:
    response = await existing.bare.get(path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "Unauthorized"
    assert TOKEN not in response.text


@pytest.mark.parametrize("path", [p for p in READS[:-1] if p not in STREAMS])
async def test_reads_with_the_token_are_answered(existing: Api, path: str) -> None:
    assert (await existing.bare.get(path, headers=AUTH)).status_code == 200


@pytest.mark.parametrize("path", STREAMS)
@pytest.mark.real  # drives curl
async def test_a_watch_with_the_token_is_a_stream(existing: Api, path: str) -> None:
    async with curl(existing.url + path, token=TOKEN) as stream:
        assert (await stream.next()).event in {"ADDED", "BOOKMARK"}


async def test_the_openapi_document_needs_no_token(existing: Api) -> None:
    response = await existing.bare.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_the_probes_need_no_token(existing: Api, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await existing.bare.get(path, headers=headers)
        assert (response.status_code, response.text) == (200, "ok\n")


@pytest.fixture
async def anonymous_reads(nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    """The API served with read_anonymous (``lhtrio node --api-read-anonymous``)."""
    objects = Objects(MemoryStore())
    await objects.create(Node(meta=ObjectMeta(name="n1")))
    serve = functools.partial(serve_api, objects, "127.0.0.1", 0, token=TOKEN, read_anonymous=True)
    url = await nursery.start(serve)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    ["/v1/volumes", "/v1/nodes/n1", "/v1/settings", "/v1/replicas", "/v1/events", "/metrics"],
)
async def test_reads_may_be_anonymous(anonymous_reads: httpx.AsyncClient, path: str) -> None:
    assert (await anonymous_reads.get(path)).status_code == 200
    # a wrong token is no token: reads are open, whatever the header says
    assert (
        await anonymous_reads.get(path, headers={"Authorization": "Bearer x"})
    ).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS[:3])
async def test_with_anonymous_reads_changes_still_need_the_token(
    anonymous_reads: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    response = await anonymous_reads.request(method, path, json=body)
    assert response.status_code == 401
    listed = await anonymous_reads.get("/v1/volumes")
    assert listed.json() == {"data": []}
