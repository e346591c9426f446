"""A local cluster's node processes: ``lhtrio node`` N on 127.0.0.1N, one shared store (a file,
or an etcd).

Three loopback addresses (127.0.0.11, .12, .13: no root needed) let three nodes keep the same
ports (API 9500, NBD 10809) as they would on three hosts. ``lhtrio cluster`` (the main job) and
the control-plane benchmark start their nodes with :func:`start_node`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import attrs

__all__ = ["API_PORT", "LocalNode", "address", "start_node"]

API_PORT = 9500


def address(index: int) -> str:
    """Node ``index``'s loopback address (1 -> 127.0.0.11)."""
    return f"127.0.0.{10 + index}"


@attrs.define
class LocalNode:
    """Node ``node<index>`` running from ``base`` (its data in ``base/node<index>``, its log in
    ``base/node<index>.log``) on ``store``; ``api`` is its admin API's URL, ``control`` its
    instance manager's address (``lhtrio im``)."""

    index: int
    base: Path
    process: subprocess.Popen[str]
    api: str
    store: str
    control: str = ""

    @property
    def name(self) -> str:
        return f"node{self.index}"

    def kill(self) -> None:
        """SIGKILL: the node stops without a word, as on a power cut."""
        self.process.kill()
        self.process.wait()

    def stop(self, grace: float = 60) -> None:
        """SIGTERM (instances stop cleanly), then SIGKILL after ``grace`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_node(
    base: Path, index: int, *, port_range: tuple[int, int], store: str | None = None
) -> LocalNode:
    """Start ``lhtrio node`` ``node<index>`` on ``store`` (a ``--store`` URL; by default the
    SQLite file ``base/store.db``), with its API; returns once it has printed its addresses
    (RuntimeError naming its log if it did not start)."""
    ip, name = address(index), f"node{index}"
    store = store or f"sqlite:{base / 'store.db'}"
    command = [
        sys.executable, "-m", "lhtrio", "node",
        "--name", name,
        "--data-dir", str(base / name),
        "--advertise", ip,
        "--store", store,
        "--api", f"{ip}:{API_PORT}",
        "--port-range", f"{port_range[0]}-{port_range[1]}",
    ]  # fmt: skip
    with (base / f"{name}.log").open("a") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline().strip() for _ in range(3)]  # control, NBD, API
    if not all(lines):
        process.wait()
        raise RuntimeError(f"{name} did not start: see {base / f'{name}.log'}")
    return LocalNode(index, base, process, lines[2], store, lines[0])
