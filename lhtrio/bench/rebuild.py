"""Rebuild benchmark: ``lhtrio ctl replica add`` against ``cp --sparse=always`` of the same files.

Real processes on loopback TCP, in one scratch directory: a source ``lhtrio replica``, an
``lhtrio engine`` serving it (NBD on a Unix socket) and target ``lhtrio replica`` processes. The
data of (a) and (b) is written straight into the source with protocol v1 ``Write`` messages
before the engine starts (faster than any NBD client, and the same bytes on disk); (c) writes
through the engine with fio (nbd ioengine, 32 in flight). Then ``lhtrio ctl --engine ... replica
add TARGET -o json`` is timed until the target is RW. Its system snapshot turns the head into a
snapshot file, so the rebuild copies every byte written. The JSON gives ``total_bytes`` (allocated
bytes of the source's snapshot files), ``sent_bytes`` (what crossed the network) and ``seconds``
(the engine's clock, from ``replica add`` accepted to RW); rates use the engine's seconds, the
command's wall time (a Python CLI start included) is shown beside them. After every rebuild the
target's snapshot files are compared with the source's (``cmp``).

Cases, on a 1 GiB volume:

* (a) dense: 1 GiB written in 1 MiB writes.
* (b) alternating: 4 KiB of data, 4 KiB of hole, over the first 256 MiB (128 MiB of data). Two
  rates: data (bytes of data per second) and span (bytes of the volume covered per second).
* (c) a returning replica, four times in a row on the volume of (a): 10 % of the volume is
  written while every replica is healthy (so the target's head holds it), the target is killed
  (SIGKILL), another 10 % is written through the engine, the target restarts on its address and
  ``replica add`` replaces the ERR member. The engine's away log names the blocks the target may
  lack (written while it was away, or not flushed when it died): those are read, the target's
  other files are taken as they are. 1 MiB runs, then scattered 4 KiB blocks; then both again
  after every snapshot file of both replicas was hashed (the ``checksum`` call, untimed), which
  matters only for rebuilds without an away log: files whose recorded checksums agree are
  skipped whole.

The physical yardstick: ``cp --sparse=always`` of the same source snapshot files into a fresh
directory on the same file system, then ``sync -d`` of the copies (one fdatasync per file, as the
rebuild's target does). Before each timed step ``sync`` writes back every dirty page; the source
files are in the page cache for both (they were just written). (a) and (b) are the best of 2
alternating rounds, each a rebuild into a new replica and then two copies back to back. On this
VM the first touch of a page the host has taken back costs about 3 ms of CPU per MiB, and the
host takes freed pages back within seconds: a copy right after another reuses the pages the
first one freed and runs up to 3x faster. The faster copy counts, so the yardstick is cp at its
best (as on bare metal). The rebuild writes ranges of 64 KiB and more with ``O_DIRECT`` (see
:mod:`lhtrio.replica.sync`), so it does not depend on that; cp writes through the page cache.

Run: ``nox -s bench -- rebuild`` (``--quick``: a 256 MiB volume, records nothing). Needs fio.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio

from lhtrio.bench._util import Server, child_process, record, table
from lhtrio.clients.replica import ReplicaClient
from lhtrio.errors import LhtrioError
from lhtrio.models.replica import snapshot_of
from lhtrio.net import open_rpc_client
from lhtrio.wire import Flush, Reply, Request, Write

MiB = 1 << 20
LHTRIO = [sys.executable, "-m", "lhtrio"]


def _mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


class _Volume:
    """A source replica behind an engine, plus target replicas that can come and go."""

    def __init__(self, scratch: Path, name: str, size: int, stack: ExitStack) -> None:
        self.scratch, self.name, self.size, self.stack = scratch, name, size, stack
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.addresses: dict[str, str] = {}
        self.replica("source")
        self.nbd = scratch / f"{name}.sock"
        self.control = ""

    def write_direct(self, offsets: Iterable[int], length: int) -> None:
        """Write ``length`` random bytes at each offset straight into the source (no engine yet)."""
        assert not self.control, "the engine serves the source: write through it"
        pool = os.urandom(4 * MiB)

        async def run() -> None:
            async with open_rpc_client(self.addresses["source"], volume=self.name) as client:
                batch: list[Request] = []
                for n, offset in enumerate(offsets):
                    at = n * 4096 % (len(pool) - length + 1)
                    batch.append(Write(offset, pool[at : at + length]))
                    if len(batch) == 32:
                        await _check(client.call_many(batch))
                        batch = []
                if batch:
                    await _check(client.call_many(batch))
                await _check(client.call_many([Flush()]))

        trio.run(run)

    def start_engine(self) -> None:
        engine = self.stack.enter_context(
            child_process(
                [
                    *LHTRIO,
                    "engine",
                    self.name,
                    "--size",
                    str(self.size),
                    "--replica",
                    self.addresses["source"],
                    "--nbd",
                    f"unix:{self.nbd}",
                ],
                log=self.scratch / f"{self.name}-engine.log",
            )
        )
        assert engine.stdout is not None
        self.control = engine.stdout.readline().strip()
        if not self.control:
            raise RuntimeError(f"the engine of {self.name} did not start: see its log")
        self.procs["engine"] = engine
        deadline = time.monotonic() + 30
        while not self.nbd.exists():
            if engine.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the engine of {self.name} did not serve NBD")
            time.sleep(0.05)

    def directory(self, role: str) -> Path:
        return self.scratch / f"{self.name}-{role}"

    def replica(self, role: str) -> str:
        """Start (or restart, on the same address) the replica ``role``; its address."""
        listen = self.addresses.get(role, "tcp://127.0.0.1:0").removeprefix("tcp://")
        proc = self.stack.enter_context(
            child_process(
                [
                    *LHTRIO,
                    "replica",
                    str(self.directory(role)),
                    "--size",
                    str(self.size),
                    "--volume",
                    self.name,
                    "--listen",
                    listen,
                ],
                log=self.scratch / f"{self.name}-{role}.log",
            )
        )
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            raise RuntimeError(f"replica {role} of {self.name} did not start")
        self.procs[role], self.addresses[role] = proc, address
        return address

    def kill(self, role: str) -> None:
        proc = self.procs.pop(role)
        proc.kill()
        proc.wait()

    def fio(self, rw: str, bs: str, *, io_size: int, skip: int = 0) -> None:
        """fio through the engine's NBD export (32 in flight), over the volume from ``skip`` on.

        fio 3.33 draws the same random offsets whatever ``--randseed`` says; a different region
        (``skip``) gives a different pattern.
        """
        subprocess.run(
            [
                "fio",
                "--name=fill",
                "--ioengine=nbd",
                f"--uri=nbd+unix:///{self.name}?socket={self.nbd}",
                f"--rw={rw}",
                f"--bs={bs}",
                "--iodepth=32",
                f"--offset={skip}",
                f"--size={self.size - skip}",
                f"--io_size={io_size}",
                "--end_fsync=1",  # a flush at the end, as file systems commit every few seconds
                "--output-format=terse",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def snapshot_files(self, role: str) -> list[Path]:
        files = self.directory(role).glob("*.img")
        return sorted(path for path in files if snapshot_of(path.name) is not None)

    def add(self, role: str) -> dict[str, Any]:
        """Time ``lhtrio ctl replica add`` of replica ``role`` until it is RW."""
        os.sync()
        pids = [self.procs[r].pid for r in ("source", role, "engine")]
        cpu = [Server("", pid).cpu_seconds() for pid in pids]
        start = time.perf_counter()
        out = subprocess.run(
            [
                *LHTRIO,
                "ctl",
                "--engine",
                self.control,
                "replica",
                "add",
                self.addresses[role],
                "-o",
                "json",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        wall = time.perf_counter() - start
        result: dict[str, Any] = json.loads(out)
        if result["state"] != "done":
            raise RuntimeError(f"rebuild of {role} failed: {result['error']}")
        result["wall"] = wall
        result["cpu"] = [
            Server("", pid).cpu_seconds() - c for pid, c in zip(pids, cpu, strict=True)
        ]
        self.verify(role)
        return result

    def verify(self, role: str) -> None:
        # The engine purges the rebuild's system snapshot on its own once the replica is RW
        # (issue 16): an operator's purge waits for that one, so the files compared stay put.
        subprocess.run(
            [*LHTRIO, "ctl", "--engine", self.control, "snapshot", "purge"],
            check=True,
            capture_output=True,
        )
        ours, theirs = self.snapshot_files("source"), self.snapshot_files(role)
        if [p.name for p in ours] != [p.name for p in theirs]:
            raise RuntimeError(f"{role} has snapshot files {theirs}, the source {ours}")
        for a, b in zip(ours, theirs, strict=True):
            subprocess.run(["cmp", "--quiet", str(a), str(b)], check=True)


async def _check(replies: Awaitable[list[Reply | LhtrioError]]) -> None:
    for reply in await replies:
        if isinstance(reply, LhtrioError):
            raise reply


def _copy(files: list[Path], dest: Path) -> float:
    """The yardstick: ``cp --sparse=always`` then ``sync -d`` of the copies; seconds."""
    dest.mkdir()
    os.sync()
    start = time.perf_counter()
    subprocess.run(["cp", "--sparse=always", *map(str, files), str(dest)], check=True)
    subprocess.run(["sync", "-d", *(str(dest / f.name) for f in files)], check=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(dest)
    return seconds


def _hash_snapshots(volume: _Volume, roles: Sequence[str]) -> None:
    """Record a checksum of every snapshot file of the replicas ``roles`` (``checksum`` calls)."""

    async def hash_all(role: str) -> None:
        async with open_rpc_client(volume.addresses[role], volume=volume.name) as rpc:
            client = ReplicaClient(rpc)
            for path in volume.snapshot_files(role):
                await client.checksum(snapshot_of(path.name) or path.name)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            for role in roles:
                nursery.start_soon(hash_all, role)

    trio.run(run)


def _full(volume: _Volume, copy: Path) -> tuple[dict[str, Any], float]:
    """Best of 2 alternating rounds: a rebuild into a new replica, then two copies back to back.

    The copy that follows another reuses the page-cache pages the first one freed (see the
    module docstring): the faster copy counts. The second replica is stopped afterwards (the
    engine marks it ERR); ``target`` stays RW.
    """
    rebuilds, copies = [], []
    for role in ("spare", "target"):
        volume.replica(role)
        rebuilds.append(volume.add(role))
        copies += [_copy(volume.snapshot_files("source"), copy) for _ in range(2)]
    volume.kill("spare")
    return min(rebuilds, key=lambda r: float(r["seconds"])), min(copies)


def _returning(volume: _Volume, bs: str, changed: int, *, checksums: bool) -> dict[str, Any]:
    """(c): write while healthy, kill the target, write ``changed`` bytes, bring it back, add."""
    if checksums:
        _hash_snapshots(volume, ["source", "target"])
    volume.fio("randwrite", bs, io_size=changed)
    volume.kill("target")
    volume.fio("randwrite", bs, io_size=changed, skip=MiB + 4096)
    volume.replica("target")
    return volume.add("target")


def _cpu(result: dict[str, Any]) -> str:
    return " / ".join(f"{c:.1f}" for c in result["cpu"])


def _rate(n: float, seconds: float) -> str:
    return f"{n / MiB / seconds:,.0f} MiB/s"


def _seconds(result: dict[str, Any]) -> str:
    return f"{result['seconds']:.2f} s ({result['wall']:.2f} s)"


def main(*, quick: bool = False) -> None:
    size = (256 if quick else 1024) * MiB
    span = size // 4
    changed = size // 10 // MiB * MiB
    scratch = Path(tempfile.mkdtemp(prefix="lhtrio-bench-", dir=os.environ.get("LHTRIO_BENCH_DIR")))
    try:
        with ExitStack() as stack:
            alt = _Volume(scratch, "alt", size, stack)
            alt.write_direct(range(0, span, 8192), 4096)
            alt.start_engine()
            b, cp_b = _full(alt, scratch / "copy-b")
            alt_data = sum(p.stat().st_blocks * 512 for p in alt.snapshot_files("source"))
        with ExitStack() as stack:
            dense = _Volume(scratch, "dense", size, stack)
            dense.write_direct(range(0, size, MiB), MiB)
            dense.start_engine()
            a, cp_a = _full(dense, scratch / "copy-a")
            c = {
                f"{label}{', snapshots hashed' if hashed else ''}": _returning(
                    dense, bs, changed, checksums=hashed
                )
                for hashed in (False, True)
                for label, bs in (("1 MiB runs", "1M"), ("scattered 4 KiB", "4k"))
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    gib = "1 GiB" if not quick else _mib(size)
    full = table(
        f"Full rebuild of a {gib} volume: `replica add` to RW vs `cp --sparse=always` + `sync -d`",
        [
            "case",
            "data",
            "sent",
            "seconds (ctl wall)",
            "rate",
            "yardstick",
            "ours / yardstick",
            "goal",
            "CPU s src / tgt / engine",
        ],
        [
            [
                "(a) dense",
                _mib(a["total_bytes"]),
                _mib(a["sent_bytes"]),
                _seconds(a),
                _rate(a["total_bytes"], a["seconds"]),
                f"{cp_a:.2f} s, {_rate(a['total_bytes'], cp_a)}",
                f"{cp_a / a['seconds']:.2f}x",
                f">= 0.5x: {'met' if cp_a / a['seconds'] >= 0.5 else 'NOT met'}",
                _cpu(a),
            ],
            [
                f"(b) 4 KiB data / 4 KiB hole over {span // MiB} MiB",
                _mib(alt_data),
                _mib(b["sent_bytes"]),
                _seconds(b),
                f"{_rate(alt_data, b['seconds'])} data, {_rate(span, b['seconds'])} span",
                f"{cp_b:.2f} s, {_rate(alt_data, cp_b)} data",
                f"{cp_b / b['seconds']:.2f}x",
                ">= 90 MiB/s data: "
                + ("met" if alt_data / MiB / b["seconds"] >= 90 else "NOT met"),
                _cpu(b),
            ],
        ],
    )
    delta = table(
        f"(c) Returning replica: 10 % of the {gib} volume ({_mib(changed)}) rewritten while it "
        "was away",
        [
            "changes",
            "snapshot data",
            "sent",
            "files skipped",
            "seconds (ctl wall)",
            "time / (a)",
            "sent / data",
            "CPU s src / tgt / engine",
        ],
        [
            [
                label,
                _mib(r["total_bytes"]),
                _mib(r["sent_bytes"]),
                f"{r['skipped_files']} of {r['files']}",
                _seconds(r),
                f"{r['seconds'] / a['seconds']:.2f}",
                f"{r['sent_bytes'] / r['total_bytes']:.2f}",
                _cpu(r),
            ]
            for label, r in c.items()
        ],
    )
    text = f"{full}\n{delta}"
    print(text)
    if not quick:
        record("rebuild", text)
