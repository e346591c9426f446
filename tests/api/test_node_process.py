"""``lhtrio node --api`` as a process: the API's URL on the third line of stdout, the node's token
made once (mode 0600) and kept across restarts, or the operator's token file used instead; reads
open with ``--api-read-anonymous``; HTTPS with ``--api-tls-cert``/``--api-tls-key``; an access
log line per request on stderr that never holds the token."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
import trustme

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
async def node_with_api(
    data: Path, store: Path, *extra: str, log: bytearray | None = None
) -> AsyncIterator[list[str]]:
    """Run ``lhtrio node --api 127.0.0.1:0``; yield the three lines it printed; stop it after
    (its log is collected all along, into ``log`` if given, so a full pipe never blocks it, and
    shown on a failure)."""
    proc = await trio.lowlevel.open_process(
        [
            sys.executable, "-m", "lhtrio", "node", "--name", "n1", "--data-dir", str(data),
            "--store", f"sqlite:{store}", "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0",
            "--port-range", "32300-32399", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    log = bytearray() if log is None else log

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
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/v1/nodes")).status_code == 401
            nodes = (await client.get("/v1/nodes", headers=auth)).json()["data"]
            assert [n["metadata"]["name"] for n in nodes] == ["n1"]
            refused = await client.post("/v1/volumes", json={"name": "v", "size": "1Gi"})
            assert refused.status_code == 401
            created = await client.post(
                "/v1/volumes",
                json={"name": "v", "size": "1Gi", "numberOfReplicas": 1},
                headers=auth,
            )
            assert created.status_code == 201, created.text

    async with node_with_api(data, store) as lines:
        assert token_file.read_text().strip() == token
        async with httpx.AsyncClient(base_url=lines[2], timeout=30, headers=auth) as client:
            volumes = (await client.get("/v1/volumes")).json()["data"]
            assert [v["metadata"]["name"] for v in volumes] == ["v"]
            detached = await client.post("/v1/volumes/v?action=detach")
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


async def test_reads_may_be_anonymous(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store.db"
    async with (
        node_with_api(data, store, "--api-read-anonymous") as lines,
        httpx.AsyncClient(base_url=lines[2], timeout=30) as client,
    ):
        assert (await client.get("/v1/nodes")).status_code == 200
        refused = await client.post("/v1/volumes", json={"name": "v", "size": "1Gi"})
        assert refused.status_code == 401
        assert (await client.get("/v1/volumes")).json() == {"data": []}


async def test_the_api_serves_https_with_a_certificate(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    data, store = tmp_path / "data", tmp_path / "store.db"
    tls = ("--api-tls-cert", str(cert), "--api-tls-key", str(key))
    async with node_with_api(data, store, *tls) as lines:
        url = lines[2]
        assert url.startswith("https://127.0.0.1:")
        auth = {"Authorization": f"Bearer {(data / 'api-token').read_text().strip()}"}
        trusted = ssl.create_default_context()
        authority.configure_trust(trusted)
        async with httpx.AsyncClient(base_url=url, verify=trusted, timeout=30) as client:
            nodes = (await client.get("/v1/nodes", headers=auth)).json()["data"]
            assert [n["metadata"]["name"] for n in nodes] == ["n1"]
        async with httpx.AsyncClient(base_url=url.replace("https", "http"), timeout=30) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get("/v1/nodes", headers=auth)  # plain HTTP is not spoken


@pytest.mark.parametrize("which", ["key", "cert", "missing"])
async def test_a_bad_tls_pair_stops_the_node_before_it_starts(tmp_path: Path, which: str) -> None:
    authority = trustme.CA()
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    other = trustme.CA().issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(str(key))  # the key of another certificate
    if which == "cert":
        cert.write_text("not a certificate\n")
    elif which == "missing":
        key = tmp_path / "absent.key"
    result = await trio.run_process(
        [
            sys.executable, "-m", "lhtrio", "node", "--name", "n1",
            "--data-dir", str(tmp_path / "data"), "--store", f"sqlite:{tmp_path / 'store.db'}",
            "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0", "--port-range", "32300-32399",
            "--api-tls-cert", str(cert), "--api-tls-key", str(key),
        ],
        capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stdout == b""  # nothing was served
    assert "cannot serve TLS" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


async def test_every_request_is_logged_and_the_token_never_is(tmp_path: Path) -> None:
    data, store, log = tmp_path / "data", tmp_path / "store.db", bytearray()
    async with node_with_api(data, store, log=log) as lines:
        token = (data / "api-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=lines[2], timeout=30) as client:
            assert (await client.get("/v1/volumes?state=attached", headers=auth)).status_code == 200
            assert (
                await client.get("/v1/nodes", headers={"Authorization": "Bearer wrong"})
            ).status_code == 401
            # a token put in the URL by mistake, and one in a header the API does not read
            await client.get(f"/v1/volumes?token={token}&access_token={token}", headers=auth)
            await client.get("/v1/settings", headers={**auth, "X-Api-Token": token})
            created = await client.post(
                "/v1/volumes", json={"name": "v", "size": "1Gi"}, headers=auth
            )
            assert created.status_code == 201
    text = log.decode()
    assert token not in text
    access = [line for line in text.splitlines() if "lhtrio.api.access" in line]
    assert len(access) == 5, text
    assert '"GET /v1/volumes?state=attached" 200 ' in access[0]
    assert access[0].split("lhtrio.api.access: ")[1].startswith("127.0.0.1:")
    assert access[0].endswith(" ms")
    assert '"GET /v1/nodes" 401 ' in access[1]
    assert "token=%28hidden%29" in access[2] or "token=(hidden)" in access[2]
    assert '"POST /v1/volumes" 201 ' in access[4]


async def test_no_access_log_when_asked(tmp_path: Path) -> None:
    data, store, log = tmp_path / "data", tmp_path / "store.db", bytearray()
    async with (
        node_with_api(data, store, "--no-api-access-log", log=log) as lines,
        httpx.AsyncClient(base_url=lines[2], timeout=30) as client,
    ):
        assert (await client.get("/v1/volumes")).status_code == 401
    assert "lhtrio.api.access" not in log.decode()
