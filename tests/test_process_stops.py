"""Every process stops on SIGTERM within its deadline, whatever its peers and clients did.

Issue 16, items 9, 11, 12 and 16 and the acceptance item on stopping: real ``lhtrio engine``,
``replica``, ``node`` and ``demo`` processes; a client that disconnects in the middle of the NBD
negotiation, a peer that never answers (a SIGSTOPped replica, a listener that swallows bytes), a
listen address that another process holds; and writes in flight when SIGTERM comes, which are
finished and answered before the engine closes.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from tests.nbdclient import ESHUTDOWN, WRITE, NbdClient
from tests.procs import Proc, engine, lhtrio, replica, run, uri

MiB = 1 << 20


async def _exits(proc: Proc, within: float) -> int:
    with trio.fail_after(within):
        return await proc.process.wait()


async def _half_handshakes(nbd: Path) -> None:
    """Clients that leave in the middle of the negotiation, every way the issue found."""
    await run("nbdinfo", "--list", f"nbd+unix://?socket={nbd}")
    unknown = await run("nbdinfo", f"nbd+unix:///nosuchvolume?socket={nbd}", check=False)
    assert unknown.returncode != 0
    for payload in (
        b"",  # connects, reads the greeting, leaves
        b"\x00\x00",  # half of the client flags
        b"\x80\x00\x00\x03",  # a client flag the server does not know
        b"\x00\x00\x00\x03IHAVEOPT\x00\x00\x00\x01\x00\x00\x00\x04nosu",  # EXPORT_NAME, unknown
        b"\x00\x00\x00\x03IHAVEOPT\x00\x00\x00\x07\x00\x00\x00\x20",  # GO, cut in the middle
    ):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(nbd))
            sock.recv(18)
            sock.sendall(payload)


@asynccontextmanager
async def _volume(tmp_path: Path, *replica_args: str) -> AsyncIterator[tuple[Proc, list[Proc]]]:
    async with AsyncExitStack() as stack:
        reps = [
            await stack.enter_async_context(replica(tmp_path / f"r{i}", "vol", "16Mi", unix=True))
            for i in range(2)
        ]
        eng = await stack.enter_async_context(
            engine(
                "vol",
                "16Mi",
                [r.address for r in reps],
                tmp_path / "nbd.sock",
                "--replica-timeout",
                "2",
                *replica_args,
            )
        )
        yield eng, reps


async def test_an_engine_serves_and_stops_after_clients_left_mid_negotiation(
    tmp_path: Path,
) -> None:
    async with _volume(tmp_path) as (eng, _):
        nbd = tmp_path / "nbd.sock"
        await _half_handshakes(nbd)
        # Still serving: a new client is answered, and the control endpoint works.
        await run(
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 7 0 64k",
            "-c",
            "read -P 7 0 64k",
            uri("vol", nbd),
        )
        eng.process.send_signal(signal.SIGTERM)
        assert await _exits(eng, within=15) == 0


async def test_an_engine_stops_with_a_replica_that_never_answers(tmp_path: Path) -> None:
    async with _volume(tmp_path) as (eng, reps):
        reps[1].process.send_signal(signal.SIGSTOP)
        try:
            eng.process.send_signal(signal.SIGTERM)
            # The final flush fails the stalled replica after its timeout (2 s here).
            assert await _exits(eng, within=20) == 0
        finally:
            reps[1].process.send_signal(signal.SIGCONT)


async def test_writes_in_flight_at_sigterm_are_finished_and_answered(tmp_path: Path) -> None:
    async with _volume(tmp_path) as (eng, reps):
        async with NbdClient.connect(tmp_path / "nbd.sock") as client:
            for proc in reps:  # the writes will hang in flight, in the engine
                proc.process.send_signal(signal.SIGSTOP)
            handles = [await client.send(WRITE, n * MiB, bytes([n + 1]) * MiB) for n in range(8)]
            eng.process.send_signal(signal.SIGTERM)
            await eng.wait_logged("stopping")
            late = await client.send(WRITE, 9 * MiB, b"\x09" * 4096)  # after the stop: refused
            for proc in reps:
                proc.process.send_signal(signal.SIGCONT)
            replies = {}
            for _ in range(9):
                handle, error, _ = await client.reply()
                replies[handle] = error
        assert {h: replies[h] for h in handles} == dict.fromkeys(handles, 0)
        assert replies[late] == ESHUTDOWN
        assert await _exits(eng, within=30) == 0
    # Every answered write is there: read it back through a new engine.
    async with _volume(tmp_path) as (_, _):
        commands = []
        for n in range(8):
            commands += ["-c", f"read -P {n + 1} {n * MiB} 1M"]
        await run("qemu-io", "-f", "raw", *commands, uri("vol", tmp_path / "nbd.sock"))


async def test_an_engine_whose_listen_address_is_taken_exits_with_an_error(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with replica(tmp_path / "r0", "vol", "16Mi") as rep:
            with trio.fail_after(20):
                result = await trio.run_process(
                    [
                        sys.executable, "-m", "lhtrio", "engine", "vol", "--size", "16Mi",
                        "--replica", rep.address, "--listen", f"127.0.0.1:{port}",
                        "--nbd", f"unix:{tmp_path}/nbd.sock",
                    ],
                    capture_stdout=True, capture_stderr=True, check=False,
                )  # fmt: skip
    assert result.returncode == 1
    assert b"in use" in result.stderr
    assert b"Traceback" not in result.stderr


async def test_a_replica_whose_listen_address_is_taken_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(20):
            result = await trio.run_process(
                [
                    sys.executable, "-m", "lhtrio", "replica", str(tmp_path / "new"),
                    "--size", "16Mi", "--listen", f"127.0.0.1:{port}",
                ],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
    assert result.returncode == 1
    assert b"in use" in result.stderr
    assert b"Traceback" not in result.stderr
    assert not (tmp_path / "new").exists()


async def test_a_replica_stops_with_a_client_that_never_finishes_its_frame(
    tmp_path: Path,
) -> None:
    async with replica(tmp_path / "r0", "vol", "16Mi") as rep:
        host, port = rep.address.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"LH\x00\x00\x10\x00\x00\x00")  # half a frame prefix, then nothing
            rep.process.send_signal(signal.SIGTERM)
            assert await _exits(rep, within=15) == 0


async def test_a_node_stops_after_clients_left_mid_negotiation(tmp_path: Path) -> None:
    args = ["node", "--name", "n1", "--data-dir", str(tmp_path / "data")]
    args += ["--nbd", f"unix:{tmp_path}/nbd.sock", "--listen", "127.0.0.1:0"]
    async with lhtrio(*args) as node:
        await _half_handshakes(tmp_path / "nbd.sock")
        node.process.send_signal(signal.SIGTERM)
        assert await _exits(node, within=20) == 0


async def test_a_node_whose_nbd_address_is_taken_exits_with_an_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(20):
            result = await trio.run_process(
                [
                    sys.executable, "-m", "lhtrio", "node", "--name", "n1",
                    "--data-dir", str(tmp_path / "data"), "--nbd", f"127.0.0.1:{port}",
                ],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
    assert result.returncode == 1
    assert b"in use" in result.stderr
    assert b"Traceback" not in result.stderr


async def test_the_demo_stops_on_sigterm_after_clients_left_mid_negotiation() -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "lhtrio", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = b""
    assert proc.stdout is not None
    with trio.fail_after(120):
        while b"control:" not in out:
            chunk = await proc.stdout.receive_some()
            assert chunk, out.decode()
            out += chunk
    nbd = Path(re.search(rb"socket=(\S+)", out).group(1).decode())  # type: ignore[union-attr]
    await _half_handshakes(nbd)
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        while chunk := await proc.stdout.receive_some():
            out += chunk
        assert await proc.wait() == 0, out.decode()
    assert b"Traceback" not in out


async def _two_lines(*args: str) -> list[str]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "lhtrio", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out = b""
    assert proc.stdout is not None
    try:
        with trio.fail_after(30):
            while out.count(b"\n") < 2:
                chunk = await proc.stdout.receive_some()
                assert chunk, out
                out += chunk
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await proc.wait()
    return out.decode().splitlines()[:2]


async def test_engine_and_node_print_the_address_a_client_needs_second(tmp_path: Path) -> None:
    async with replica(tmp_path / "r0", "vol", "16Mi") as rep:
        args = ["engine", "vol", "--size", "16Mi", "--replica", rep.address]
        control, nbd = await _two_lines(*args, "--nbd", "127.0.0.1:0")
        assert control.startswith("tcp://127.0.0.1:")
        assert re.fullmatch(r"nbd://127\.0\.0\.1:\d+/vol", nbd), nbd
    args = ["node", "--name", "n1", "--data-dir", str(tmp_path / "data")]
    control, nbd = await _two_lines(*args, "--nbd", "127.0.0.1:0", "--listen", "127.0.0.1:0")
    assert control.startswith("tcp://127.0.0.1:")
    assert re.fullmatch(r"nbd://127\.0\.0\.1:\d+", nbd), nbd
