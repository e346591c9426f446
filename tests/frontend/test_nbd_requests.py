"""Request shapes real clients send, through ``serve_nbd`` to a recording device (issue 16
#18-#20): zero-length requests, large zeroing, FAST_ZERO, CACHE, MULTI_CONN, hole chunks."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from lhtrio.frontend.nbd.server import serve_nbd
from lhtrio.net import parse_address

from .nbd_client import (
    BLOCK_STATUS_CHUNK,
    ERROR_CHUNK,
    NONE_CHUNK,
    OFFSET_DATA,
    OFFSET_HOLE,
    Chunk,
    MemoryDevice,
    RawClient,
)
from .nbd_helpers import (
    BLOCK_STATUS,
    CACHE,
    DF,
    EINVAL,
    FAST_ZERO,
    FUA,
    NO_HOLE,
    READ,
    TRIM,
    WRITE,
    WRITE_ZEROES,
    be,
    request,
    write,
)

MiB = 1 << 20
ENOTSUP = errno.ENOTSUP
# HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, SEND_DF (structured replies)
BASE_FLAGS = 0x1 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80
MULTI_CONN, SEND_CACHE, SEND_FAST_ZERO = 0x100, 0x400, 0x800


@asynccontextmanager
async def served(
    tmp_path: Path, device: MemoryDevice, *, structured: bool = True
) -> AsyncIterator[RawClient]:
    """A client in transmission with ``device`` (structured replies and base:allocation)."""
    address = parse_address(f"unix:{tmp_path}/nbd.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_nbd, address, device)
        async with await RawClient.connect(address) as client:
            await client.go(structured=structured)
            with trio.fail_after(10):
                yield client
        nursery.cancel_scope.cancel()


def _error(chunk: Chunk) -> int:
    assert chunk.type == ERROR_CHUNK, chunk
    return int.from_bytes(chunk.payload[:4], "big")


async def test_the_export_offers_multi_conn_cache_and_fast_zero(tmp_path: Path) -> None:
    async with served(tmp_path, MemoryDevice()) as client:
        assert client.flags == BASE_FLAGS | MULTI_CONN | SEND_CACHE | SEND_FAST_ZERO


_NAMES = {READ: "READ", WRITE: "WRITE", TRIM: "TRIM", WRITE_ZEROES: "WRITE_ZEROES", CACHE: "CACHE"}
ZERO_LENGTH = [
    pytest.param(command, flags, id=f"{_NAMES[command]}{'+FUA' if flags else ''}")
    for command in (READ, WRITE, TRIM, WRITE_ZEROES)
    for flags in (0, FUA)
] + [pytest.param(CACHE, 0, id="CACHE")]  # (CACHE takes no flag at all)


@pytest.mark.parametrize(("command", "flags"), ZERO_LENGTH)
async def test_zero_length_requests_are_answered_at_once(
    tmp_path: Path, command: int, flags: int
) -> None:
    """issue 16 #18: one zero-length TRIM or WRITE_ZEROES took the whole volume down."""
    device = MemoryDevice()
    async with served(tmp_path, device) as client:
        await client.send(request(command, 7, 4096, 0, flags))
        if command == READ:
            assert await client.chunks() == [Chunk(1, NONE_CHUNK, 7, b"")]
        else:
            assert await client.simple_reply() == (0, 7)
    # TRIM, WRITE_ZEROES and CACHE never reach the device; READ and WRITE do (the engine
    # sends a zero-length Read or Write to its replicas like any other).
    assert [call[0] for call in device.calls if call[0] not in ("read", "write")] == []


async def test_zero_length_block_status_is_refused_as_qemu_nbd_does(tmp_path: Path) -> None:
    async with served(tmp_path, MemoryDevice()) as client:
        await client.send(request(BLOCK_STATUS, 7, 0, 0))
        (chunk,) = await client.chunks()
        assert _error(chunk) == EINVAL


async def test_write_zeroes_and_trim_of_any_length_reach_the_device_whole(tmp_path: Path) -> None:
    """issue 16 #19: WRITE_ZEROES over 32 MiB was refused with EINVAL (the device splits)."""
    device = MemoryDevice(size=64 * MiB)
    device.disk[40 * MiB - 1] = 1
    async with served(tmp_path, device) as client:
        await client.send(request(WRITE_ZEROES, 1, 0, 40 * MiB, FUA))
        assert await client.simple_reply() == (0, 1)
        await client.send(request(TRIM, 2, 0, 40 * MiB))
        assert await client.simple_reply() == (0, 2)
    assert device.calls == [
        ("write_zeroes", 0, 40 * MiB, True, False, True),
        ("trim", 0, 40 * MiB),
    ]
    assert device.disk[40 * MiB - 1] == 0


async def test_fast_zero_and_no_hole_reach_the_device_as_asked(tmp_path: Path) -> None:
    device = MemoryDevice()
    async with served(tmp_path, device) as client:
        await client.send(request(WRITE_ZEROES, 1, 0, MiB, FAST_ZERO))
        assert await client.simple_reply() == (0, 1)
        await client.send(request(WRITE_ZEROES, 2, 0, MiB, NO_HOLE))
        assert await client.simple_reply() == (0, 2)
    assert device.calls == [
        ("write_zeroes", 0, MiB, False, True, True),
        ("write_zeroes", 0, MiB, False, False, False),
    ]


async def test_a_fast_zero_the_device_cannot_do_fast_is_enotsup(tmp_path: Path) -> None:
    device = MemoryDevice()
    device.fast_zero = False
    device.disk[:4] = b"keep"
    async with served(tmp_path, device) as client:
        await client.send(request(WRITE_ZEROES, 1, 0, MiB, FAST_ZERO))
        (chunk,) = await client.chunks()
        assert _error(chunk) == ENOTSUP
        assert b"older snapshots hold data there" in chunk.payload
        # qemu-img convert then zeroes the slow way, which works:
        await client.send(request(WRITE_ZEROES, 2, 0, MiB))
        assert await client.simple_reply() == (0, 2)
    assert device.disk[:4] == bytes(4)


async def test_fast_zero_with_no_hole_is_enotsup_at_once(tmp_path: Path) -> None:
    device = MemoryDevice()
    async with served(tmp_path, device) as client:
        await client.send(request(WRITE_ZEROES, 1, 0, MiB, FAST_ZERO | NO_HOLE))
        (chunk,) = await client.chunks()
        assert _error(chunk) == ENOTSUP
    assert device.calls == []  # nothing reached the device


async def test_cache_is_accepted_and_changes_nothing(tmp_path: Path) -> None:
    device = MemoryDevice()
    async with served(tmp_path, device) as client:
        await client.send(request(CACHE, 1, 0, 4 * MiB))
        assert await client.simple_reply() == (0, 1)
        await client.send(request(CACHE, 2, 0, 4096, FUA))  # no flag is defined for CACHE
        (chunk,) = await client.chunks()
        assert _error(chunk) == EINVAL
    assert device.calls == []


async def test_structured_reads_send_zeros_as_holes_unless_the_client_set_df(
    tmp_path: Path,
) -> None:
    device = MemoryDevice()
    device.disk[MiB + 4096 : MiB + 8192] = b"d" * 4096
    async with served(tmp_path, device) as client:
        await client.send(request(READ, 1, MiB, 64 * 1024))
        assert await client.chunks() == [
            Chunk(0, OFFSET_HOLE, 1, be(MiB, 8) + be(4096, 4)),
            Chunk(0, OFFSET_DATA, 1, be(MiB + 4096, 8) + b"d" * 4096),
            Chunk(1, OFFSET_HOLE, 1, be(MiB + 8192, 8) + be(56 * 1024, 4)),
        ]
        await client.send(request(READ, 2, 0, 8 * 4096))  # all zeros: one hole
        assert await client.chunks() == [Chunk(1, OFFSET_HOLE, 2, be(0, 8) + be(32768, 4))]
        await client.send(request(READ, 3, MiB, 3 * 4096, DF))  # DF: one data chunk, zeros in
        assert await client.chunks() == [
            Chunk(1, OFFSET_DATA, 3, be(MiB, 8) + bytes(4096) + b"d" * 4096 + bytes(4096))
        ]


async def test_simple_reads_carry_the_zeros(tmp_path: Path) -> None:
    async with served(tmp_path, MemoryDevice(), structured=False) as client:
        await client.send(request(READ, 1, 0, 8192))
        assert await client.simple_reply() == (0, 1)
        assert await client.exactly(8192) == bytes(8192)


async def test_block_status_reports_what_is_not_allocated_as_hole_and_zero(
    tmp_path: Path,
) -> None:
    device = MemoryDevice()
    async with served(tmp_path, device) as client:
        await client.send(request(BLOCK_STATUS, 1, 0, MiB))
        assert await client.chunks() == [
            Chunk(1, BLOCK_STATUS_CHUNK, 1, be(1, 4) + be(MiB, 4) + be(3, 4))
        ]
        await client.send(write(2, 0, b"x" * 4096))
        assert await client.simple_reply() == (0, 2)
        await client.send(request(BLOCK_STATUS, 3, 0, MiB))
        assert await client.chunks() == [
            Chunk(1, BLOCK_STATUS_CHUNK, 3, be(1, 4) + be(MiB, 4) + be(0, 4))
        ]
