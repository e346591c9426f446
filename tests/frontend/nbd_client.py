"""A raw NBD client and block devices for tests of the trio server (``serve_nbd``).

The client speaks exact bytes (built by :mod:`.nbd_helpers`, typed in from the protocol
document), so a test sees precisely what the server sends and when it closes. The devices
implement the frontend's ``BlockDevice`` over a bytearray: :class:`MemoryDevice` answers at
once and records every call; :class:`HeldDevice` holds its writes until the test releases them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from lhtrio.errors import LhtrioError, NotSupportedError
from lhtrio.net import Address

from .nbd_helpers import (
    CHUNK_MAGIC,
    GO,
    GREETING,
    REP_ACK,
    REPLY_MAGIC,
    SET_META_CONTEXT,
    SIMPLE_MAGIC,
    STRUCTURED_REPLY,
    be,
    go_data,
    meta_data,
    option,
)

OFFSET_DATA, OFFSET_HOLE, BLOCK_STATUS_CHUNK, NONE_CHUNK = 1, 2, 5, 0
ERROR_CHUNK = (1 << 15) + 1


@attrs.frozen
class Chunk:
    flags: int
    type: int
    handle: int
    payload: bytes


class RawClient:
    """One NBD client connection; every method reads exactly what it expects."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self.flags = 0

    @classmethod
    async def connect(cls, address: Address) -> RawClient:
        if address.is_unix:
            stream: trio.abc.Stream = await trio.open_unix_socket(address.path)
        else:
            stream = await trio.open_tcp_stream(address.host, address.port)
        return cls(stream)

    async def exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError(f"server closed after {len(self._buf)} of {n} bytes")
            self._buf += data
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def closed(self) -> bool:
        """True when the server closed the connection (after everything it sent was read)."""
        if self._buf:
            return False
        try:
            return not await self.stream.receive_some()
        except trio.BrokenResourceError:  # (a reset also closes it)
            return True

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def greeting(self, client_flags: int = 3) -> None:
        assert await self.exactly(len(GREETING)) == GREETING
        await self.send(be(client_flags, 4))

    async def option_replies(self, number: int) -> list[tuple[int, bytes]]:
        """``(reply type, data)`` of the replies to option ``number``, up to its final one."""
        out = []
        while True:
            head = await self.exactly(20)
            assert head[:8] == REPLY_MAGIC
            assert int.from_bytes(head[8:12], "big") == number
            reply, length = int.from_bytes(head[12:16], "big"), int.from_bytes(head[16:20], "big")
            out.append((reply, await self.exactly(length)))
            if reply == REP_ACK or reply & (1 << 31):
                return out

    async def export_name(self, name: str = "vol") -> None:
        """Enter transmission with NBD_OPT_EXPORT_NAME (simple replies, NO_ZEROES)."""
        await self.greeting()
        await self.send(option(1, name.encode()))
        reply = await self.exactly(10)
        self.flags = int.from_bytes(reply[8:], "big")

    async def go(self, name: str = "vol", *, structured: bool = True) -> None:
        """Enter transmission with NBD_OPT_GO (and structured replies + base:allocation)."""
        await self.greeting()
        if structured:
            await self.send(option(STRUCTURED_REPLY))
            assert (await self.option_replies(STRUCTURED_REPLY))[-1][0] == REP_ACK
            await self.send(option(SET_META_CONTEXT, meta_data(name, "base:allocation")))
            assert (await self.option_replies(SET_META_CONTEXT))[-1][0] == REP_ACK
        await self.send(option(GO, go_data(name)))
        replies = await self.option_replies(GO)
        assert replies[-1][0] == REP_ACK, replies
        export = next(data for reply, data in replies if data[:2] == be(0, 2))
        self.flags = int.from_bytes(export[10:12], "big")

    async def simple_reply(self) -> tuple[int, int]:
        """``(error, handle)`` of the next simple reply (data of a read not included)."""
        head = await self.exactly(16)
        assert head[:4] == SIMPLE_MAGIC, head
        return int.from_bytes(head[4:8], "big"), int.from_bytes(head[8:], "big")

    async def chunks(self) -> list[Chunk]:
        """Every chunk of the next structured reply, up to the one flagged DONE."""
        out = []
        while True:
            head = await self.exactly(20)
            assert head[:4] == CHUNK_MAGIC, head
            flags, kind = int.from_bytes(head[4:6], "big"), int.from_bytes(head[6:8], "big")
            handle, length = int.from_bytes(head[8:16], "big"), int.from_bytes(head[16:], "big")
            out.append(Chunk(flags, kind, handle, await self.exactly(length)))
            if flags & 1:
                return out

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class MemoryDevice:
    """A ``BlockDevice`` over a bytearray that answers at once and records its calls."""

    name = "vol"

    def __init__(self, size: int = 8 << 20) -> None:
        self.size = size
        self.disk = bytearray(size)
        self.calls: list[tuple[Any, ...]] = []
        self.fast_zero = True  # False: a fast zero is refused (older snapshots hold data)

    def start_writes(
        self, writes: Sequence[tuple[int, Any, bool]], done: Callable[[LhtrioError | None], None]
    ) -> bool:
        self._write(writes)
        done(None)
        return True

    def _write(self, writes: Sequence[tuple[int, Any, bool]]) -> None:
        for offset, data, fua in writes:
            self.calls.append(("write", offset, len(data), fua))
            self.disk[offset : offset + len(data)] = data

    def start_reads(
        self, reads: Sequence[tuple[int, int]], done: Callable[[list[Any] | LhtrioError], None]
    ) -> bool:
        done(self._read(reads))
        return True

    def _read(self, reads: Sequence[tuple[int, int]]) -> list[Any]:
        self.calls += [("read", offset, n) for offset, n in reads]
        return [bytes(self.disk[offset : offset + n]) for offset, n in reads]

    async def read_batch(self, reads: Sequence[tuple[int, int]]) -> list[Any]:
        return self._read(reads)

    async def write_batch(self, writes: Sequence[tuple[int, Any, bool]]) -> None:
        self._write(writes)

    async def write_zeroes(
        self, offset: int, length: int, *, fua: bool, fast: bool = False, punch: bool = True
    ) -> None:
        self.calls.append(("write_zeroes", offset, length, fua, fast, punch))
        if fast and not self.fast_zero:
            raise NotSupportedError("older snapshots hold data there")
        self.disk[offset : offset + length] = bytes(length)

    async def trim(self, offset: int, length: int) -> None:
        self.calls.append(("trim", offset, length))

    async def flush(self) -> None:
        self.calls.append(("flush",))

    def linger(self, client: int, *, partial: bool = False) -> bool:
        return False

    async def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]:
        self.calls.append(("allocation", offset, length))
        return [(length, any(self.disk[offset : offset + length]))]


class HeldDevice(MemoryDevice):
    """A ``MemoryDevice`` whose writes are answered only when the test calls :meth:`release`."""

    def __init__(self, size: int = 8 << 20) -> None:
        super().__init__(size)
        self.held: list[Callable[[], None]] = []
        self.arrived = trio.Event()

    def start_writes(
        self, writes: Sequence[tuple[int, Any, bool]], done: Callable[[LhtrioError | None], None]
    ) -> bool:
        self.held.append(functools.partial(self._complete, writes, done))
        self.arrived.set()
        return True

    def _complete(
        self, writes: Sequence[tuple[int, Any, bool]], done: Callable[[LhtrioError | None], None]
    ) -> None:
        self._write(writes)
        done(None)

    async def wait_held(self, count: int = 1) -> None:
        while len(self.held) < count:
            self.arrived = trio.Event()
            await self.arrived.wait()

    def release(self) -> None:
        """Answer every held write (in the calling task, as the engine's reactor would)."""
        held, self.held = self.held, []
        for answer in held:
            answer()
