"""``lhtrio ctl`` and ``lhtrio im`` against a real engine and a real node, as operators run them."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from lhtrio.units import human_size
from tests import procs

MiB = 1 << 20


async def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m lhtrio ARGS`` with no LHTRIO_* endpoint in the environment but ``env``'s."""
    clean = {k: v for k, v in os.environ.items() if k not in ("LHTRIO_ENGINE", "LHTRIO_NODE")}
    with trio.fail_after(procs.SAFETY_NET):
        result = await trio.run_process(
            [sys.executable, "-m", "lhtrio", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**clean, **(env or {})},
        )
    assert result.returncode == 0, (args, result.stdout.decode(), result.stderr.decode())
    return result


async def text(*args: str, env: dict[str, str] | None = None) -> str:
    return (await cli(*args, env=env)).stdout.decode()


async def data(*args: str) -> Any:
    return json.loads((await cli(*args)).stdout)


def column(table: str, name: str, row: int) -> str:
    """The cell of column ``name`` in row ``row`` (1: the first after the header)."""
    lines = table.splitlines()
    start = lines[0].index(name)
    rest = lines[0][start + len(name) :]
    end = start + len(name) + len(rest) - len(rest.lstrip()) if rest.strip() else None
    return lines[row][start:end].strip()


async def test_ctl_output_before_the_verb_endpoint_from_the_environment_and_snapshot_sizes(
    tmp_path: Path,
) -> None:
    async with (
        procs.replica(tmp_path / "r1", "v") as replica,
        procs.engine("v", "64Mi", [replica.address], tmp_path / "v.sock") as engine,
    ):
        info = await data("ctl", "--engine", engine.address, "-o", "json", "info")
        assert info["size"] == 64 * MiB

        env = {"LHTRIO_ENGINE": engine.address}
        created = await text("ctl", "snapshot", "create", "s1", "--label", "app=db", env=env)
        assert created.strip() == "s1"

        listed = await data(
            "ctl", "--engine", engine.address, "-o", "table", "snapshot", "ls", "-o", "json"
        )
        assert [(s["name"], s["labels"]) for s in listed] == [("s1", {"app": "db"})]
        table = await text("ctl", "--engine", engine.address, "snapshot", "ls")
        assert column(table, "NAME", 1) == "s1"
        assert column(table, "SIZE", 1) == human_size(listed[0]["size"])  # not raw bytes
        assert column(table, "LABELS", 1) == "app=db"


async def test_im_shows_times_lists_and_the_nodes_nbd_uri(tmp_path: Path) -> None:
    node_args = ["node", "--name", "n1", "--data-dir", str(tmp_path / "data")]
    node_args += ["--nbd", "127.0.0.1:0", "--port-range", "32400-32499"]
    async with procs.lhtrio(*node_args) as node:
        im = ("im", "--node", node.address)
        replica = await data(
            *im, "-o", "json", "create", "replica", "r1", "--volume", "v", "--size", "64Mi"
        )
        engine = [*im, "create", "engine", "e1", "--volume", "v", "--size", "64Mi"]
        await cli(*engine, "--replica", replica["address"])

        shown = dict(
            [*line.split(maxsplit=1), ""][:2]
            for line in (await text(*im, "get", "e1")).splitlines()
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)", shown["started"])
        assert shown["replicas"] == replica["address"]  # not "['tcp://...']"
        assert shown["size"] == "64Mi (67108864 bytes)"

        raw = await data(*im, "get", "e1", "-o", "json")
        assert isinstance(raw["started"], float)  # JSON keeps the raw values
        assert raw["replicas"] == [replica["address"]]

        info = await data(*im, "-o", "json", "info")
        nbd = info["nbd"].removeprefix("tcp://")
        assert f"nbd        nbd://{nbd}" in (await text(*im, "info")).splitlines()
        assert raw["frontend"] == f"nbd://{nbd}/v"


async def test_ctl_pointed_at_something_that_is_not_an_engine_says_so(tmp_path: Path) -> None:
    async def mute(stream: trio.SocketStream) -> None:  # an HTTP server waiting for a request
        await trio.sleep_forever()

    async with procs.replica(tmp_path / "r0", "vol", "16Mi") as rep, trio.open_nursery() as n:
        (listener,) = await n.start(functools.partial(trio.serve_tcp, mute, 0, host="127.0.0.1"))
        silent = f"127.0.0.1:{listener.socket.getsockname()[1]}"
        for address, said in ((rep.address, "is a replica"), (silent, "did not answer")):
            with trio.fail_after(30):
                result = await trio.run_process(
                    [sys.executable, "-m", "lhtrio", "ctl", "--engine", address, "info"],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            assert result.returncode == 1
            assert said.encode() in result.stderr, result.stderr
            assert b"Traceback" not in result.stderr
        n.cancel_scope.cancel()
