"""Smoke test against real NBD clients (libnbd's nbdinfo, qemu-io) over a Unix socket.

The server here is a toy: the sans-I/O core wired to a trio socket and a bytearray, just enough
to show the protocol core interoperates. The real server is ``lhtrio.frontend.nbd.server``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import trio

from lhtrio.frontend.nbd.proto import (
    NEED_DATA,
    Aborted,
    BlockStatus,
    Buffer,
    Closed,
    Disconnect,
    ExportInfo,
    Flush,
    Handshake,
    InvalidRequest,
    Item,
    NbdProtocolError,
    Read,
    Ready,
    StateFlag,
    Transmission,
    TransmissionDecoder,
    Trim,
    Write,
    WriteZeroes,
    block_status_chunk,
    error_reply,
    read_reply,
    simple_reply,
)

SIZE = 1 << 20
BLOCK = 4096


def _extents(disk: bytearray, offset: int, length: int) -> list[tuple[int, int]]:
    """Data or hole+zero per 4 KiB block (a bytearray has no holes; zero blocks pose as one)."""
    out: list[tuple[int, int]] = []
    pos, end = offset, offset + length
    while pos < end:
        stop = min((pos // BLOCK + 1) * BLOCK, end)
        flags = 0 if any(disk[pos:stop]) else StateFlag.HOLE | StateFlag.ZERO
        if out and out[-1][1] == flags:
            out[-1] = (out[-1][0] + stop - pos, flags)
        else:
            out.append((stop - pos, flags))
        pos = stop
    return out


def _execute(item: Item, disk: bytearray, t: Transmission, out: list[Buffer]) -> None:
    structured = t.structured_replies
    if isinstance(item, Read):
        data = disk[item.offset : item.offset + item.length]
        read_reply(out, item.handle, item.offset, data, structured=structured)
    elif isinstance(item, Write):
        disk[item.offset : item.offset + item.length] = item.data
        out.append(simple_reply(item.handle))
    elif isinstance(item, Trim | WriteZeroes):
        disk[item.offset : item.offset + item.length] = bytes(item.length)
        out.append(simple_reply(item.handle))
    elif isinstance(item, Flush):
        out.append(simple_reply(item.handle))
    elif isinstance(item, BlockStatus):
        assert t.meta_context is not None
        extents = _extents(disk, item.offset, item.length)
        chunk = block_status_chunk(
            item.handle, t.meta_context, extents, length=item.length, req_one=item.req_one
        )
        out.append(chunk)
    elif isinstance(item, InvalidRequest):
        reply = error_reply(item.handle, item.error, structured=structured, message=item.message)
        out.append(reply)


async def _serve_one(sock: trio.socket.SocketType, export: ExportInfo, disk: bytearray) -> None:
    async with trio.SocketStream(sock) as stream:
        hs = Handshake(lambda name: export if name in ("", export.name) else None)
        await stream.send_all(hs.data_to_send())
        while True:
            event = hs.next_event()
            if event is NEED_DATA:
                data = await stream.receive_some(65536)
                hs.receive_data(data) if data else hs.eof()
                continue
            await stream.send_all(hs.data_to_send())
            if isinstance(event, Aborted | Closed):
                return
            if isinstance(event, Ready):
                break
        t = event.transmission
        decoder = TransmissionDecoder(t)
        decoder.receive_data(hs.trailing_data)
        while True:
            out: list[Buffer] = []
            items = decoder.drain()
            for item in items:
                _execute(item, disk, t, out)
            if out:
                await stream.send_all(b"".join(out))
            if any(isinstance(item, Disconnect) for item in items):
                return
            n = await sock.recv_into(decoder.receive_buffer())
            if not n:
                decoder.eof()
                return
            decoder.commit(n)


async def _serve(listener: trio.socket.SocketType, export: ExportInfo, disk: bytearray) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            sock, _ = await listener.accept()
            nursery.start_soon(_serve_one_logged, sock, export, disk)


async def _serve_one_logged(
    sock: trio.socket.SocketType, export: ExportInfo, disk: bytearray
) -> None:
    try:
        await _serve_one(sock, export, disk)
    except trio.BrokenResourceError:
        pass  # libnbd closes right after NBD_OPT_ABORT without waiting for the ACK (allowed)
    except NbdProtocolError as exc:  # a client we do not understand is a test failure
        raise AssertionError(f"protocol error with a real client: {exc}") from exc


async def _run(*argv: str) -> str:
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout.decode()


async def test_nbdinfo_and_qemu_io_against_the_protocol_core(tmp_path: Path) -> None:
    path = str(tmp_path / "nbd.sock")
    export = ExportInfo(name="vol", size=SIZE, description="lhtrio toy export")
    disk = bytearray(SIZE)
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(path)
    listener.listen()
    uri = f"nbd+unix:///vol?socket={path}"
    with listener:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, listener, export, disk)

            info = json.loads(await _run("nbdinfo", "--json", uri))
            [ex] = info["exports"]
            assert ex["export-name"] == "vol"
            assert ex["description"] == "lhtrio toy export"
            assert ex["export-size"] == SIZE
            assert ex["is_read_only"] is False
            assert [ex[k] for k in ("can_flush", "can_fua", "can_trim", "can_zero")] == [True] * 4
            assert ex["can_df"] is True
            assert ex["can_multi_conn"] is False
            assert ex["block_size_minimum"] == 1
            assert ex["block_size_preferred"] == 4096
            assert ex["block_size_maximum"] == 32 << 20
            assert "base:allocation" in ex["contexts"]

            output = await _run(
                "qemu-io", "-f", "raw",
                "-c", "write -P 0xab 0 64k",
                "-c", "read -P 0xab 0 64k",
                "-c", "aio_write -P 0xcd 128k 4k",
                "-c", "aio_flush",
                "-c", "read -P 0xcd 128k 4k",
                uri,
            )  # fmt: skip
            assert "verification failed" not in output
            assert disk[: 64 << 10] == b"\xab" * (64 << 10)
            assert disk[128 << 10 : 132 << 10] == b"\xcd" * 4096

            extents = json.loads(await _run("nbdinfo", "--map", "--json", uri))
            assert [(e["offset"], e["length"], e["type"]) for e in extents] == [
                (0, 64 << 10, 0),
                (64 << 10, 64 << 10, 3),
                (128 << 10, 4 << 10, 0),
                (132 << 10, SIZE - (132 << 10), 3),
            ]
            nursery.cancel_scope.cancel()
