"""``lhtrio replica`` as a real process, driven over loopback by the RPC client of this process."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from lhtrio.errors import (
    AlreadyExistsError,
    ConnectionLostError,
    IdentityMismatchError,
    InvalidArgumentError,
    OutOfRangeError,
)
from lhtrio.net import RpcClient, open_rpc_client
from lhtrio.wire import Data, Done, Flush, Hello, Read, Unmap, Write, encode_frame
from tests.procs import lhtrio

MiB = 1 << 20


@asynccontextmanager
async def replica_process(directory: Path, *args: str) -> AsyncIterator[tuple[str, trio.Process]]:
    """Run ``lhtrio replica DIRECTORY ARGS`` and yield (its address, the process)."""
    async with lhtrio("replica", str(directory), *args) as proc:
        yield proc.address, proc.process


async def read(client: RpcClient, offset: int, length: int) -> bytes:
    reply = await client.call(Read(offset, length))
    assert isinstance(reply, Data)
    return bytes(reply.data)


def volume_meta(directory: Path) -> dict[str, object]:
    return json.loads((directory / "volume.meta").read_text())  # type: ignore[no-any-return]


def counter(directory: Path) -> int:
    return int((directory / "revision.counter").read_bytes().rstrip(b"\0"))


async def test_write_read_snapshot_revert_through_a_replica_process(tmp_path: Path) -> None:
    d = tmp_path / "vol-a-r-1"
    async with (
        replica_process(d, "--size", "64Mi", "--volume", "vol-a") as (address, proc),
        open_rpc_client(address, volume="vol-a", instance="vol-a-r-1") as client,
    ):
        assert address.startswith("tcp://127.0.0.1:")
        payload = os.urandom(MiB)  # a 1 MiB write travels the direct-receive path
        assert await client.call(Write(3 * MiB, payload)) == Done(MiB)
        assert await client.call(Write(10, b"unaligned")) == Done(9)
        assert await read(client, 3 * MiB, MiB) == payload
        assert await read(client, 0, 32) == bytes(10) + b"unaligned" + bytes(13)
        await client.call(Flush())
        info = await client.call_control("snapshot", name="s1", labels={"app": "db"})
        assert info["chain"] == ["volume-head-001.img", "volume-snap-s1.img"]
        assert info["disks"]["volume-snap-s1.img"]["labels"] == {"app": "db"}
        await client.call(Write(3 * MiB, b"\xff" * 4096))
        with pytest.raises(AlreadyExistsError):
            await client.call_control("snapshot", name="s1")
        await client.call_control("revert", name="s1")
        assert await read(client, 3 * MiB, 4096) == payload[:4096]
        # Unmap of the head: the range reads as the snapshot below it.
        await client.call(Write(8 * MiB, b"\x01" * 8192))
        assert await client.call(Unmap(8 * MiB, 8192)) == Done(8192)
        assert await read(client, 8 * MiB, 8192) == bytes(8192)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await proc.wait() == 0
    meta = volume_meta(d)
    assert meta["Dirty"] is False
    assert meta["Head"] == "volume-head-002.img"
    assert counter(d) == 5  # four writes and one unmap, persisted at the clean close


async def test_bad_requests_get_clear_errors_and_change_nothing(tmp_path: Path) -> None:
    d = tmp_path / "r"
    async with (
        replica_process(d, "--size", "1Mi", "--volume", "v") as (address, _),
        open_rpc_client(address, volume="v") as client,
    ):
        await client.call(Write(0, b"keep" * 1024))
        with pytest.raises(OutOfRangeError, match="outside volume v"):
            await client.call(Write(MiB - 2, b"abcd"))
        with pytest.raises(OutOfRangeError):
            await client.call(Read(MiB, 1))
        for hostile in ("../x", "a/b", "-x", "a\0b", "x" * 65):
            with pytest.raises(InvalidArgumentError):
                await client.call_control("snapshot", name=hostile)
        with pytest.raises(InvalidArgumentError, match="extra fields"):
            await client.call_control("snapshot", name="ok", evil=True)
        with pytest.raises(InvalidArgumentError, match="expected int"):
            await client.call_control("expand", size="2Mi")
        assert await read(client, 0, 4096) == b"keep" * 1024
        info = await client.call_control("info")
        assert info["chain"] == ["volume-head-000.img"]
        assert sorted(os.listdir(d)) == [
            "lhtrio-replica.json",
            "revision.counter",
            "volume-head-000.img",
            "volume-head-000.img.meta",
            "volume.intent",
            "volume.meta",
        ]


async def test_wrong_volume_is_refused(tmp_path: Path) -> None:
    async with replica_process(tmp_path / "r", "--size", "1Mi", "--volume", "v") as (address, _):
        with pytest.raises(IdentityMismatchError, match="serves volume 'v'"):
            async with open_rpc_client(address, volume="other"):
                pass
        with pytest.raises(IdentityMismatchError, match="not instance 'r-2'"):
            async with open_rpc_client(address, volume="v", instance="r-2"):
                pass


async def test_replica_survives_garbage_and_abrupt_disconnects(tmp_path: Path) -> None:
    async with (
        replica_process(tmp_path / "r", "--size", "4Mi", "--volume", "v") as (address, proc),
        open_rpc_client(address, volume="v") as good,
    ):
        await good.call(Write(0, b"\xaa" * 8192))
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        hello = encode_frame(1, Hello("v"))
        for attack in (
            b"\x00" * 100,  # not even a hello
            hello + os.urandom(4096),  # garbage after a good hello
            hello + encode_frame(2, Write(0, b"\x55" * 8192))[:4000],  # cut mid-request
            hello + encode_frame(2, Write(4096, b"\x55" * (2 * MiB)))[:MiB],  # cut mid-payload
        ):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(attack)
            await stream.aclose()
        assert proc.returncode is None
        assert await read(good, 0, 8192) == b"\xaa" * 8192


async def test_sigkill_keeps_every_flushed_write(tmp_path: Path) -> None:
    d = tmp_path / "r"
    blocks = {i: os.urandom(4096) for i in range(0, 64, 3)}
    async with (
        replica_process(d, "--size", "1Mi", "--volume", "v") as (address, proc),
        open_rpc_client(address, volume="v") as client,
    ):
        await client.call_many([Write(i * 4096, data) for i, data in blocks.items()])
        await client.call(Flush())
        flushed_counter = (await client.call_control("info"))["persisted_revision_counter"]
        proc.kill()
        with trio.fail_after(30):
            error = await client.wait_broken()
        assert isinstance(error, ConnectionLostError)
    assert volume_meta(d)["Dirty"] is True
    assert counter(d) == flushed_counter == len(blocks)
    async with (
        replica_process(d, "--volume", "v") as (address, _),
        open_rpc_client(address, volume="v") as client,
    ):
        for i, data in blocks.items():
            assert await read(client, i * 4096, 4096) == data


async def test_purge_runs_in_the_background_with_progress(tmp_path: Path) -> None:
    async with (
        replica_process(tmp_path / "r", "--size", "1Mi", "--volume", "v") as (address, _),
        open_rpc_client(address, volume="v") as client,
    ):
        for n in range(4):
            await client.call(Write(n * 4096, bytes([n + 1]) * 4096))
            await client.call_control("snapshot", name=f"sys{n}", user_created=False)
        status = await client.call_control("purge")
        assert status["purging"]
        with trio.fail_after(30):
            status = await client.call_control("purge_status", wait=True)
        assert status == {"purging": False, "done": 4, "total": 4, "error": ""}
        info = await client.call_control("info")
        assert len(info["chain"]) <= 2
        for n in range(4):
            assert await read(client, n * 4096, 4096) == bytes([n + 1]) * 4096
