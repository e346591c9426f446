"""Real lhtrio processes and real client tools for integration tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

SAFETY_NET = 120


@attrs.define
class Proc:
    """A running ``lhtrio`` subcommand and the first line it printed (its address).

    ``stderr`` grows with what the process writes there (its log)."""

    process: trio.Process
    address: str
    stderr: bytearray = attrs.field(factory=bytearray)

    async def wait_logged(self, text: str) -> None:
        """Poll, with a deadline, until the process logged ``text`` (another process's state,
        which nothing can signal)."""
        with trio.fail_after(30):
            while text.encode() not in self.stderr:  # noqa: ASYNC110
                await trio.sleep(0.01)

    def kill(self) -> None:
        self.process.kill()

    async def terminate(self) -> int:
        self.process.terminate()
        with trio.fail_after(30):
            return await self.process.wait()


@asynccontextmanager
async def lhtrio(*args: str) -> AsyncIterator[Proc]:
    """Run ``python -m lhtrio ARGS``; yield once it printed its address; kill it on exit."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "lhtrio", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    errors = bytearray()

    async def collect() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.receive_some():
            errors.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        try:
            assert proc.stdout is not None
            line = b""
            with trio.fail_after(30):
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    if not chunk:
                        await proc.wait()
                        raise AssertionError(f"lhtrio {args[0]} did not start: {errors.decode()}")
                    line += chunk
            yield Proc(proc, line.decode().strip(), errors)
        finally:
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True), trio.fail_after(30):
                await proc.wait()
            nursery.cancel_scope.cancel()


def replica(
    directory: Path, volume: str, size: str | None = "64Mi", *, unix: bool = False
) -> AbstractAsyncContextManager[Proc]:
    args = ["replica", str(directory), "--volume", volume, "--instance", directory.name]
    if unix:
        args += ["--listen", f"unix:{directory}.sock"]
    return lhtrio(*args, *(["--size", size] if size else []))


def engine(
    volume: str, size: str, replicas: Sequence[str], socket: Path, *extra: str
) -> AbstractAsyncContextManager[Proc]:
    args = ["engine", volume, "--size", size, "--nbd", f"unix:{socket}"]
    for address in replicas:
        args += ["--replica", address]
    return lhtrio(*args, *extra)


def uri(volume: str, socket: Path) -> str:
    return f"nbd+unix:///{volume}?socket={socket}"


async def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a client tool; its output is in the result (and in the failure message).

    A hang is a failure: every tool gets at most SAFETY_NET seconds (callers that expect an
    answer sooner put their own ``trio.fail_after`` around the call).
    """
    with trio.fail_after(SAFETY_NET):
        result = await trio.run_process(
            list(cmd), capture_stdout=True, capture_stderr=True, check=False
        )
    if check and result.returncode:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout.decode()}\n"
            f"{result.stderr.decode()}"
        )
    return result


async def ctl(control: str, *verb: str) -> Any:
    """``lhtrio ctl --engine CONTROL VERB... -o json``, parsed."""
    result = await run(
        sys.executable, "-m", "lhtrio", "ctl", "--engine", control, *verb, "-o", "json"
    )
    return json.loads(result.stdout)
