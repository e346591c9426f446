"""The access log: one line per request — client, method, path, the query with unknown
parameters' values hidden, status, time — and never the token, wherever a client puts it."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from tests.api.conftest import TOKEN, Api


async def test_one_line_per_request_and_never_the_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, hypercorn's and the app's included
    await api.client.get("/v1/volumes?state=detached&labelSelector=app%3Ddb")
    await api.bare.get("/v1/nodes", headers={"Authorization": f"Bearer {TOKEN}x"})
    await api.client.get(f"/v1/settings?token={TOKEN}&access_token={TOKEN}")
    await api.client.post("/v1/volumes", json={"name": "v", "size": "1Gi", "token": TOKEN})
    await api.bare.get(f"/v1/volumes/{TOKEN}")  # 401 (a name is logged: the path is no secret)
    await trio.testing.wait_all_tasks_blocked()  # (a line is logged just after its answer)
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in server)
    assert TOKEN not in text.replace(f"/v1/volumes/{TOKEN}", "")  # (the client's own logs aside)
    lines = [r.getMessage() for r in server if r.name == "lhtrio.api.access"]
    assert len(lines) == 5, lines
    client = lines[0].split(" ", 1)[0]
    status, took, unit = lines[0].rsplit(" ", 3)[1:]
    assert client.startswith("127.0.0.1:")
    assert '"GET /v1/volumes?state=detached&labelSelector=app=db"' in lines[0]
    assert (status, unit) == ("200", "ms")
    assert float(took) >= 0
    assert '"GET /v1/nodes" 401 ' in lines[1]
    assert "token=(hidden)&access_token=(hidden)" in lines[2]
    assert '"POST /v1/volumes" 400 ' in lines[3]  # (an unknown field: the body is never logged)
