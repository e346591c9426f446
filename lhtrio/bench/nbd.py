"""NBD benchmark: fio (nbd ioengine) against lhtrio with 1 and 3 replicas and against qemu-nbd.

The local yardstick is ``qemu-nbd`` serving a raw file from the same disk. The last row runs the
replicas on Unix sockets (``lhtrio replica --listen unix:PATH``: the strict-local data path of an
engine and replicas on one host) instead of loopback TCP. Replicas on TCP offer a same-host
socket that the engine uses by default (``lhtrio.net.server``); the "TCP only" row turns that off
(``--no-local-sockets``): what remote replicas cost, without the network. Every backend gets fresh
sparse files in one scratch directory and a Unix socket; fio runs one job, one connection:

    4 KiB random write QD32, 4 KiB random write QD1, 1 MiB sequential write QD8 (fills the 256 MiB
    region), 4 KiB random read QD32, 4 KiB random read QD1, 1 MiB sequential read QD8

Reads therefore come from the page cache, as in ``shared/reference/nbd-performance.md``.

**Interleaved rounds.** On these VMs the same fio job against the same qemu-nbd varied by a
factor of four within minutes (4 KiB QD1 writes: 187 and 758 µs in two runs 6 minutes apart), so
measuring the backends one after the other compared moments as much as backends. All backends
run at once (idle ones cost nothing), every workload runs on each backend in turn, ``ROUNDS``
times, and each figure is the backend's median run: a drift of the machine hits every backend
alike.

Run: ``nox -s bench -- nbd`` (``--quick`` for short runs). Needs fio, qemu-nbd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from lhtrio.bench._util import child_process, record, table

SIZE = 1 << 30
REGION = "256M"
ROUNDS = 3
WORKLOADS: list[tuple[str, str, str, int]] = [
    ("4k randwrite QD32", "randwrite", "4k", 32),
    ("4k randwrite QD1", "randwrite", "4k", 1),
    ("1M write QD8", "write", "1M", 8),
    ("4k randread QD32", "randread", "4k", 32),
    ("4k randread QD1", "randread", "4k", 1),
    ("1M read QD8", "read", "1M", 8),
]


def _wait_for_socket(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args!r} did not start")
        time.sleep(0.05)


@contextmanager
def _qemu_nbd(scratch: Path) -> Iterator[str]:
    image = scratch / "qemu.img"
    with open(image, "wb") as f:
        f.truncate(SIZE)
    socket = scratch / "qemu.sock"
    with child_process(
        ["qemu-nbd", "-f", "raw", "-t", "-x", "vol", "-k", str(socket), str(image)]
    ) as proc:
        _wait_for_socket(socket, proc)
        yield f"nbd+unix:///vol?socket={socket}"


@contextmanager
def _lhtrio(
    scratch: Path, replicas: int, *, unix: bool = False, tcp_only: bool = False
) -> Iterator[str]:
    lhtrio = [sys.executable, "-m", "lhtrio"]
    tag = f"{replicas}{'u' if unix else ''}{'t' if tcp_only else ''}"
    with ExitStack() as stack:
        addresses = []
        for n in range(replicas):
            listen = f"unix:{scratch}/r{tag}-{n}.sock" if unix else "127.0.0.1:0"
            proc = stack.enter_context(
                child_process(
                    [
                        *lhtrio,
                        "replica",
                        str(scratch / f"r{tag}-{n}"),
                        "--size",
                        str(SIZE),
                        "--volume",
                        "vol",
                        "--listen",
                        listen,
                    ]
                )
            )
            assert proc.stdout is not None
            addresses.append(proc.stdout.readline().strip())
        socket = scratch / f"lhtrio{tag}.sock"
        args = [*lhtrio, "engine", "vol", "--size", str(SIZE), "--nbd", f"unix:{socket}"]
        if tcp_only:
            args.append("--no-local-sockets")
        for address in addresses:
            args += ["--replica", address]
        proc = stack.enter_context(child_process(args))
        _wait_for_socket(socket, proc)
        yield f"nbd+unix:///vol?socket={socket}"


def _fio(uri: str, rw: str, bs: str, depth: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "fio",
            "--name=bench",
            "--ioengine=nbd",
            f"--uri={uri}",
            f"--rw={rw}",
            f"--bs={bs}",
            f"--iodepth={depth}",
            f"--size={REGION}",
            "--time_based",
            f"--runtime={seconds}",
            "--ramp_time=1",
            "--output-format=json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    return {
        "iops": side["iops"],
        "mib_s": side["bw_bytes"] / (1 << 20),
        "lat_us": side["lat_ns"]["mean"] / 1000,
    }


def _figure(name: str, result: dict[str, float]) -> str:
    if name.startswith("1M"):
        return f"{result['mib_s']:,.0f} MiB/s"
    if "QD1" in name:
        return f"{result['iops']:,.0f} / {result['lat_us']:,.0f} µs"
    return f"{result['iops']:,.0f}"


def _ratio(name: str, ours: dict[str, float], peer: dict[str, float]) -> str:
    if "QD1" in name:
        return f"{ours['iops'] / peer['iops']:.2f}x ({ours['lat_us'] - peer['lat_us']:+,.0f} µs)"
    key = "mib_s" if name.startswith("1M") else "iops"
    return f"{ours[key] / peer[key]:.2f}x"


def _median(runs: list[dict[str, float]], name: str) -> dict[str, float]:
    """The run with the median figure of ``name`` (throughput for 1M, else IOPS)."""
    key = "mib_s" if name.startswith("1M") else "iops"
    return sorted(runs, key=lambda run: run[key])[len(runs) // 2]


def main(*, quick: bool = False) -> None:
    seconds, rounds = (1, 1) if quick else (2, ROUNDS)
    scratch = Path(tempfile.mkdtemp(prefix="lhtrio-bench-", dir=os.environ.get("LHTRIO_BENCH_DIR")))
    backends: dict[str, Callable[[], AbstractContextManager[str]]] = {
        "qemu-nbd (yardstick)": lambda: _qemu_nbd(scratch),
        "lhtrio, 1 replica": lambda: _lhtrio(scratch, 1),
        "lhtrio, 3 replicas": lambda: _lhtrio(scratch, 3),
        "lhtrio, 3 replicas, TCP only": lambda: _lhtrio(scratch, 3, tcp_only=True),
        "lhtrio, 3 replicas on Unix sockets": lambda: _lhtrio(scratch, 3, unix=True),
    }
    runs: dict[str, dict[str, list[dict[str, float]]]] = {b: {} for b in backends}
    try:
        with ExitStack() as stack:
            uris = {backend: stack.enter_context(start()) for backend, start in backends.items()}
            for name, rw, bs, depth in WORKLOADS:
                for round_ in range(rounds):
                    order = list(uris.items())  # rotated: the last in a round ran slower
                    order = order[round_ % len(order) :] + order[: round_ % len(order)]
                    for backend, uri in order:
                        result = _fio(uri, rw, bs, depth, seconds)
                        runs[backend].setdefault(name, []).append(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = {
        backend: {name: _median(per_name[name], name) for name in per_name}
        for backend, per_name in runs.items()
    }
    peer = results["qemu-nbd (yardstick)"]
    names = [name for name, *_ in WORKLOADS]
    rows: list[list[object]] = [
        [backend, *(_figure(n, results[backend][n]) for n in names)] for backend in backends
    ]
    rows += [
        [f"{backend} / yardstick", *(_ratio(n, results[backend][n], peer[n]) for n in names)]
        for backend in backends
        if backend != "qemu-nbd (yardstick)"
    ]
    text = table(
        f"NBD: fio (nbd ioengine), one connection; IOPS, MiB/s, QD1 as IOPS / mean latency; "
        f"median of {rounds} interleaved rounds of {seconds} s (+1 s ramp)",
        ["backend", *names],
        rows,
    )
    print(text)
    if not quick:
        record("nbd", text)
