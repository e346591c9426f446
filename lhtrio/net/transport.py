"""Byte transports under the RPC layer: a fast path for sockets, a generic path for any stream.

The RPC client and server never touch a socket directly; they hand a :class:`Transport` their
decoder to fill and lists of buffers to send. Two implementations:

* :class:`SocketTransport` (a ``trio.SocketStream``, TCP or Unix): ``recv_into`` the decoder's own
  buffer and ``sendmsg`` every queued buffer in one system call (scatter-gather, up to ``IOV_MAX``
  buffers per call), so a batch of frames costs one send and their payloads are never joined.
* :class:`StreamTransport` (any ``trio.abc.Stream``, e.g. memory streams in tests, TLS later):
  ``receive_some`` + copy into the decoder, and ``send_all`` of the joined buffers.

Only one task may send and one task may receive at a time; the RPC layer guarantees that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import trio

from lhtrio.wire import Buffer

__all__ = ["Receiver", "Transport", "SocketTransport", "StreamTransport", "make_transport"]

_IOV_MAX: Final = 1024


class Receiver(Protocol):
    """A sans-I/O decoder a transport can fill (``lhtrio.wire.Decoder``, the NBD decoder)."""

    def receive_buffer(self) -> memoryview: ...
    def commit(self, nbytes: int) -> None: ...
    def receive_data(self, data: Buffer) -> None: ...


class Transport:
    """Moves bytes between a decoder / buffer lists and a connection."""

    mid_send: bool = False  # true while a send was interrupted after sending part of its bytes

    async def receive_into(self, decoder: Receiver) -> int:
        """Receive what is available into ``decoder``; 0 means the peer closed its side."""
        raise NotImplementedError

    async def send(self, buffers: Sequence[Buffer]) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class SocketTransport(Transport):
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._sock = stream.socket

    async def receive_into(self, decoder: Receiver) -> int:
        try:
            n = await self._sock.recv_into(decoder.receive_buffer())
        except OSError as exc:
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
        decoder.commit(n)
        return n

    async def send(self, buffers: Sequence[Buffer]) -> None:
        sock = self._sock
        pending = list(buffers)
        try:
            while pending:
                batch = pending[:_IOV_MAX]
                sent = await sock.sendmsg(batch)
                self.mid_send = True
                # Drop what went out; keep the unsent tail of a partially sent buffer.
                i = 0
                while i < len(batch) and sent >= len(batch[i]):
                    sent -= len(batch[i])
                    i += 1
                if i < len(batch) and sent:
                    pending[i] = memoryview(batch[i]).cast("B")[sent:]
                del pending[:i]
            self.mid_send = False
        except OSError as exc:
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc

    async def aclose(self) -> None:
        await self.stream.aclose()


class StreamTransport(Transport):
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive_into(self, decoder: Receiver) -> int:
        data = await self.stream.receive_some()
        decoder.receive_data(data)
        return len(data)

    async def send(self, buffers: Sequence[Buffer]) -> None:
        await self.stream.send_all(b"".join(buffers))

    async def aclose(self) -> None:
        await self.stream.aclose()


def make_transport(stream: trio.abc.Stream) -> Transport:
    """The fastest transport for ``stream``."""
    if isinstance(stream, trio.SocketStream):
        return SocketTransport(stream)
    return StreamTransport(stream)
