"""What holds for every operation of the document: without the token it is 401 (but for the
public ones: the document and the health probes), and while the store is unreachable it is 503
``StoreUnavailable`` (but for what needs no store, and readiness, which says it is not ready) —
changing nothing either way. One well-formed request per operation, and the watch of every
collection that takes ``?watch=true`` (both refusals come before a stream would start); a new
operation needs one here."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from lhtrio.api.surface import OPERATIONS
from tests.api.conftest import Api

#: operationId -> (method, path, body): a well-formed request of each operation.
REQUESTS: dict[str, tuple[str, str, Any]] = {
    "listVolumes": ("GET", "/v1/volumes?state=detached", None),
    "createVolume": ("POST", "/v1/volumes", {"name": "w", "size": "1Gi"}),
    "getVolume": ("GET", "/v1/volumes/v", None),
    "deleteVolume": ("DELETE", "/v1/volumes/v", None),
    "volumeAction": ("POST", "/v1/volumes/v?action=updateLabels", {"labels": {"a": "b"}}),
    "listReplicas": ("GET", "/v1/replicas?node=n1", None),
    "getReplica": ("GET", "/v1/replicas/v-r-1", None),
    "deleteReplica": ("DELETE", "/v1/replicas/v-r-1", None),
    "listEngines": ("GET", "/v1/engines?volume=v", None),
    "getEngine": ("GET", "/v1/engines/v-e-0", None),
    "listVolumeAttachments": ("GET", "/v1/volumeattachments", None),
    "getVolumeAttachment": ("GET", "/v1/volumeattachments/v", None),
    "listNodes": ("GET", "/v1/nodes?labelSelector=a", None),
    "getNode": ("GET", "/v1/nodes/n1", None),
    "nodeAction": ("POST", "/v1/nodes/n1?action=nodeUpdate", {"allowScheduling": False}),
    "listSettings": ("GET", "/v1/settings", None),
    "getSetting": ("GET", "/v1/settings/auto-salvage", None),
    "putSetting": ("PUT", "/v1/settings/auto-salvage", {"value": "false"}),
    "listEvents": ("GET", "/v1/events?kind=Volume&name=v", None),
    "listVolumeEvents": ("GET", "/v1/volumes/v/events", None),
    "watch": ("GET", "/v1/watch?kind=Volume", None),
    "healthz": ("GET", "/healthz", None),
    "readyz": ("GET", "/readyz", None),
    "metrics": ("GET", "/metrics", None),
    "getOpenApi": ("GET", "/v1/openapi.json", None),
}
#: The watch of each collection that can be watched, by the list's operationId.
WATCHES: dict[str, str] = {
    o.id: f"{o.path}?watch=true&labelSelector=a" for o in OPERATIONS if o.watch
}
#: What answers while the store is down, public or not: (status, the start of its text).
NO_STORE_NEEDED: dict[str, tuple[int, str]] = {
    "getOpenApi": (200, "{"),
    "healthz": (200, "ok"),
    "readyz": (503, "not ready: the store failed: "),
}


def test_every_operation_has_a_request_here() -> None:
    assert set(REQUESTS) == {operation.id for operation in OPERATIONS}


@pytest.fixture
async def existing(api: Api) -> Api:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    return api


class Call(NamedTuple):
    """One request of the tests below; ``name`` the operation's id (``ID?watch`` for a watch)."""

    name: str
    method: str
    path: str
    body: Any
    public: bool


def calls() -> list[Call]:
    """Every request above: the operations', the watches'."""
    out = [Call(o.id, *REQUESTS[o.id], o.public) for o in OPERATIONS]
    out += [Call(f"{name}?watch", "GET", path, None, False) for name, path in WATCHES.items()]
    return out


@pytest.mark.parametrize("call", calls(), ids=lambda c: c.name)
async def test_without_the_token_it_is_401(existing: Api, call: Call) -> None:
    before = await existing.state()
    response = await existing.bare.request(call.method, call.path, json=call.body)
    assert response.status_code == (200 if call.public else 401), response.text
    assert await existing.state() == before


@pytest.mark.parametrize("call", calls(), ids=lambda c: c.name)
async def test_while_the_store_is_down_it_is_503(existing: Api, call: Call) -> None:
    before = await existing.state()
    existing.store.broken = True
    response = await existing.client.request(call.method, call.path, json=call.body)
    existing.store.broken = False
    if call.name in NO_STORE_NEEDED:
        status, text = NO_STORE_NEEDED[call.name]
        assert response.status_code == status, response.text
        assert response.text.startswith(text)
        return
    assert not call.public
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "StoreUnavailable"
    assert "disk I/O error" in response.json()["message"]
    assert await existing.state() == before
