"""Oversized bodies (413), a failing store (503), and the server's lifetime."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.api.app import MAX_BODY
from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from tests.api.conftest import AUTH, Api


async def post_raw(api: Api, headers: str, body: Iterable[bytes]) -> tuple[bytes, Any]:
    """POST /v1/volumes spoken by hand over a socket, the body sent while the answer is read;
    the answer's head (status line and headers, in lowercase) and its JSON body.

    By hand because a server that answers before the body ends stops reading it: httpx then
    leaves its body generator unfinished, which trio reports when it is collected.
    """
    host, _, port = api.url.removeprefix("http://").rpartition(":")
    request = (
        f"POST /v1/volumes HTTP/1.1\r\nHost: lhtrio\r\n{headers}"
        f"Authorization: {AUTH['Authorization']}\r\nContent-Type: application/json\r\n\r\n"
    )
    answer = bytearray()

    async def receive() -> None:
        data = await stream.receive_some()
        assert data, f"the server closed in the middle of its answer: {bytes(answer)!r}"
        answer.extend(data)

    stream = await trio.open_tcp_stream(host, int(port))
    async with stream, trio.open_nursery() as nursery:

        async def send() -> None:
            try:
                await stream.send_all(request.encode())
                for part in body:
                    await stream.send_all(part)
            except trio.BrokenResourceError:
                pass  # the server stopped reading once it answered

        nursery.start_soon(send)
        with trio.fail_after(30):
            while b"\r\n\r\n" not in answer:
                await receive()
            head = bytes(answer).partition(b"\r\n\r\n")[0]
            found = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
            assert found, head
            while len(answer) < len(head) + 4 + int(found[1]):
                await receive()
        nursery.cancel_scope.cancel()
    return head.lower(), json.loads(bytes(answer)[len(head) + 4 :])


async def test_a_body_over_one_mib_is_413_and_the_server_still_serves(api: Api) -> None:
    before = await api.state()
    size = 2 * MAX_BODY
    head, answer = await post_raw(
        api, f"Content-Length: {size}\r\n", [b" " * 65536] * (size // 65536)
    )
    assert head.startswith(b"http/1.1 413 "), head
    assert b"\r\nconnection: close" in head  # the rest of the body was never read
    assert answer["code"] == "RequestEntityTooLarge"
    assert answer["details"] == {"limit": MAX_BODY}
    assert await api.state() == before
    assert (await api.client.get("/v1/volumes")).status_code == 200


async def test_a_streamed_body_over_one_mib_is_413_too(api: Api) -> None:
    """Without a Content-Length (chunked), the body is cut off once it passes the limit."""
    before = await api.state()
    chunk = b" " * 65536
    chunks = [b"%x\r\n%b\r\n" % (len(chunk), chunk)] * 64 + [b"0\r\n\r\n"]
    head, answer = await post_raw(api, "Transfer-Encoding: chunked\r\n", chunks)
    assert head.startswith(b"http/1.1 413 "), head
    assert answer["code"] == "RequestEntityTooLarge"
    assert await api.state() == before


async def test_a_body_of_exactly_the_limit_is_read(api: Api) -> None:
    body = b'{"name": "w", "size": "1Gi"}'
    body += b" " * (MAX_BODY - len(body))
    response = await api.client.post("/v1/volumes", content=body, headers=AUTH)
    assert response.status_code == 201, response.text


async def test_a_failing_store_is_503(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    api.store.broken = True
    for response in (
        await api.client.get("/v1/volumes"),
        await api.client.get("/v1/volumes/v"),
        await api.client.get("/v1/settings"),
        await api.post("/v1/volumes", {"name": "w", "size": "1Gi"}),
        await api.post("/v1/volumes/v?action=attach", {"hostId": "n1"}),
        await api.client.put("/v1/settings/auto-salvage", json={"value": "true"}, headers=AUTH),
    ):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "StoreUnavailable"
        assert "disk I/O error" in response.json()["message"]
    api.store.broken = False
    assert [
        d["metadata"]["name"] for d in (await api.client.get("/v1/volumes")).json()["data"]
    ] == ["v"]


async def test_an_empty_token_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="empty"):
        await serve_api(Objects(MemoryStore()), "127.0.0.1", 0, token="")


async def test_cancelling_stops_the_server_and_closes_its_port() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            functools.partial(serve_api, Objects(MemoryStore()), "127.0.0.1", 0, token="t")
        )
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer t"}) as client:
            assert (await client.get("/v1/volumes")).status_code == 200
        nursery.cancel_scope.cancel()
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v1/volumes")


async def test_a_request_head_over_16_kib_is_431_as_documented(api: Api) -> None:
    """Found by schemathesis (a label selector of some 50 KiB): when more than 16 KiB of a
    request's head have arrived without its end, hypercorn refuses it before the API sees it —
    431, no body, the connection closed — so the document lists 431 for every operation, without
    the error shape. (A head that arrives whole within one read reaches the API: a selector over
    4096 characters is then its own 400.)"""
    before = await api.state()
    host, _, port = api.url.removeprefix("http://").rpartition(":")
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(b"GET /v1/replicas?labelSelector=" + b"a" * 20_000)
        answer = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some():
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer
    assert b"\r\nconnection: close" in head.lower()
    assert body == b""
    assert await api.state() == before
    assert (await api.client.get("/v1/replicas")).status_code == 200  # a new connection serves
    document = (await api.bare.get("/v1/openapi.json")).json()
    for operations in document["paths"].values():
        for operation in operations.values():
            assert operation["responses"]["431"] == {"$ref": "#/components/responses/431"}
