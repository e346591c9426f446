"""A minimal NBD client for tests that must know exactly which requests are in flight.

Fixed newstyle, ``NBD_OPT_GO``, simple replies only; requests are sent and their replies read
separately, so a test can hold many in flight, kill or stop the server, and see what each one
got. Real clients (qemu-io, nbdinfo, fio, libnbd) cover everything else.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

READ, WRITE, DISC, FLUSH = 0, 1, 2, 3
ESHUTDOWN = 108
_REQUEST = struct.Struct(">IHHQQI")
_REPLY = struct.Struct(">IIQ")
_OPTION = struct.Struct(">QII")
_OPTION_REPLY = struct.Struct(">QIII")
_IHAVEOPT = 0x49484156454F5054
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY = 0x67446698


class NbdClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._handles = 0

    @classmethod
    @asynccontextmanager
    async def connect(cls, path: Path, export: str = "vol") -> AsyncIterator[NbdClient]:
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            client = cls(stream)
            await client._handshake(export.encode())
            yield client

    async def exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise trio.BrokenResourceError("server closed the connection")
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def _handshake(self, export: bytes) -> None:
        greeting = await self.exactly(18)
        assert greeting[:8] == b"NBDMAGIC"
        await self.stream.send_all(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        data = struct.pack(">I", len(export)) + export + struct.pack(">H", 0)
        await self.stream.send_all(_OPTION.pack(_IHAVEOPT, 7, len(data)) + data)  # NBD_OPT_GO
        while True:
            _, _, reply, length = _OPTION_REPLY.unpack(await self.exactly(_OPTION_REPLY.size))
            await self.exactly(length)
            if reply == 1:  # NBD_REP_ACK
                return
            assert reply == 3, f"NBD_OPT_GO refused: reply type {reply:#x}"  # NBD_REP_INFO

    def reserve(self) -> int:
        """A fresh handle, to record before the request is sent (its reply may come first)."""
        self._handles += 1
        return self._handles

    async def send(
        self, kind: int, offset: int = 0, data: bytes = b"", length: int = 0, handle: int = 0
    ) -> int:
        """Send one request (under ``handle``, or a fresh one); returns its handle."""
        handle = handle or self.reserve()
        size = len(data) if kind == WRITE else length
        header = _REQUEST.pack(_REQUEST_MAGIC, 0, kind, handle, offset, size)
        await self.stream.send_all(header + data)
        return handle

    async def reply(self, *, read: int = 0) -> tuple[int, int, bytes]:
        """The next simple reply: (handle, NBD error, data of a read of ``read`` bytes)."""
        magic, error, handle = _REPLY.unpack(await self.exactly(_REPLY.size))
        assert magic == _SIMPLE_REPLY, f"not a simple reply: {magic:#x}"
        data = await self.exactly(read) if read and not error else b""
        return handle, error, data
