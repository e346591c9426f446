"""The embedded store through a power cut: every change it acknowledged survives.

The store's file is on a loop disk whose write cache dies with the power
(:mod:`lhtrio.verify.disks`: nbdkit's writeback cache, SIGKILLed, then the file system unmounted
with whatever it had not written back). A writer process creates objects and prints each name
once ``create`` has returned; it is SIGKILLed in full flow, the power is cut and restored, and
the store, opened again after the file system's check, must hold every name printed. Then it
takes writes again. The cut really loses what was not made durable: the chaos runs' power losses
catch a disabled flush fan-out at once (tests/verify/test_chaos.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from lhtrio.manager.store.sqlite import open_sqlite_store
from lhtrio.verify.disks import open_loop_disk

pytestmark = pytest.mark.real

WRITER = """
import sys
import trio
from lhtrio.manager.store.sqlite import open_sqlite_store

async def main(path):
    async with open_sqlite_store(path) as store:
        for i in range(1_000_000):
            await store.create({"kind": "Volume", "metadata": {"name": f"v{i}"}, "spec": {}})
            print(f"v{i}", flush=True)

trio.run(main, sys.argv[1])
"""

ACKNOWLEDGED = 300  # creates the writer has reported before it is killed (at least)


async def _acknowledged_until_killed(path: Path) -> list[str]:
    """Run the writer, read what it acknowledges, SIGKILL it after ``ACKNOWLEDGED``; every name
    it printed (the pipe's rest included)."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    out = b""
    try:
        with trio.fail_after(120):
            while out.count(b"\n") < ACKNOWLEDGED:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the writer exited {await process.wait()}"
                out += chunk
    finally:
        process.kill()
        await process.wait()
    while chunk := await process.stdout.receive_some():  # printed before it died
        out += chunk
    await process.stdout.aclose()
    return out.decode().split("\n")[:-1]  # (a line cut short by the kill is not one)


async def test_every_change_the_embedded_store_acknowledged_survives_a_power_cut(
    tmp_path: Path,
) -> None:
    async with open_loop_disk(tmp_path / "disk.img", tmp_path / "disk", 64 << 20) as disk:
        path = disk.mountpoint / "store.db"
        acknowledged = await _acknowledged_until_killed(path)
        assert len(acknowledged) >= ACKNOWLEDGED
        await disk.power_cut()
        await disk.power_on()
        async with open_sqlite_store(path) as store:
            listing = await store.list("Volume")
            names = {str(d["metadata"]["name"]) for d in listing.documents}  # type: ignore[index]
            missing = [n for n in acknowledged if n not in names]
            assert missing == [], f"{len(missing)} acknowledged creates lost: {missing[:5]}"
            assert len(names) <= len(acknowledged) + 1  # at most the one it was making
            created = await store.create({"kind": "Volume", "metadata": {"name": "after"}})
            assert int(str(created["metadata"]["resourceVersion"])) > listing.revision  # type: ignore[index]
