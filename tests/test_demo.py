"""The main job, ``lhtrio demo``, runs to the end with real NBD clients (not on a terminal)."""

from __future__ import annotations

import subprocess
import sys

import trio

from tests.procs import SAFETY_NET


async def test_the_demo_walks_through_and_stops_cleanly() -> None:
    with trio.fail_after(SAFETY_NET):
        result = await trio.run_process(
            [sys.executable, "-m", "lhtrio", "demo"],
            stdin=subprocess.DEVNULL,  # not a terminal: the demo does not wait for Ctrl-C
            capture_stdout=True,
            capture_stderr=True,
        )
    out = result.stdout.decode()
    assert "patterns verified" in out
    assert "block 0 reads 0xab again" in out
    assert "rebuilt online" in out
    assert ": done," in out
    assert "volume healthy" in out.split("rebuilt online")[1]
    assert out.rstrip().endswith("stopped: the engine flushed, every replica closed cleanly")
