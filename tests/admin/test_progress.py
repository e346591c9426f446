"""A rebuild followed with ``lhtrio volume rebuild-status --wait``, as an operator sees it: the
real ``python -m lhtrio`` process on a pseudo-terminal draws rich's bar (percentage, bytes, rate,
time left) and ends with the replica rebuilt; through pipes it writes plain lines only (no
escape sequence), and Ctrl-C leaves the rebuild running and names the command that follows it.

Three in-process nodes serve a volume written with qemu-io over NBD; raising its replica count
makes a new replica that is rebuilt from the volume's. The test holds that rebuild part way
(:class:`Gate`: the target's reads of the source, ``lhtrio.replica.sync._read``, wait for the
test's go), so what the CLI shows mid-rebuild is seen for certain, with no sleep: each step waits
for the CLI's output, with a deadline.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.models.cluster import Volume
from lhtrio.models.cluster.volume import Robustness
from lhtrio.replica import sync
from tests.admin.conftest import TOKEN
from tests.manager.test_cluster_processes import qemu_io
from tests.manager.test_volume_lifecycle import Cluster, three_nodes, until
from tests.manager.test_volume_operations import attach, new_volume

pytestmark = pytest.mark.real  # qemu-io, lhtrio processes

MiB = 1 << 20
WAIT = 60.0
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]")


@attrs.define
class Gate:
    """Lets ``allowed`` reads of a rebuild's source through; the others wait for :meth:`allow`."""

    allowed: int
    reads: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def allow(self, reads: int) -> None:
        self.allowed = reads
        self._changed.set()
        self._changed = trio.Event()

    def wrap(self, read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def gated(*args: Any) -> Any:
            while self.reads >= self.allowed:
                await self._changed.wait()
            self.reads += 1
            return await read(*args)

        return gated


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LHTRIO_")}
    return env | {"LHTRIO_API": url, "LHTRIO_TOKEN": TOKEN, "TERM": "xterm-256color"}


class Output:
    """What a process wrote, read as it comes: :meth:`until` waits (with a deadline) for a
    pattern in the text so far, escape sequences taken out."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode(errors="replace")

    async def _more(self) -> bool:
        try:
            chunk = await self.stream.receive_some()
        except trio.BrokenResourceError as exc:  # a pty's master: EIO once the process has gone
            if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EIO:
                raise
            chunk = b""
        self.raw += chunk
        return bool(chunk)

    async def until(self, pattern: str, *, start: int = 0) -> re.Match[str]:
        with trio.move_on_after(WAIT):
            while True:
                found = re.search(pattern, self.text[start:])
                if found is not None:
                    return found
                if not await self._more():
                    raise AssertionError(f"no {pattern!r} before the end in:\n{self.text}")
        raise AssertionError(f"no {pattern!r} within {WAIT:g} s in:\n{self.text}")

    async def rest(self) -> None:
        with trio.fail_after(WAIT):
            while await self._more():
                pass


@asynccontextmanager
async def held_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """Three nodes and their API; volume ``v`` (1 replica) attached on n1 with 32 MiB written;
    every rebuild's reads of its source go through the gate (none allowed yet)."""
    gate = Gate(allowed=0)
    monkeypatch.setattr(sync, "_read", gate.wrap(sync._read))
    monkeypatch.setattr(sync, "REPORT_EVERY", 0.0)  # the target tells each window it wrote
    async with three_nodes(tmp_path) as cluster, trio.open_nursery() as nursery:
        url = await nursery.start(
            functools.partial(serve_api, cluster.objects, "127.0.0.1", 0, token=TOKEN)
        )
        await new_volume(cluster, replicas=1, size=64 * MiB)
        uri = await attach(cluster, "n1")
        await qemu_io(uri, "write -P 0x5a 0 32M", "flush")
        yield cluster, url, gate
        nursery.cancel_scope.cancel()


async def more_replicas(cluster: Cluster, count: int) -> None:
    """Ask for ``count`` replicas; return once the volume is degraded for want of one."""

    def raise_count(v: Volume) -> Volume:
        return attrs.evolve(v, spec=attrs.evolve(v.spec, number_of_replicas=count))

    await cluster.objects.change(Volume, "v", raise_count)
    await until(cluster, Volume, "v", lambda v: v.status.robustness is Robustness.DEGRADED)


def percents(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"(\d+)%", text)]


async def test_a_rebuild_on_a_terminal_is_a_progress_bar_with_rate_and_time_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_rebuild(tmp_path, monkeypatch) as (cluster, url, gate):
        await more_replicas(cluster, 2)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "lhtrio", "volume", "rebuild-status", "v", "--wait"],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=environment(url),
            )
        finally:
            os.close(slave)
        output = Output(trio.lowlevel.FdStream(master))
        try:
            gate.allow(4)  # a quarter of the 16 windows of 2 MiB
            bar = await output.until(r"replica v-r-\w+ on n\d: syncing.*━.*?([1-9]\d?)%")
            first = int(bar.group(1))
            assert 0 < first < 100, output.text
            mark = len(output.text)
            gate.allow(8)
            later = await output.until(r"syncing.*?([1-9]\d?)%.*MiB/s", start=mark)
            assert first < int(later.group(1)) < 100, output.text
            assert re.search(r"MiB/\w*\s+\d+:\d\d:\d\d", output.text[mark:]), output.text
            gate.allow(1 << 30)
            await output.until(r"rebuilt, RW")
            await output.rest()
            assert await proc.wait() == 0, output.text
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
        assert b"\x1b[" in output.raw  # drawn for a terminal
        assert 100 in percents(output.text)
        table = output.text[output.text.index("REPLICA") :]
        assert len(re.findall(r"v-r-\w+\s+n\d\s+RW", table)) == 2  # the table at the end


async def test_without_a_terminal_a_rebuild_is_plain_lines_and_ctrl_c_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_rebuild(tmp_path, monkeypatch) as (cluster, url, gate):
        await more_replicas(cluster, 2)
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "lhtrio", "volume", "rebuild-status", "v", "--wait"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(url),
        )
        assert proc.stderr is not None
        assert proc.stdout is not None
        errors, printed = Output(proc.stderr), Output(proc.stdout)
        try:
            await errors.until(r"volume v: attached on node n1, degraded")
            gate.allow(4)
            line = r"replica v-r-\w+ on n\d: syncing ([1-9]\d?)% \(([\d.]+) MiB of 32.0 MiB"
            first = await errors.until(line)
            assert 0 < int(first.group(1)) < 100
            gate.allow(8)
            second = await errors.until(line + r", [\d.]+ \w+/s, \d+s left\)", start=first.end())
            assert int(first.group(1)) < int(second.group(1)) < 100
            proc.send_signal(signal.SIGINT)
            await errors.rest()
            assert await proc.wait() == 130
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
        await printed.rest()
        assert errors.text.splitlines()[-1] == (
            "interrupted: the rebuild of volume v goes on in the cluster; follow it with: "
            "lhtrio volume rebuild-status v --wait"
        )
        assert b"\x1b" not in errors.raw + printed.raw
        assert b"\r" not in errors.raw
        assert "Traceback" not in errors.text
        gate.allow(1 << 30)  # the rebuild was left running: it ends on its own
        await until(cluster, Volume, "v", lambda v: v.status.robustness is Robustness.HEALTHY)
