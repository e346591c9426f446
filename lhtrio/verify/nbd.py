"""A small pipelined NBD client on trio, for the checker's workload.

The checker must know exactly which requests were sent and which were answered, which a client
library hides, so it speaks NBD itself: fixed newstyle handshake, ``NBD_OPT_GO`` with the
export's name, simple replies only (no structured replies are asked for). Any number of tasks may
call :meth:`NbdClient.write`, :meth:`~NbdClient.flush` and :meth:`~NbdClient.read` at once: each
request goes out under a lock and its reply is matched by its handle by one reader task.

Resource handling: :func:`open_nbd` owns the socket and the reader task; leaving it closes the
connection, and every request still waiting raises :class:`~lhtrio.errors.ConnectionLostError`
(its outcome is unknown: it may have been applied). A reply with an error raises
:class:`~lhtrio.errors.StorageError` naming the errno; the connection stays usable.
"""

from __future__ import annotations

import errno
import struct
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from lhtrio.errors import ConnectionLostError, HandshakeError, InvalidArgumentError, StorageError

__all__ = ["NbdClient", "NbdTarget", "open_nbd", "parse_uri"]

_READ, _WRITE, _DISC, _FLUSH = 0, 1, 2, 3
_REQUEST = struct.Struct(">IHHQQI")
_REPLY = struct.Struct(">IIQ")
_OPTION = struct.Struct(">QII")
_OPTION_REPLY = struct.Struct(">QIII")
_IHAVEOPT = 0x49484156454F5054
_OPT_REPLY_MAGIC = 0x3E889045565A9
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY = 0x67446698
_OPT_GO = 7
_REP_ACK, _REP_INFO = 1, 3
_INFO_EXPORT = 0
_FLAG_SEND_FLUSH = 1 << 2
_FLAG_CAN_MULTI_CONN = 1 << 8
_MAX_OPTION_REPLY = 1 << 16


@attrs.frozen(kw_only=True)
class NbdTarget:
    """Where an export is: a TCP host and port, or a Unix socket path; and its name."""

    export: str
    host: str = ""
    port: int = 10809
    socket: str = ""

    def __str__(self) -> str:
        if self.socket:
            return f"nbd+unix:///{self.export}?socket={self.socket}"
        return f"nbd://{self.host}:{self.port}/{self.export}"


def parse_uri(uri: str) -> NbdTarget:
    """``nbd://HOST[:PORT][/EXPORT]`` or ``nbd+unix:///EXPORT?socket=PATH`` (the NBD URI spec's
    two common forms); anything else is an :class:`InvalidArgumentError`."""
    parts = urllib.parse.urlsplit(uri)
    export = urllib.parse.unquote(parts.path.removeprefix("/"))
    if parts.scheme == "nbd":
        if not parts.hostname:
            raise InvalidArgumentError(f"NBD URI {uri!r} names no host: nbd://HOST[:PORT]/EXPORT")
        try:
            port = parts.port or 10809
        except ValueError as exc:
            raise InvalidArgumentError(f"NBD URI {uri!r}: {exc}") from None
        return NbdTarget(export=export, host=parts.hostname, port=port)
    if parts.scheme == "nbd+unix":
        socket = urllib.parse.parse_qs(parts.query).get("socket", [""])[0]
        if not socket:
            raise InvalidArgumentError(
                f"NBD URI {uri!r} names no socket: nbd+unix:///EXPORT?socket=PATH"
            )
        return NbdTarget(export=export, socket=socket)
    raise InvalidArgumentError(
        f"not an NBD URI: {uri!r} (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)"
    )


@attrs.define(eq=False)
class _Slot:
    length: int
    done: trio.Event = attrs.field(factory=trio.Event)
    error: int = 0
    lost: bool = False
    data: bytes = b""


class NbdClient:
    """One negotiated NBD connection (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, target: NbdTarget) -> None:
        self._stream = stream
        self._target = target
        self._buffer = bytearray()
        self._send_lock = trio.Lock()
        self._slots: dict[int, _Slot] = {}
        self._handles = 0
        self._closed = False
        self.size = 0
        self.flags = 0

    @property
    def multi_conn(self) -> bool:
        """A flush on this connection covers writes answered on every connection to the export."""
        return bool(self.flags & _FLAG_CAN_MULTI_CONN)

    async def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = await self._stream.receive_some(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionLostError(f"{self._target} closed the connection")
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def _handshake(self) -> None:
        greeting = await self._exactly(18)
        if greeting[:8] != b"NBDMAGIC" or struct.unpack(">Q", greeting[8:16])[0] != _IHAVEOPT:
            raise HandshakeError(f"{self._target} is not a newstyle NBD server")
        await self._stream.send_all(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        name = self._target.export.encode()
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        await self._stream.send_all(_OPTION.pack(_IHAVEOPT, _OPT_GO, len(data)) + data)
        while True:
            magic, _, reply, length = _OPTION_REPLY.unpack(await self._exactly(_OPTION_REPLY.size))
            if magic != _OPT_REPLY_MAGIC or length > _MAX_OPTION_REPLY:
                raise HandshakeError(f"{self._target}: malformed option reply")
            payload = await self._exactly(length)
            if reply == _REP_ACK:
                break
            if reply == _REP_INFO and len(payload) >= 12:
                kind, size, flags = struct.unpack(">HQH", payload[:12])
                if kind == _INFO_EXPORT:
                    self.size, self.flags = size, flags
            elif reply & (1 << 31):
                text = payload[4:].decode(errors="replace") if len(payload) > 4 else ""
                raise HandshakeError(
                    f"{self._target} refused export {self._target.export!r}: "
                    f"reply {reply:#x} {text}".rstrip()
                )
        if not self.flags & _FLAG_SEND_FLUSH:
            raise HandshakeError(f"{self._target} does not accept flushes: nothing to verify")

    async def _read_replies(self) -> None:
        try:
            while True:
                magic, error, handle = _REPLY.unpack(await self._exactly(_REPLY.size))
                slot = self._slots.pop(handle, None)
                if magic != _SIMPLE_REPLY or slot is None:
                    break  # not a reply to a request of ours: nothing after it can be trusted
                slot.error = error
                if slot.length and not error:
                    slot.data = await self._exactly(slot.length)
                slot.done.set()
        except (ConnectionLostError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._closed = True
            for slot in self._slots.values():
                slot.lost = True
                slot.done.set()
            self._slots.clear()

    async def _request(self, kind: int, offset: int, data: bytes = b"", length: int = 0) -> bytes:
        if self._closed:
            raise ConnectionLostError(f"the connection to {self._target} is closed")
        self._handles += 1
        handle = self._handles
        slot = self._slots[handle] = _Slot(length=length if kind == _READ else 0)
        size = len(data) if kind == _WRITE else length
        try:
            async with self._send_lock:
                await self._stream.send_all(
                    _REQUEST.pack(_REQUEST_MAGIC, 0, kind, handle, offset, size) + data
                )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._slots.pop(handle, None)
            raise ConnectionLostError(f"the connection to {self._target} broke: {exc}") from None
        await slot.done.wait()
        if slot.lost:
            raise ConnectionLostError(f"the connection to {self._target} broke before a reply")
        if slot.error:
            name = errno.errorcode.get(slot.error, str(slot.error))
            raise StorageError(f"{self._target}: request failed with {name}")
        return slot.data

    async def write(self, offset: int, data: bytes) -> None:
        await self._request(_WRITE, offset, data)

    async def flush(self) -> None:
        await self._request(_FLUSH, 0)

    async def read(self, offset: int, length: int) -> bytes:
        return await self._request(_READ, offset, length=length)


async def _connect(target: NbdTarget) -> trio.abc.Stream:
    try:
        if target.socket:
            return await trio.open_unix_socket(target.socket)
        return await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise ConnectionLostError(f"cannot connect to {target}: {exc}") from None


@asynccontextmanager
async def open_nbd(target: NbdTarget) -> AsyncIterator[NbdClient]:
    """Connect and negotiate (bounded by 10 s); yield the client; close on exit."""
    try:
        with trio.fail_after(10):
            stream = await _connect(target)
    except trio.TooSlowError:
        raise ConnectionLostError(f"connecting to {target} took more than 10 s") from None
    async with stream:
        client = NbdClient(stream, target)
        try:
            with trio.fail_after(10):
                await client._handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLostError(f"{target} closed the connection: {exc}") from None
        except trio.TooSlowError:
            raise ConnectionLostError(f"{target} did not finish the handshake in 10 s") from None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._read_replies)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The reader never raises: the one error is the caller's own, raised bare so that
            # callers catch it as they would without the nursery.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
