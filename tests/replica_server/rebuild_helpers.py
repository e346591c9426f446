"""The engine's side of a rebuild, driven by hand over control calls (shared by the sync tests)."""

from __future__ import annotations

from typing import Any

import trio

from lhtrio.net import RpcClient

VOLUME = "v"
STAMP = "2026-11-22T10:00:00Z"
DISK_KEYS = ("parent", "removed", "user_created", "created", "labels", "size")


def plan(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``adopt`` argument the engine builds from the source's ``info``."""
    return {
        name: {key: disk[key] for key in DISK_KEYS}
        for name, disk in info["disks"].items()
        if name != info["head"]
    }


async def begin(
    source: RpcClient, target: RpcClient, snapshot: str
) -> tuple[dict[str, Any], list[str]]:
    """Mark the target rebuilding, take ``snapshot`` on both, adopt: (the plan, existing files)."""
    await target.call_control("set_rebuilding", rebuilding=True)
    for client in (source, target):
        await client.call_control("snapshot", name=snapshot, user_created=False, created=STAMP)
    disks = plan(await source.call_control("info"))
    existing: list[str] = await target.call_control("adopt", disks=disks)
    return disks, existing


async def wait_sync(target: RpcClient) -> dict[str, Any]:
    """``sync_status`` until the transfer ended (each call returns at the next change)."""
    with trio.fail_after(20):
        status: dict[str, Any] = await target.call_control("sync_status", wait=10)
        while status["state"] == "syncing":
            status = await target.call_control("sync_status", wait=10)
    return status
