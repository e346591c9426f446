"""Bad input gets a clear 4xx and changes nothing: every request below is refused, and the
store's revision and every document are the same after it as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import AUTH, Api

GiB = 1 << 30

HOSTILE_NAMES = ["../x", "a/b", "", "x" * 300, "a\x00b", "-x", ".hidden", "a b", "é"]
NOT_NAMES: list[Any] = [5, None, True, ["v"], {"v": 1}]


@pytest.fixture
async def existing(api: Api) -> Api:
    """A volume ``v`` (on no node), and a setting set, so a refused request has things to spoil."""
    created = await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    assert created.status_code == 201
    put = await api.client.put("/v1/settings/auto-salvage", json={"value": "false"}, headers=AUTH)
    assert put.status_code == 200
    return api


async def refused(
    api: Api, method: str, path: str, *, status: int = 400, **kw: Any
) -> dict[str, Any]:
    """Send the request; assert it is answered ``status`` with an error body and changed nothing."""
    before = await api.state()
    listed = (await api.client.get("/v1/volumes")).json()
    response = await api.client.request(method, path, **kw)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}
    assert isinstance(body["details"], dict)
    assert body["message"]
    assert await api.state() == before
    assert (await api.client.get("/v1/volumes")).json() == listed  # the listing after, too
    return body


def create(body: Any) -> dict[str, Any]:
    return {"json": body, "headers": AUTH}


@pytest.mark.parametrize("name", HOSTILE_NAMES + NOT_NAMES)
async def test_hostile_volume_names_are_refused(existing: Api, name: Any) -> None:
    body = await refused(existing, "POST", "/v1/volumes", **create({"name": name, "size": "1Gi"}))
    assert body["code"] == "InvalidArgument"
    assert body["details"] == {"field": "name"}


@pytest.mark.parametrize("name", ["..%2Fx", "a%2Fb", "x" * 300, "a%00b", "-x", "a%20b"])
@pytest.mark.parametrize(
    ("method", "suffix", "kw"),
    [
        ("GET", "", {}),
        ("DELETE", "", {"headers": AUTH}),
        ("POST", "?action=attach", {"json": {"hostId": "n1"}, "headers": AUTH}),
        ("POST", "?action=detach", {"json": {}, "headers": AUTH}),
    ],
)
async def test_hostile_names_in_the_path_are_refused(
    existing: Api, name: str, method: str, suffix: str, kw: dict[str, Any]
) -> None:
    body = await refused(existing, method, f"/v1/volumes/{name}{suffix}", **kw)
    assert body["code"] == "InvalidArgument"
    assert body["details"] == {"field": "name"}


async def test_a_name_with_slashes_in_the_path_is_refused_not_routed(existing: Api) -> None:
    body = await refused(existing, "GET", "/v1/volumes/v/x")
    assert body["details"] == {"field": "name"}
    await refused(existing, "DELETE", "/v1/volumes/v/x", headers=AUTH)
    await refused(existing, "POST", "/v1/volumes/v/x?action=detach", json={}, headers=AUTH)


@pytest.mark.parametrize(
    "size",
    [
        -4096, "-4096", -1, 0, "0", "0Gi",  # negative, zero
        "abc", "", " ", "1.5Gi", "Gi", "10 Gibibytes", "0x1000", "1e9",  # not a number
        1.5, 4096.0, True, None, [4096], {"bytes": 4096},  # not a number of bytes
        4095, "4097", "1G", "1000",  # not a multiple of 4096
        "1" * 5000, 10**30, "9" * 40,  # absurd
    ],
)  # fmt: skip
async def test_bad_sizes_are_refused(existing: Api, size: Any) -> None:
    body = await refused(
        existing,
        "POST",
        "/v1/volumes",
        **create({"name": "w", "size": size, "numberOfReplicas": 1}),
    )
    assert body["details"] == {"field": "size"}


async def test_a_size_not_a_multiple_of_the_block_names_sizes_that_are(existing: Api) -> None:
    body = await refused(existing, "POST", "/v1/volumes", **create({"name": "w", "size": "1G"}))
    assert "1Gi (1073741824)" in body["message"]


@pytest.mark.parametrize("replicas", [0, 100, -1, 21, "3", True, 2.0, None, [3]])
async def test_bad_replica_counts_are_refused(existing: Api, replicas: Any) -> None:
    body = await refused(
        existing,
        "POST",
        "/v1/volumes",
        **create({"name": "w", "size": "1Gi", "numberOfReplicas": replicas}),
    )
    assert body["details"] == {"field": "numberOfReplicas"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "w", "size": "1Gi", "frontend": "nbd"}, "frontend"),
        ({"name": "w", "size": "1Gi", "numberOfReplica": 2}, "numberOfReplica"),
        ({"size": "1Gi"}, "name"),
        ({"name": "w"}, "size"),
        ({}, "name"),
    ],
)
async def test_unknown_and_missing_fields_are_refused(
    existing: Api, body: dict[str, Any], field: str
) -> None:
    answer = await refused(existing, "POST", "/v1/volumes", **create(body))
    assert answer["details"] == {"field": field}
    assert repr(field) in answer["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"42",
        b'"v"',
        b"null",
        b'{"name": "w", "size": "1Gi"',  # cut short
        b'{"name": "w", "size": NaN}',
        b'{"name": "w", "size": Infinity}',
        b'{"name": "w", "name": "x", "size": "1Gi"}',  # a key twice
        b'{"name": "\xff\xfe", "size": "1Gi"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nesting that exhausts the parser
    ],
)
async def test_bodies_that_are_not_one_json_object_are_refused(existing: Api, raw: bytes) -> None:
    answer = await refused(existing, "POST", "/v1/volumes", content=raw, headers=AUTH)
    assert answer["code"] == "InvalidArgument"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hostId": "../x"}, "hostId"),
        ({"hostId": "a/b"}, "hostId"),
        ({"hostId": ""}, "hostId"),
        ({"hostId": "n" * 300}, "hostId"),
        ({"hostId": "n\x001"}, "hostId"),
        ({"hostId": 1}, "hostId"),
        ({}, "hostId"),
        ({"hostId": "n1", "force": True}, "force"),
    ],
)
async def test_bad_attach_bodies_are_refused(
    existing: Api, body: dict[str, Any], field: str
) -> None:
    answer = await refused(existing, "POST", "/v1/volumes/v?action=attach", **create(body))
    assert answer["details"] == {"field": field}


@pytest.mark.parametrize("body", [{"hostId": "../x"}, {"hostId": 3}, {"node": "n1"}])
async def test_bad_detach_bodies_are_refused(existing: Api, body: dict[str, Any]) -> None:
    await existing.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    await refused(existing, "POST", "/v1/volumes/v?action=detach", **create(body))


@pytest.mark.parametrize("action", ["", "?action=", "?action=explode", "?actions=attach"])
async def test_unknown_actions_are_refused(existing: Api, action: str) -> None:
    answer = await refused(existing, "POST", f"/v1/volumes/v{action}", **create({"hostId": "n1"}))
    assert answer["details"] == {"field": "action"}
    assert "attach, detach" in answer["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": "0"}, "value"),  # out of range
        ({"value": "100"}, "value"),
        ({"value": "three"}, "value"),
        ({"value": " 3"}, "value"),
        ({"value": 3}, "value"),  # values are text, as Longhorn's
        ({"value": None}, "value"),
        ({}, "value"),
        ({"value": "3", "applied": True}, "applied"),
    ],
)
async def test_bad_setting_values_are_refused(
    existing: Api, body: dict[str, Any], field: str
) -> None:
    answer = await refused(
        existing, "PUT", "/v1/settings/default-replica-count", json=body, headers=AUTH
    )
    assert answer["details"] == {"field": field}


@pytest.mark.parametrize("name", ["..%2Fx", "a%2Fb", "x" * 300, "a%00b"])
async def test_hostile_setting_names_are_refused(existing: Api, name: str) -> None:
    await refused(existing, "GET", f"/v1/settings/{name}")
    await refused(existing, "PUT", f"/v1/settings/{name}", json={"value": "1"}, headers=AUTH)


async def test_unknown_paths_and_methods_answer_json(existing: Api) -> None:
    missing = await refused(existing, "GET", "/v1/nothing", status=404)
    assert missing["code"] == "NotFound"
    wrong = await refused(existing, "PATCH", "/v1/volumes", status=405, headers=AUTH)
    assert wrong["code"] == "MethodNotAllowed"
    allowed = (await existing.client.patch("/v1/volumes", headers=AUTH)).headers["allow"]
    assert set(allowed.split(", ")) == {"GET", "HEAD", "POST"}
    await refused(existing, "PUT", "/v1/volumes/v", status=405, json={}, headers=AUTH)
