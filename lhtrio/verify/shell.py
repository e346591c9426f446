"""Running the system commands the testbed sets machines up with (mount, nbdkit, ip, nft)."""

from __future__ import annotations

import trio

from lhtrio.errors import LhtrioError

__all__ = ["run_command"]


async def run_command(*cmd: str) -> None:
    """Run ``cmd``; LhtrioError naming it, its exit status and what it said, unless it succeeds."""
    result = await trio.run_process(
        list(cmd), capture_stdout=True, capture_stderr=True, check=False
    )
    if result.returncode:
        raise LhtrioError(
            f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.decode().strip()}"
        )
