"""``lhtrio demo``: a replicated volume on this machine, driven by real NBD clients.

Until the control plane exists (a local cluster on the embedded store), the most useful thing to
show is the data path end to end: three replicas and an engine in one trio process, the volume
served over NBD on a Unix socket, and the standard tools (``nbdinfo``, ``qemu-io``) using it —
including losing a replica in the middle without losing data. On a terminal it then keeps serving
until Ctrl-C, so you can point your own NBD clients at it.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable

import click
import trio

from lhtrio.clients.engine import EngineClient
from lhtrio.engine.server import serve_engine
from lhtrio.frontend.nbd.server import serve_nbd
from lhtrio.net import open_rpc_client, parse_address
from lhtrio.replica.server import serve_replica
from lhtrio.units import format_size, human_size
from lhtrio.wire import Role

SIZE = 256 << 20
VOLUME = "demo"


def _say(text: str) -> None:
    click.echo(text)


async def _tool(*cmd: str) -> str:
    result = await trio.run_process(
        list(cmd), capture_stdout=True, capture_stderr=True, check=False
    )
    out = (result.stdout + result.stderr).decode(errors="replace").strip()
    if result.returncode:
        raise click.ClickException(f"{' '.join(cmd)} failed:\n{out}")
    return out


async def run_demo(stop: trio.Event, directory: str | None = None) -> None:
    """The demo; ``stop`` (set by SIGINT/SIGTERM) ends it early, stopping the engine gracefully."""
    missing = [tool for tool in ("qemu-io", "nbdinfo") if shutil.which(tool) is None]
    if missing:
        raise click.ClickException(
            f"the demo drives real NBD clients: install {' '.join(missing)} "
            "(Debian: apt-get install qemu-utils libnbd-bin)"
        )
    with tempfile.TemporaryDirectory(prefix="lhtrio-demo-") as scratch:
        base = directory or scratch
        socket = os.path.join(base, "demo.sock")
        uri = f"nbd+unix:///{VOLUME}?socket={socket}"
        # Shutdown order matters (also on Ctrl-C): the engine first, so it can flush through
        # the replicas, then the replicas (their scopes are shielded until then).
        async with trio.open_nursery() as replica_nursery:
            replicas: list[tuple[str, trio.CancelScope]] = [
                await replica_nursery.start(_replica, os.path.join(base, f"r{n}")) for n in range(3)
            ]
            engine_stop = trio.Event()
            try:
                async with trio.open_nursery() as nursery:
                    host, port, _ = await nursery.start(
                        functools.partial(
                            serve_engine,
                            VOLUME,
                            SIZE,
                            [address for address, _ in replicas],
                            frontend=functools.partial(serve_nbd, parse_address(f"unix:{socket}")),
                            stop=engine_stop,
                        )
                    )
                    _say(f"volume '{VOLUME}' ({format_size(SIZE)}), 3 replicas in {base}")
                    _say(f"  NBD:     {uri}")
                    _say(f"  control: lhtrio ctl --engine {host}:{port} info")
                    async with trio.open_nursery() as walk:  # a signal ends the walkthrough early
                        walk.start_soon(_cancel_when, stop, walk.cancel_scope)
                        async with open_rpc_client(
                            f"{host}:{port}", client="demo", role=Role.ENGINE
                        ) as rpc:
                            ctl = EngineClient(rpc)
                            await _walkthrough(ctl, uri, replicas)
                            await _rebuild(
                                ctl,
                                replicas,
                                functools.partial(replica_nursery.start, _replica),
                                os.path.join(base, "r1"),
                            )
                            if sys.stdin.isatty():
                                _say(
                                    f"\nserving {uri} — try: qemu-io -f raw -c 'read -v 0 64' "
                                    f"'{uri}'"
                                )
                                _say("press Ctrl-C to stop")
                                await stop.wait()
                        walk.cancel_scope.cancel()
                    engine_stop.set()  # the engine drains its clients, flushes, and returns
            finally:
                for _, scope in replicas:
                    scope.cancel()
    _say("stopped: the engine flushed, every replica closed cleanly")


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _replica(
    path: str, *, task_status: trio.TaskStatus[tuple[str, trio.CancelScope]]
) -> None:
    with trio.CancelScope(shield=True) as scope:
        name = os.path.basename(path)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(
                functools.partial(serve_replica, path, size=SIZE, volume=VOLUME, instance=name)
            )
            task_status.started((address, scope))


async def _show(ctl: EngineClient) -> None:
    info = await ctl.info()
    modes = ", ".join(f"{r.address} {r.mode.value}" for r in info.replicas)
    _say(f"  engine: volume {info.state.value}; replicas {modes}")


async def _walkthrough(
    ctl: EngineClient, uri: str, replicas: list[tuple[str, trio.CancelScope]]
) -> None:
    _say("\n$ nbdinfo " + uri)
    info = await _tool("nbdinfo", uri)
    _say("  " + "\n  ".join(line for line in info.splitlines() if "export-size" in line))
    _say("\n$ qemu-io: write 0xab at 0 (64 KiB) and 0xcd at 100001 (unaligned), read back")
    await _tool("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", "-c",
                "write -P 0xcd 100001 3333", "-c", "read -P 0xab 0 64k", "-c",
                "read -P 0xcd 100001 3333", uri)  # fmt: skip
    _say("  patterns verified")
    await _show(ctl)
    await ctl.snapshot_create("before-change", {"demo": "yes"})
    await _tool("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", uri)
    _say("\nsnapshot 'before-change' taken on all replicas, then 0x11 written over block 0")
    address, scope = replicas[1]
    scope.cancel()
    _say(f"\nreplica {address} stopped: writes keep going to the other two")
    await _tool(
        "qemu-io", "-f", "raw", "-c", "write -P 0x22 1M 64k", "-c", "read -P 0x22 1M 64k", uri
    )
    await _show(ctl)
    await ctl.frontend_stop()
    await ctl.snapshot_revert("before-change")
    await ctl.frontend_start()
    await _tool("qemu-io", "-f", "raw", "-c", "read -P 0xab 0 64k", uri)
    _say("\nfrontend stopped, reverted to 'before-change', started: block 0 reads 0xab again")
    snapshots = await ctl.snapshot_ls()
    _say("  snapshots: " + ", ".join(s.name for s in snapshots))


async def _rebuild(
    ctl: EngineClient,
    replicas: list[tuple[str, trio.CancelScope]],
    start: Callable[[str], Awaitable[tuple[str, trio.CancelScope]]],
    path: str,
) -> None:
    """Bring the stopped replica (``path``) back and rebuild it online, replica to replica."""
    old, _ = replicas[1]
    replicas[1] = await start(path)
    address = replicas[1][0]
    progress = await ctl.replica_add(address)
    while progress.running:
        latest = await ctl.rebuild_status(wait=1.0)
        if latest is None:  # not while this engine runs: it keeps its last rebuild
            raise click.ClickException(f"the engine reports no rebuild of {address}")
        progress = latest
    await ctl.replica_rm(old)
    _say(
        f"\nreplica r1 restarted on {address}, added and rebuilt online from "
        f"{progress.source}: {progress.state.value}, {human_size(progress.sent_bytes)} sent "
        f"for {human_size(progress.total_bytes)} of snapshot data in {progress.seconds:.2f} s"
    )
    await _show(ctl)
