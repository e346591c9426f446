"""``lhtrio cluster``: three nodes on this host sharing the embedded store — the control plane.

Three ``lhtrio node`` processes on 127.0.0.11, .12 and .13 (loopback addresses need no root),
one SQLite store file for all of them (or, with ``--store etcd://...``, an etcd the operator
runs), each serving the admin API on port 9500 of its address.
On a terminal it prints the API, the token file and commands to try (the CLI over the API,
``docs/cli.md``), and runs until Ctrl-C; without one (CI, ``--tour``) it runs a short tour
through the API instead — create a 3-replica volume, attach it on node 1, write and read with
qemu-io, SIGKILL node 3 (the volume degrades, I/O goes on), bring node 3 back (its replica is
rebuilt in place, the volume is healthy), detach and delete — and exits 0.

The tour waits for the cluster with deadlines (it polls the API every 100 ms): it shows what an
operator's script would do; the tests assert the same behaviour through the store's watch.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx

from lhtrio.node.local import LocalNode, address, start_node

__all__ = ["commands_to_try", "run_cluster"]

NODES = 3
MiB = 1 << 20


def _port_range(index: int) -> tuple[int, int]:
    return 10000 + 1000 * index, 10999 + 1000 * index


def _until(what: str, check: Callable[[], bool], deadline: float = 90.0) -> None:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline:
            raise click.ClickException(f"gave up waiting for {what} after {deadline:.0f} s")
        time.sleep(0.1)
    click.echo(f"  {what} ({time.monotonic() - start:.1f} s)")


def _tour(api: str, token: str, nodes: list[LocalNode]) -> None:
    auth = {"Authorization": f"Bearer {token}"}  # every call, reads too
    with httpx.Client(base_url=api, timeout=30, headers=auth) as http:

        def volume() -> dict[str, Any]:
            response = http.get("/v1/volumes/tour")
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

        def status(key: str) -> object:
            return volume()["status"].get(key)

        def call(method: str, url: str, body: object = None) -> None:
            response = http.request(method, url, json=body)
            if response.status_code >= 400:
                raise click.ClickException(f"{method} {url}: {response.text}")

        click.echo("creating volume 'tour' (64 MiB, 3 replicas)")
        call("POST", "/v1/volumes", {"name": "tour", "size": str(64 * MiB), "numberOfReplicas": 3})
        _until("detached, with a replica on each node", lambda: status("state") == "detached")
        call("POST", "/v1/volumes/tour?action=attach", {"hostId": "node1"})
        _until("attached on node1, healthy", lambda: status("robustness") == "healthy")
        uri = _endpoint(volume())
        click.echo(f"  served at {uri}")
        _qemu_io(uri, "write -P 0x5a 0 4M", "flush", "read -P 0x5a 0 4M")
        click.echo("killing node3 (SIGKILL)")
        nodes[2].kill()
        _until("degraded", lambda: status("robustness") == "degraded")
        _qemu_io(uri, "write -P 0xa5 4M 4M", "flush")
        click.echo("  I/O goes on while degraded")
        click.echo("bringing node3 back")
        nodes[2] = start_node(nodes[2].base, 3, port_range=_port_range(3), store=nodes[2].store)
        _until(
            "healthy again (node3's replica rebuilt in place)",
            lambda: status("robustness") == "healthy",
        )
        _qemu_io(uri, "read -P 0x5a 0 4M", "read -P 0xa5 4M 4M")
        click.echo("  every pattern reads back")
        call("POST", "/v1/volumes/tour?action=detach")
        _until("detached", lambda: status("state") == "detached")
        call("DELETE", "/v1/volumes/tour")
        _until("deleted", lambda: http.get("/v1/volumes/tour").status_code == 404)


def _endpoint(volume: dict[str, Any]) -> str:
    """The NBD URI of the attached volume: its node's NBD listener (ADDRESS:10809), export
    VOLUME."""
    index = int(volume["status"]["currentNodeID"].removeprefix("node"))
    return f"nbd://{address(index)}:10809/{volume['metadata']['name']}"


def _qemu_io(uri: str, *commands: str) -> None:
    args = [a for c in commands for a in ("-c", c)]
    result = subprocess.run(
        ["qemu-io", "-f", "raw", *args, uri], capture_output=True, text=True, check=False
    )
    if result.returncode or "failed" in result.stdout.lower():
        raise click.ClickException(f"qemu-io {' '.join(commands)}:\n{result.stdout}{result.stderr}")
    click.echo(f"  qemu-io: {'; '.join(commands)}: ok")


def _lhtrio() -> str:
    """How to run this lhtrio from another shell: ``lhtrio`` if that is the one on PATH."""
    beside = Path(sys.executable).parent / "lhtrio"
    if not beside.exists():
        return f"{shlex.quote(sys.executable)} -m lhtrio"
    found = shutil.which("lhtrio")
    same = found is not None and Path(found).resolve() == beside.resolve()
    return "lhtrio" if same else shlex.quote(str(beside))


def commands_to_try(api: str, token_file: Path) -> list[str]:
    """What the cluster suggests on a terminal: the CLI over the first node's API, qemu-io."""
    lhtrio = _lhtrio()
    uri = f"nbd://{address(1)}:10809/v1"
    return [
        f"export LHTRIO_API={api} LHTRIO_TOKEN_FILE={shlex.quote(str(token_file))}",
        f"{lhtrio} volume create v1 --size 1Gi",
        f"{lhtrio} volume attach v1 --node node1   # waits; prints {uri}",
        f"qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'read -P 0x5a 0 1M' {uri}",
        f"{lhtrio} volume get v1; {lhtrio} event ls; {lhtrio} node ls",
        f"{lhtrio} volume ls -w   # a row per change, until Ctrl-C",
        f"{lhtrio} volume detach v1 --wait; {lhtrio} volume rm v1 --wait",
    ]


def run_cluster(directory: str | None, *, tour: bool, store: str | None = None) -> None:
    """Run the local cluster (see the module docstring) on ``store`` (a ``--store`` URL; by
    default a SQLite file in the cluster's directory)."""
    if shutil.which("qemu-io") is None:
        raise click.ClickException("the cluster's tour drives qemu-io: apt-get install qemu-utils")
    base = Path(directory or tempfile.mkdtemp(prefix="lhtrio-cluster-"))
    base.mkdir(parents=True, exist_ok=True)
    nodes: list[LocalNode] = []
    try:
        for index in range(1, NODES + 1):
            try:
                nodes.append(start_node(base, index, port_range=_port_range(index), store=store))
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
        api, token_file = nodes[0].api, base / "node1" / "api-token"
        click.echo(f"3 nodes on 127.0.0.11-13, store {nodes[0].store}")
        click.echo(f"API      {api}")
        click.echo(f"token    {token_file}")
        if tour:
            _tour(api, token_file.read_text().strip(), nodes)
            click.echo("tour done")
            return
        click.echo("try, in another shell:")
        for line in commands_to_try(api, token_file):
            click.echo(f"  {line}")
        click.echo("Ctrl-C stops the cluster")
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopping the nodes")
    finally:
        for node in reversed(nodes):
            node.stop()
        if directory is None:
            shutil.rmtree(base, ignore_errors=True)
        os.sync()
