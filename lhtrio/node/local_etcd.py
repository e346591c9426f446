"""A throwaway one-member etcd on loopback, for the etcd store's tests and benchmark (and anyone
who wants to try ``--store etcd://`` on one host): Debian's ``etcd`` (``apt-get install -y
--no-install-recommends etcd-server``) started on two free ports with its data in a directory of
the caller's, stopped by its PID.

A production etcd is the operator's (``docs/manager.md``, "Running on etcd"); this one keeps
etcd's defaults but for the addresses, and logs to ``DIR/etcd.log``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import attrs
import httpx

__all__ = ["START_DEADLINE", "LocalEtcd", "etcd_command", "local_etcd"]

#: Seconds etcd has to answer ``/health`` after it was started.
START_DEADLINE: Final = 30.0


@attrs.frozen
class LocalEtcd:
    """A running etcd: ``url`` is the store URL (``etcd://HOST:PORT``), ``client`` its HTTP
    base, ``pid`` its process."""

    url: str
    client: str
    pid: int
    log: Path


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def etcd_command(
    directory: Path, *, host: str, client_port: int, peer_port: int, name: str = "lhtrio"
) -> list[str]:
    """The command line of a one-member etcd with its data in ``directory/data``."""
    client, peer = f"http://{host}:{client_port}", f"http://{host}:{peer_port}"
    return [
        "etcd",
        "--name", name,
        "--data-dir", str(directory / "data"),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{name}={peer}",
        "--log-level", "warn",
    ]  # fmt: skip


def _wait_healthy(process: subprocess.Popen[bytes], client: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"etcd exited with {process.returncode} at start: see {log}")
            try:
                if http.get(f"{client}/health").json().get("health") == "true":
                    return
            except (httpx.HTTPError, ValueError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not answer {client}/health in time: see {log}")
            time.sleep(0.05)


@contextmanager
def local_etcd(
    directory: Path, *, host: str = "127.0.0.1", extra: Sequence[str] = ()
) -> Iterator[LocalEtcd]:
    """Run etcd (data and log in ``directory``) until the block ends; RuntimeError naming what
    to install, or the log, if it cannot start. ``extra``: more etcd flags."""
    if shutil.which("etcd") is None:
        raise RuntimeError(
            "etcd is not installed: apt-get install -y --no-install-recommends etcd-server"
        )
    client_port, peer_port = _free_port(host), _free_port(host)
    command = etcd_command(directory, host=host, client_port=client_port, peer_port=peer_port)
    log = directory / "etcd.log"
    with log.open("ab") as out:
        process = subprocess.Popen([*command, *extra], stdout=out, stderr=out)
    try:
        client = f"http://{host}:{client_port}"
        _wait_healthy(process, client, log)
        yield LocalEtcd(url=f"etcd://{host}:{client_port}", client=client, pid=process.pid, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
