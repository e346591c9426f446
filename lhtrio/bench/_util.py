"""Helpers shared by the benchmarks: child processes, timing loops, tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

__all__ = [
    "Server",
    "Meter",
    "child_process",
    "cpu_seconds",
    "stop_process",
    "spawn_server",
    "table",
    "record",
]

BENCHMARKS_MD = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


@attrs.frozen
class Server:
    """A benchmark server in a child process."""

    address: str
    pid: int

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.pid)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system, seconds) process ``pid`` has spent so far."""
    return _cpu_seconds(pid)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Operations per second and CPU microseconds per operation, here and in a server."""

    def __init__(self, server: Server | None = None) -> None:
        self.server = server
        self.start = time.perf_counter()
        self.cpu = time.process_time()
        self.server_cpu = server.cpu_seconds() if server else 0.0

    def stop(self, ops: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        result = {
            "rate": ops / elapsed,
            "client_us": (time.process_time() - self.cpu) / ops * 1e6,
        }
        if self.server is not None:
            result["server_us"] = (self.server.cpu_seconds() - self.server_cpu) / ops * 1e6
        return result


def stop_process(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def child_process(
    args: Sequence[str], *, log: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``args`` as a child with stdout piped (text) and stderr appended to ``log`` (or dropped);
    stopped with :func:`stop_process` on exit."""
    with open(log, "a") if log else open(os.devnull, "w") as err:
        proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def spawn_server(args: Sequence[str]) -> Iterator[Server]:
    """Run ``python -m ARGS`` as a child that prints its address on the first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"benchmark server {' '.join(args)} did not start")
        yield Server(address=line, pid=proc.pid)
    finally:
        stop_process(proc, timeout=10)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (what docs/benchmarks.md records)."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _fmt(cell: object) -> str:
    if isinstance(cell, float):
        return f"{cell:,.2f}" if cell < 10 else f"{cell:,.0f}"
    return str(cell)


def record(name: str, text: str, *, command: str | None = None) -> None:
    """Put ``text`` between the ``<!-- bench:NAME -->`` markers of docs/benchmarks.md.

    Only when the file has those markers (a source checkout); stamps the date and the command.
    """
    if not BENCHMARKS_MD.exists():
        return
    doc = BENCHMARKS_MD.read_text()
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start not in doc or end not in doc:
        return
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    command = command or f"nox -s bench -- {name}"
    body = f"{start}\nMeasured {stamp} with `{command}`.\n\n{text}{end}"
    head, rest = doc.split(start, 1)
    BENCHMARKS_MD.write_text(head + body + rest.split(end, 1)[1])
