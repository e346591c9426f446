"""``lhtrio node`` as a process: SIGTERM while clients write, SIGKILL, restart; ``lhtrio im``."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from lhtrio.net import open_rpc_client
from tests.node.test_node import qemu_io
from tests.procs import lhtrio, run

MiB = 1 << 20


def _node(data: Path) -> Any:
    return lhtrio(
        "node", "--name", "n1", "--data-dir", str(data), "--nbd", "127.0.0.1:0",
        "--port-range", "32000-32099", "--grace", "20",
    )  # fmt: skip


async def _start_volume(control: str) -> str:
    """Replica r1 and engine e1 of volume v (reopened if they existed); the volume's NBD URI."""
    async with open_rpc_client(control, client="test") as client:
        replica = await client.call_control(
            "instance_create", name="r1", type="replica", volume="v", size=64 * MiB
        )
        engine = await client.call_control(
            "instance_create",
            name="e1",
            type="engine",
            volume="v",
            size=64 * MiB,
            replicas=[replica["address"]],
        )
    return str(engine["frontend"])


def _volume_meta(data: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((data / "replicas" / "r1" / "volume.meta").read_text())
    return meta


async def test_sigterm_during_writes_stops_cleanly_and_every_flushed_write_survives(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    flushed: list[int] = []
    async with _node(data) as node:
        uri = await _start_volume(node.address)
        stopped = trio.Event()
        under_way = trio.Event()  # five writes flushed, the next ones in flight

        async def writer() -> None:
            # Each qemu-io writes one MiB and flushes; exit 0 means acknowledged and flushed.
            for i in range(1, 64):
                cmd = qemu_io(uri, f"write -P {i} {i}M 1M", "flush")
                if (await run(*cmd, check=False)).returncode:
                    assert stopped.is_set()  # failures only once the node is going away
                    return
                flushed.append(i)
                if len(flushed) == 5:
                    under_way.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            with trio.fail_after(60):
                await under_way.wait()
            stopped.set()
            node.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                assert await node.process.wait() == 0
    assert flushed
    assert _volume_meta(data)["Dirty"] is False
    async with _node(data) as node:
        uri = await _start_volume(node.address)
        reads = [f"read -P {i} {i}M 1M" for i in flushed]
        out = await run(*qemu_io(uri, *reads))
        assert b"Pattern verification failed" not in out.stdout


async def test_after_sigkill_a_restarted_node_reopens_the_same_instances(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with _node(data) as node:
        uri = await _start_volume(node.address)
        await run(*qemu_io(uri, "write -P 7 0 2M", "flush"))
        node.kill()
        await node.process.wait()
    assert _volume_meta(data)["Dirty"] is True  # it did not get to close
    async with _node(data) as node:
        uri = await _start_volume(node.address)
        out = await run(*qemu_io(uri, "read -P 7 0 2M"))
        assert b"Pattern verification failed" not in out.stdout


async def test_im_cli_lists_gets_logs_and_removes(tmp_path: Path) -> None:
    async with _node(tmp_path / "data") as node:
        await _start_volume(node.address)

        async def im(*args: str) -> Any:
            out = await run(sys.executable, "-m", "lhtrio", "im", "--node", node.address, *args)
            return out.stdout.decode()

        listed = json.loads(await im("ls", "-o", "json"))
        assert [(i["name"], i["type"], i["state"]) for i in listed] == [
            ("e1", "engine", "running"),
            ("r1", "replica", "running"),
        ]
        table = await im("ls")
        assert table.splitlines()[0].split()[:4] == ["NAME", "TYPE", "VOLUME", "STATE"]
        assert json.loads(await im("get", "r1", "-o", "json"))["directory"].endswith("/r1")
        assert "replica r1 of volume v" in await im("log", "r1")
        info = json.loads(await im("info", "-o", "json"))
        assert info["name"] == "n1"
        assert info["disks"][0]["scheduled"] == 64 * MiB
        removed = json.loads(await im("rm", "e1", "-o", "json"))
        assert removed["state"] == "stopped"
        missing = await run(
            sys.executable, "-m", "lhtrio", "im", "--node", node.address, "get", "e1", check=False
        )
        assert missing.returncode == 1
        assert b"no instance 'e1'" in missing.stderr
