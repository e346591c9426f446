"""What holds for every operation of the document: without the token it is 401 (but for the
public document), and while the store is unreachable it is 503 ``StoreUnavailable`` — changing
nothing either way. One well-formed request per operation; a new operation needs one here."""

from __future__ import annotations

from typing import Any

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
    "getOpenApi": ("GET", "/v1/openapi.json", None),
}


def test_every_operation_has_a_request_here() -> None:
    assert set(REQUESTS) == {operation.id for operation in OPERATIONS}


@pytest.fixture
async def existing(api: Api) -> Api:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    return api


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.id)
async def test_without_the_token_it_is_401(existing: Api, operation: Any) -> None:
    method, path, body = REQUESTS[operation.id]
    before = await existing.state()
    response = await existing.bare.request(method, path, json=body)
    assert response.status_code == (200 if operation.public else 401), response.text
    assert await existing.state() == before


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.id)
async def test_while_the_store_is_down_it_is_503(existing: Api, operation: Any) -> None:
    method, path, body = REQUESTS[operation.id]
    before = await existing.state()
    existing.store.broken = True
    response = await existing.client.request(method, path, json=body)
    existing.store.broken = False
    if operation.public:
        assert response.status_code == 200  # the document needs no store
        return
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "StoreUnavailable"
    assert "disk I/O error" in response.json()["message"]
    assert await existing.state() == before
