"""``lhtrio node --api`` as a process: the API's URL on the third line of stdout, the node's token
made once (mode 0600) and kept across restarts, or the operator's token file used instead."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

pytestmark = pytest.mark.real


async def first_lines(proc: trio.Process, count: int) -> list[str]:
    assert proc.stdout is not None
    out = b""
    while out.count(b"\n") < count:
        chunk = await proc.stdout.receive_some()
        assert chunk, "lhtrio node exited before it printed its addresses"
        out += chunk
    return out.decode().splitlines()


@asynccontextmanager
async def node_with_api(data: Path, store: Path, *extra: str) -> AsyncIterator[list[str]]:
    """Run ``lhtrio node --api 127.0.0.1:0``; yield the three lines it printed; stop it after
    (its log is collected all along, so a full pipe never blocks it, and shown on a failure)."""
    proc = await trio.lowlevel.open_process(
        [
            sys.executable, "-m", "lhtrio", "node", "--name", "n1", "--data-dir", str(data),
            "--store", f"sqlite:{store}", "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0",
            "--port-range", "32300-32399", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    log = bytearray()

    async def collect() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.receive_some():
            log.extend(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            with trio.fail_after(60):
                lines = await first_lines(proc, 3)
            yield lines
            proc.terminate()
            with trio.fail_after(60):
                assert await proc.wait() == 0, log.decode()
    except BaseException:
        sys.stderr.write(f"lhtrio node's log:\n{log.decode()}\n")
        raise
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


async def test_the_node_serves_its_api_with_a_token_it_keeps(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store.db"
    async with node_with_api(data, store) as lines:
        control, nbd, url = lines
        assert control.startswith("tcp://127.0.0.1:")
        assert nbd.startswith("nbd://127.0.0.1:")
        assert url.startswith("http://127.0.0.1:")
        token_file = data / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            nodes = (await client.get("/v1/nodes")).json()["data"]
            assert [n["metadata"]["name"] for n in nodes] == ["n1"]
            refused = await client.post("/v1/volumes", json={"name": "v", "size": "1Gi"})
            assert refused.status_code == 401
            created = await client.post(
                "/v1/volumes",
                json={"name": "v", "size": "1Gi", "numberOfReplicas": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 201, created.text

    async with node_with_api(data, store) as lines:
        assert token_file.read_text().strip() == token
        async with httpx.AsyncClient(base_url=lines[2], timeout=30) as client:
            volumes = (await client.get("/v1/volumes")).json()["data"]
            assert [v["metadata"]["name"] for v in volumes] == ["v"]
            detached = await client.post(
                "/v1/volumes/v?action=detach", headers={"Authorization": f"Bearer {token}"}
            )
            assert detached.status_code == 200, detached.text


async def test_a_given_token_file_is_the_token(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store.db"
    given = tmp_path / "token"
    given.write_text("operator-token\n")
    given.chmod(0o600)
    async with (
        node_with_api(data, store, "--api-token-file", str(given)) as lines,
        httpx.AsyncClient(base_url=lines[2], timeout=30) as client,
    ):
        put = await client.put(
            "/v1/settings/auto-salvage",
            json={"value": "false"},
            headers={"Authorization": "Bearer operator-token"},
        )
        assert put.status_code == 200, put.text
    assert not (data / "api-token").exists()
