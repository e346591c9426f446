"""One RPC server connection on the event loop: handshake, batched dispatch, replies.

See :mod:`lhtrio.net.server` for the handler contract; :mod:`lhtrio.net.threaded` serves the data
requests of a connection from its own thread instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from lhtrio.errors import HandshakeError, LhtrioError, RemoteProtocolError, UnknownMessageError
from lhtrio.net._nursery import open_connection_nursery
from lhtrio.net.transport import Outbox, Transport
from lhtrio.wire import (
    NEED_DATA,
    Decoder,
    Error,
    Goodbye,
    Hello,
    Identity,
    Ping,
    Pong,
    Reply,
    Request,
    UnknownTag,
    answer_hello,
    encode,
)

__all__ = ["Handler", "Connection", "error_reply"]

logger = logging.getLogger("lhtrio.net.server")

Handler = Callable[[Request], Reply | Awaitable[Reply]]

_PONG = Pong()


def error_reply(exc: LhtrioError) -> Error:
    return Error(code=int(exc.code), message=exc.message)


class Connection:
    """One connection served on the event loop (the read loop dispatches every request)."""

    def __init__(
        self, transport: Transport, handler: Handler, identity: Identity, max_concurrency: int
    ) -> None:
        self.transport = transport
        self.handler = handler
        self.identity = identity
        self.decoder = Decoder()
        self.out = Outbox(transport)
        self.limit = trio.Semaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self.drained = trio.Event()
        self.peer = "client"

    def queue(self, seq: int, reply: Reply) -> None:
        self.out.buffers += encode(seq, reply)

    async def serve(self) -> None:
        async with open_connection_nursery() as nursery:
            nursery.start_soon(self.writer)
            try:
                if await self.handshake():
                    await self.read_loop(nursery)
            except RemoteProtocolError as exc:
                logger.warning("closing connection from %s: %s", self.peer, exc)
                self.queue(0, error_reply(exc))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.debug("connection from %s broke: %s", self.peer, exc)
                nursery.cancel_scope.cancel()
                return
            # Let the writer send what is queued (an error reply, a goodbye) and stop.
            nursery.cancel_scope.deadline = trio.current_time() + 1.0
            self.out.close()
            await self.drained.wait()
            nursery.cancel_scope.cancel()

    async def handshake(self) -> bool:
        while (item := self.decoder.next_message()) is NEED_DATA:
            if not await self.transport.receive_into(self.decoder):
                self.decoder.eof()
                return False
        seq, hello = item
        if not isinstance(hello, Hello):
            raise RemoteProtocolError(f"expected Hello as the first message, got {hello!r}")
        self.peer = hello.client or self.peer
        try:
            ok = answer_hello(hello, self.identity)
        except HandshakeError as exc:
            logger.warning("refusing %s: %s", self.peer, exc)
            self.queue(seq, error_reply(exc))
            return False
        self.queue(seq, ok)
        self.out.flush(now=False)
        return True

    async def read_loop(self, nursery: trio.Nursery) -> None:
        decoder, transport, out = self.decoder, self.transport, self.out
        while True:
            for seq, request in decoder.drain():
                result = self.dispatch(request)
                if isinstance(result, Reply):
                    out.buffers += encode(seq, result)
                else:
                    out.flush(now=False)  # replies so far go while the handler waits
                    try:
                        await self.limit.acquire()
                        nursery.start_soon(self.finish, seq, request, result)
                    except BaseException:
                        _discard(result)  # the connection ends before the handler could run
                        raise
            out.flush(now=True)  # the batch's replies, in one send
            if decoder.error is not None:  # a bad frame followed the batch
                raise decoder.error
            if not await transport.receive_into(decoder):
                decoder.eof()
                return

    def dispatch(self, request: Any) -> Reply | Awaitable[Reply]:
        """The handler's answer to ``request``; Pongs, refusals and failures answered here."""
        cls = request.__class__
        if cls is Ping:
            return _PONG
        if cls is UnknownTag or cls is Hello or not isinstance(request, Request):
            return self.unknown(request)
        try:
            return self.handler(request)
        except LhtrioError as exc:
            return error_reply(exc)
        except Exception:
            return self.internal_error(request)

    def unknown(self, request: Any) -> Error:
        what = f"tag {request.tag}" if isinstance(request, UnknownTag) else type(request).__name__
        return error_reply(UnknownMessageError(f"this server does not handle {what} messages"))

    def internal_error(self, request: Any) -> Error:
        logger.exception("handler failed on %r from %s", request, self.peer)
        return Error(code=1, message=f"internal error handling {type(request).__name__}; see log")

    async def finish(self, seq: int, request: Any, pending: Awaitable[Reply]) -> None:
        try:
            reply = await pending
        except LhtrioError as exc:
            reply = error_reply(exc)
        except Exception:
            reply = self.internal_error(request)
        finally:
            alone = self.release()
        self.queue(seq, reply)
        try:
            # Alone in flight: send now; else the writer sends this with the others' replies.
            self.out.flush(now=alone)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("sending to %s failed: %s", self.peer, exc)

    def release(self) -> bool:
        """A handler task ended: free its slot; True if no other one is in flight."""
        self.limit.release()
        return self.limit.value == self.max_concurrency

    async def writer(self) -> None:
        try:
            await self.out.writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("sending to %s failed: %s", self.peer, exc)
        finally:
            self.drained.set()

    async def say_goodbye(self, reason: str) -> None:
        """Best effort, shielded, short: tell the client we are closing on purpose."""
        if self.transport.mid_send:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(0.5),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await self.transport.send(encode(0, Goodbye(reason=reason)))


def _discard(pending: Awaitable[Reply]) -> None:
    """Close a handler's coroutine that will never run (no "never awaited" warning for it)."""
    close = getattr(pending, "close", None)
    if close is not None:
        close()
