"""Replica benchmark: the store in-process, ``lhtrio replica`` over loopback, and the raw disk.

Three ways to do the same I/O on a fresh sparse file in a scratch directory on the same disk:

* (a) :class:`~lhtrio.replica.store.Replica` called in-process (``write``/``read_into``);
* (b) ``lhtrio replica`` in its own process, driven over loopback by the RPC client with 32
  requests in flight (``call_many`` batches, how an engine fans out);
* (c) the physical yardstick: ``os.pwrite``/``os.preadv`` on a plain sparse file.

Workloads: 4 KiB random writes, then 4 KiB random reads of what was written (page cache), in a
256 MiB region; 1 MiB sequential writes and reads over 256 MiB. Nothing is fsynced (the engine's
flush is measured with the engine).

Run: ``nox -s bench -- replica``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from lhtrio.bench._util import Meter, Server, record, spawn_server, table
from lhtrio.net import open_rpc_client
from lhtrio.replica.store import Replica
from lhtrio.wire import Read, Request, Write

REGION = 256 << 20
SIZE = 1 << 30
SMALL = 4096
LARGE = 1 << 20
DEPTH = 32


def _offsets(count: int) -> list[int]:
    rng = random.Random(42)
    return [rng.randrange(REGION // SMALL) * SMALL for _ in range(count)]


def _settle() -> None:
    """Write back dirty pages first, so one case's writeback does not throttle the next."""
    os.sync()


def _loop(step: Callable[[int], object], offsets: list[int], seconds: float) -> float:
    """Ops per second of ``step(offset)`` over ``offsets`` (cycled) for ``seconds``."""
    _settle()
    done = 0
    start = time.perf_counter()
    n = len(offsets)
    while (elapsed := time.perf_counter() - start) < seconds:
        for offset in offsets[done % n : done % n + 256]:
            step(offset)
        done += min(256, n - done % n)
    return done / elapsed


def _four(
    write: Callable[[int, memoryview], object],
    read: Callable[[int, memoryview], object],
    seconds: float,
) -> list[float]:
    small = memoryview(os.urandom(SMALL))
    small_in = memoryview(bytearray(SMALL))
    large = memoryview(os.urandom(LARGE))
    large_in = memoryview(bytearray(LARGE))
    offsets = _offsets(1 << 16)
    sequential = list(range(0, REGION, LARGE))
    return [
        _loop(lambda off: write(off, small), offsets, seconds),
        _loop(lambda off: read(off, small_in), offsets, seconds),
        _loop(lambda off: write(off, large), sequential, seconds) * LARGE / 1e6,
        _loop(lambda off: read(off, large_in), sequential, seconds) * LARGE / 1e6,
    ]


def _bench_raw(scratch: Path, seconds: float) -> list[float]:
    path = scratch / "raw.img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        return _four(
            lambda off, buf: os.pwrite(fd, buf, off),
            lambda off, buf: os.preadv(fd, [buf], off),
            seconds,
        )
    finally:
        os.close(fd)


def _bench_store(scratch: Path, seconds: float) -> list[float]:
    replica = Replica.create(str(scratch / "store"), size=SIZE, volume="bench", instance="bench")
    try:
        return _four(replica.write, replica.read_into, seconds)
    finally:
        replica.close()


async def _bench_remote(server: Server, seconds: float) -> list[float]:
    async with open_rpc_client(server.address, volume="bench") as client:

        async def run(make: Callable[[int], Request], offsets: list[int], size: int) -> float:
            _settle()
            done = 0
            meter = Meter()
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                start = done % len(offsets)
                batch = [make(off) for off in offsets[start : start + DEPTH]]
                await client.call_many(batch)
                done += len(batch)
            return meter.stop(done)["rate"] * size

        small = os.urandom(SMALL)
        large = os.urandom(LARGE)
        offsets = _offsets(1 << 16)
        sequential = list(range(0, REGION, LARGE))
        return [
            await run(lambda off: Write(off, small), offsets, 1),
            await run(lambda off: Read(off, SMALL), offsets, 1),
            await run(lambda off: Write(off, large), sequential, LARGE) / 1e6,
            await run(lambda off: Read(off, LARGE), sequential, LARGE) / 1e6,
        ]


def _in_child(case: str, scratch: Path, seconds: float) -> list[float]:
    """Run one in-process case in a fresh interpreter (no state left over from other cases)."""
    out = subprocess.run(
        [sys.executable, "-m", "lhtrio.bench.replica", case, str(scratch), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [float(x) for x in json.loads(out)]


def _best(runs: list[list[float]]) -> list[float]:
    return [max(column) for column in zip(*runs, strict=True)]


def main(*, quick: bool = False) -> None:
    seconds = 1.0 if quick else 3.0
    scratch = Path(tempfile.mkdtemp(prefix="lhtrio-bench-", dir=os.environ.get("LHTRIO_BENCH_DIR")))
    try:
        raw_runs, store_runs = [], []
        for n in range(2):  # alternate the cases; report each one's best run
            raw_runs.append(_in_child("raw", scratch / f"raw{n}", seconds))
            store_runs.append(_in_child("store", scratch / f"store{n}", seconds))
        raw, store = _best(raw_runs), _best(store_runs)
        directory = scratch / "served"
        with spawn_server(
            ["lhtrio", "replica", str(directory), "--size", str(SIZE), "--volume", "bench"]
        ) as server:
            remote = trio.run(_bench_remote, server, seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows: list[list[object]] = [
        ["(a) store in-process", *store],
        [f"(b) lhtrio replica, loopback, {DEPTH} in flight", *remote],
        ["(c) os.pwrite/os.preadv on a sparse file", *raw],
        ["(a) / (c)", *(s / r for s, r in zip(store, raw, strict=True))],
        ["(b) / (c)", *(s / r for s, r in zip(remote, raw, strict=True))],
    ]
    text = table(
        "Replica: 4 KiB random ops/s and 1 MiB sequential MB/s (best of 2 alternating runs)",
        ["path", "4 KiB rand write", "4 KiB rand read", "1 MiB seq write", "1 MiB seq read"],
        rows,
    )
    print(text)
    if not quick:
        record("replica", text)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in ("raw", "store"):
        where = Path(sys.argv[2])
        where.mkdir(parents=True)
        bench = _bench_raw if sys.argv[1] == "raw" else _bench_store
        print(json.dumps(bench(where, float(sys.argv[3]))))
    else:
        main(quick="--quick" in sys.argv)
