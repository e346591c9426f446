"""Byte transports under the RPC layer and the NBD server, and the outbox that feeds them.

Connections never touch a socket directly; they hand a :class:`Transport` their decoder to fill
and an :class:`Outbox` the buffers to send. Two transports:

* :class:`SocketTransport` (a ``trio.SocketStream``, TCP or Unix) works on the socket's file
  descriptor: ``readv`` into the decoder's own buffer, ``writev`` of every queued buffer in one
  system call (scatter-gather, up to ``IOV_MAX`` buffers). It waits (``wait_readable`` /
  ``wait_writable``) when the kernel says EAGAIN, and before reading again after a read that did
  not fill the buffer (the socket was empty then: a read at once would only say EAGAIN). trio's
  socket methods add a scheduling round after every successful call; at queue depth 1 those
  rounds were most of an engine's CPU per request (profiled: 9 scheduler iterations per NBD
  write, 3 after this change).
* :class:`StreamTransport` (any ``trio.abc.Stream``: memory streams in tests, TLS later):
  ``receive_some`` + copy into the decoder, ``send_all`` of the joined buffers.

**When to send** is the :class:`Outbox`'s job. Frames are queued; if the caller says its frames
are all there is for now (a whole batch, nothing else of the connection in flight) and no send is
in progress, the queue goes out at once from the calling task, without blocking (``send_nowait``).
Otherwise a writer task sends everything queued together, which coalesces the frames of many
concurrent callers into one ``writev`` (measured: 185k 4 KiB requests/s with 32 frames per send,
34k with one send each). Either way one sender at a time, so frames never interleave.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any, Final

import trio

from lhtrio.wire import Buffer
from lhtrio.wire.buffers import Receiver

__all__ = [
    "Transport",
    "SocketTransport",
    "StreamTransport",
    "Outbox",
    "make_transport",
    "advance",
    "IOV_MAX",
]

IOV_MAX: Final = 1024
#: Send buffer of every socket: a Unix socket's default (208 KiB) splits a 1 MiB write into
#: several sends and wake-ups; 4 MiB took 3 replicas on Unix sockets from 285 to 430-530 MiB/s of
#: 1 MiB writes (TCP loopback: no change). Memory is only used while data is queued.
SEND_BUFFER: Final = 4 << 20


def advance(buffers: list[Any], sent: int) -> list[Any]:
    """``buffers`` without their first ``sent`` bytes."""
    if sent == sum(map(len, buffers)):
        return []
    i = 0
    while i < len(buffers) and sent >= len(buffers[i]):
        sent -= len(buffers[i])
        i += 1
    rest = buffers[i:]
    if rest and sent:
        rest[0] = memoryview(rest[0]).cast("B")[sent:]
    return rest


class Transport:
    """Moves bytes between a decoder / buffer lists and a connection."""

    mid_send: bool = False  # true while part of a frame has been sent and the rest has not
    can_send_nowait: bool = False

    async def receive_into(self, decoder: Receiver) -> int:
        """Receive what is available into ``decoder``; 0 means the peer closed its side."""
        raise NotImplementedError

    def send_nowait(self, buffers: list[Any]) -> list[Any]:
        """Send what the kernel takes right now, without blocking; return what is left."""
        return buffers

    def fileno(self) -> int:
        """The descriptor to watch for readiness, or -1 if there is none."""
        return -1

    def receive_nowait(self, decoder: Receiver) -> int | None:
        """Read what is there without waiting: the byte count, 0 for the peer's EOF, None if
        there was nothing (or the transport cannot tell without waiting)."""
        return None

    async def send(self, buffers: Sequence[Buffer]) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class SocketTransport(Transport):
    can_send_nowait = True

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._fd = stream.socket.fileno()
        with contextlib.suppress(OSError):  # the kernel caps it at net.core.wmem_max
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self._drained = False  # the last read took less than it could: the socket was empty

    def fileno(self) -> int:
        return self._fd  # (-1 once closed)

    async def receive_into(self, decoder: Receiver) -> int:
        fd = self._fd
        waited = self._drained
        try:
            if waited:
                # The last read left the socket empty: a read now would almost always say
                # EAGAIN, a system call for nothing on every request at queue depth 1.
                await trio.lowlevel.wait_readable(fd)
            while (n := self.receive_nowait(decoder)) is None:
                await trio.lowlevel.wait_readable(fd)
                waited = True
        except OSError as exc:  # (a descriptor that is no longer valid)
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
        if not waited:
            # Data was waiting: stay fair to the other tasks (what trio's recv does).
            await trio.lowlevel.cancel_shielded_checkpoint()
        return n

    def receive_nowait(self, decoder: Receiver) -> int | None:
        buffer = decoder.receive_buffer()
        try:
            n = os.readv(self._fd, [buffer])
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
        self._drained = n < len(buffer)
        decoder.commit(n)
        return n

    def send_nowait(self, buffers: list[Any]) -> list[Any]:
        fd = self._fd
        try:
            while buffers:
                sent = os.writev(fd, buffers[:IOV_MAX])
                buffers = advance(buffers, sent)
                self.mid_send = bool(buffers)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc
        return buffers

    async def send(self, buffers: Sequence[Buffer]) -> None:
        pending = self.send_nowait(list(buffers))
        while pending:
            await trio.lowlevel.wait_writable(self._fd)
            pending = self.send_nowait(pending)

    async def aclose(self) -> None:
        # A late completion (a callback after the connection ended) must never write to the
        # descriptor number, which the kernel may already have given to another socket.
        self._fd = -1
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


class Outbox:
    """The frames waiting to go out on one connection (see the module docstring).

    ``buffers`` is public for appending (``outbox.buffers += encode(...)``); call :meth:`flush`
    afterwards. The owner runs :meth:`writer` as a task for as long as the connection lives.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.buffers: list[Any] = []
        self.sending = False
        self.closing = False
        self.frames = 0
        self.sends = 0
        self._lot = trio.lowlevel.ParkingLot()

    def flush(self, *, now: bool) -> None:
        """Send what is queued: at once (``now=True``), or by waking the writer.

        The caller knows whether more frames are coming in this moment: ``now=True`` when its
        frames are a whole batch and nothing else of its connection is in flight, ``now=False``
        to let the writer send them together with what other tasks queue meanwhile. (trio's
        ``current_statistics()`` could tell whether other tasks are ready, but it walks every
        registered file descriptor: a cost per reply that grows with the volumes of a node.)
        """
        if not self.buffers or self.sending:
            return
        if now and self.transport.can_send_nowait:
            self.sends += 1
            self.buffers = self.transport.send_nowait(self.buffers)
        if self.buffers:
            self._lot.unpark()

    def close(self) -> None:
        """Let the writer finish what is queued, then return."""
        self.closing = True
        self._lot.unpark()

    async def writer(self) -> None:
        """Send whatever is queued, until :meth:`close` (raises BrokenResourceError on failure)."""
        while True:
            if not self.buffers:
                if self.closing:
                    return
                await self._lot.park()
                continue
            buffers, self.buffers = self.buffers, []
            self.sending = True
            self.sends += 1
            try:
                await self.transport.send(buffers)
            finally:
                self.sending = False


def make_transport(stream: trio.abc.Stream) -> Transport:
    """The fastest transport for ``stream``."""
    if isinstance(stream, trio.SocketStream):
        return SocketTransport(stream)
    return StreamTransport(stream)
