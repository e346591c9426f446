"""``lhtrio demo``: the data path end to end, on loopback, in one command.

Until the control plane exists (a local cluster on the embedded store), the most useful thing to
show is a replica being driven over the wire protocol exactly as an engine will drive it: start a
replica server on a fresh directory, write and read through the pipelining RPC client, take a
snapshot, overwrite, revert, and show the files on disk and the throughput of a short burst.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time

import click
import trio

from lhtrio.net import RpcClient, open_rpc_client
from lhtrio.replica.server import serve_replica
from lhtrio.units import format_size
from lhtrio.wire import Data, Flush, Read, Write

SIZE = 256 << 20


def _say(text: str) -> None:
    click.echo(text)


async def run_demo(directory: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="lhtrio-demo-") as scratch:
        path = os.path.join(directory or scratch, "demo-r-1")
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(
                functools.partial(
                    serve_replica, path, size=SIZE, volume="demo", instance="demo-r-1"
                )
            )
            _say(f"replica demo-r-1 of volume 'demo' ({format_size(SIZE)}) serving {path}")
            _say(f"  listening on tcp://{host}:{port} (protocol v1)")
            async with open_rpc_client(f"{host}:{port}", volume="demo", client="demo") as rpc:
                await _walkthrough(rpc, path)
            nursery.cancel_scope.cancel()
        _say("replica closed cleanly (flushed, Dirty=false)")


async def _read(rpc: RpcClient, offset: int, length: int) -> bytes:
    reply = await rpc.call(Read(offset, length))
    assert isinstance(reply, Data)
    return bytes(reply.data)


async def _walkthrough(rpc: RpcClient, path: str) -> None:
    await rpc.call(Write(0, b"A" * 4096))
    await rpc.call(Write(5000, b"unaligned hello"))
    await rpc.call(Flush())
    got = await _read(rpc, 5000, 15)
    _say(f"wrote 'A'*4096 at 0 and 'unaligned hello' at 5000: reads back {got!r}")
    await rpc.call_control("snapshot", name="s1", labels={"demo": "yes"})
    await rpc.call(Write(0, b"B" * 4096))
    got = await _read(rpc, 0, 4)
    _say(f"snapshot s1 taken, then 'B'*4096 written at 0: block 0 reads {got!r}...")
    await rpc.call_control("revert", name="s1")
    _say(f"reverted to s1: block 0 reads {await _read(rpc, 0, 4)!r}...")

    batch = [Write(offset, b"x" * 4096) for offset in range(0, 32 * 4096, 4096)]
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:
        await rpc.call_many(batch)
        count += len(batch)
    elapsed = time.perf_counter() - start
    _say(f"burst: {count / elapsed:,.0f} 4 KiB writes/s with 32 in flight over loopback")

    info = await rpc.call_control("info")
    _say(f"chain (head first): {' <- '.join(info['chain'])}")
    _say(f"revision counter {info['revision_counter']}, files in {path}:")
    for name in sorted(os.listdir(path)):
        st = os.stat(os.path.join(path, name))
        _say(f"  {name:32} {st.st_size:>12,} bytes, {st.st_blocks * 512:>10,} allocated")
