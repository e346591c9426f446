"""The RPC server: a thin trio shell around the sans-I/O codec and a request handler.

A handler is a callable ``handler(request) -> Reply | Awaitable[Reply]``:

* returning a reply **synchronously** is the fast path, for work that is a quick syscall on the page
  cache (a replica's pread/pwrite). The connection task runs it inline while it walks the batch of
  requests that one receive brought, and all the replies of the batch leave in one ``writev``,
  straight from the connection task. Measured: spawning a task per 4 KiB request costs about as
  much as the request itself.
* returning an **awaitable** (a coroutine) is the general path, for anything that waits (fsync in a
  worker thread, control operations). It runs in its own task under the connection's nursery;
  at most ``max_concurrency`` of them run per connection, and the connection stops reading while
  that many are in flight (back-pressure instead of unbounded memory).

Requests on one connection are therefore not ordered with respect to each other (like NBD and
Longhorn's data connections): a client that needs ordering waits for the reply first.

A handler signals an expected failure by raising an :class:`~lhtrio.errors.LhtrioError`; the
client receives an error reply with that error's code. Any other exception is a bug: it is logged
once with its traceback and answered with ``INTERNAL``; the connection and the server go on.

A malformed frame gets an error reply with seq 0, then the connection closes; the other
connections are not affected. On server shutdown each connection gets a ``Goodbye`` frame.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import trio

from lhtrio.errors import (
    HandshakeError,
    LhtrioError,
    LocalProtocolError,
    UnknownMessageError,
)
from lhtrio.net._nursery import open_connection_nursery
from lhtrio.net.address import Address
from lhtrio.net.listeners import open_listeners, remove_unix_socket
from lhtrio.net.transport import Outbox, Transport, make_transport
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

__all__ = ["Handler", "serve_rpc", "serve_rpc_at", "serve_rpc_connection"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Reply | Awaitable[Reply]]

_PONG = Pong()


def _error_reply(exc: LhtrioError) -> Error:
    return Error(code=int(exc.code), message=exc.message)


class _Connection:
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
            except LocalProtocolError as exc:
                logger.warning("closing connection from %s: %s", self.peer, exc)
                self.queue(0, _error_reply(exc))
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
            raise LocalProtocolError(f"expected Hello as the first message, got {hello!r}")
        self.peer = hello.client or self.peer
        try:
            ok = answer_hello(hello, self.identity)
        except HandshakeError as exc:
            logger.warning("refusing %s: %s", self.peer, exc)
            self.queue(seq, _error_reply(exc))
            return False
        self.queue(seq, ok)
        self.out.flush(now=False)
        return True

    async def read_loop(self, nursery: trio.Nursery) -> None:
        decoder, transport, handler, out = self.decoder, self.transport, self.handler, self.out
        while True:
            for seq, request in decoder.drain():
                cls = request.__class__
                if cls is Ping:
                    out.buffers += encode(seq, _PONG)
                    continue
                if cls is UnknownTag or cls is Hello or not isinstance(request, Request):
                    self.queue(seq, self.unknown(request))
                    continue
                try:
                    result = handler(request)
                except LhtrioError as exc:
                    self.queue(seq, _error_reply(exc))
                    continue
                except Exception:
                    self.queue(seq, self.internal_error(request))
                    continue
                if isinstance(result, Reply):
                    out.buffers += encode(seq, result)
                else:
                    out.flush(now=False)  # replies so far go while the handler waits
                    await self.limit.acquire()
                    nursery.start_soon(self.finish, seq, request, result)
            out.flush(now=True)  # the batch's replies, in one send
            if not await transport.receive_into(decoder):
                decoder.eof()
                return

    def unknown(self, request: Any) -> Error:
        what = f"tag {request.tag}" if isinstance(request, UnknownTag) else type(request).__name__
        return _error_reply(UnknownMessageError(f"this server does not handle {what} messages"))

    def internal_error(self, request: Request) -> Error:
        logger.exception("handler failed on %r from %s", request, self.peer)
        return Error(code=1, message=f"internal error handling {type(request).__name__}; see log")

    async def finish(self, seq: int, request: Request, pending: Awaitable[Reply]) -> None:
        try:
            reply = await pending
        except LhtrioError as exc:
            reply = _error_reply(exc)
        except Exception:
            reply = self.internal_error(request)
        finally:
            self.limit.release()
        self.queue(seq, reply)
        try:
            # Alone in flight: send now; else the writer sends this with the others' replies.
            self.out.flush(now=self.limit.value == self.max_concurrency)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("sending to %s failed: %s", self.peer, exc)

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


async def serve_rpc_connection(
    stream: trio.abc.Stream,
    handler: Handler,
    *,
    identity: Identity,
    max_concurrency: int = 64,
) -> None:
    """Serve one connection until the client leaves, breaks the protocol, or we are cancelled.

    Resource handling: ``stream`` is closed on return. Cancellation: the client gets a Goodbye.
    """
    conn = _Connection(make_transport(stream), handler, identity, max_concurrency)
    ended = False
    try:
        await conn.serve()
        ended = True
    finally:
        if not ended:  # cancelled (server shutting down) or a bug: tell the client first
            await conn.say_goodbye("server shutting down")
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await conn.transport.aclose()


async def serve_rpc(
    handler: Handler,
    host: str,
    port: int,
    *,
    identity: Identity,
    max_concurrency: int = 64,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Listen on ``host:port`` (0 picks a free port) and serve every connection with ``handler``.

    Reports the bound ``(host, port)`` through ``task_status`` once listening; never returns.
    """
    await _serve(
        Address(host=host, port=port),
        handler,
        identity=identity,
        max_concurrency=max_concurrency,
        task_status=task_status,
        report=lambda bound: (bound.host, bound.port),
    )


async def serve_rpc_at(
    address: Address,
    handler: Handler,
    *,
    identity: Identity,
    max_concurrency: int = 64,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Like :func:`serve_rpc` on any address (``tcp://HOST:PORT`` or ``unix:PATH``).

    Reports the bound address as a string (``tcp://127.0.0.1:34567``, ``unix:/run/r1.sock``).
    """
    await _serve(
        address,
        handler,
        identity=identity,
        max_concurrency=max_concurrency,
        task_status=task_status,
        report=str,
    )


async def _serve(
    address: Address,
    handler: Handler,
    *,
    identity: Identity,
    max_concurrency: int,
    task_status: trio.TaskStatus[Any],
    report: Callable[[Address], object],
) -> NoReturn:
    listeners, bound = await open_listeners(address)
    logger.info(
        "serving protocol v1 for volume %r instance %r on %s",
        identity.volume,
        identity.instance,
        bound,
    )

    async def on_connection(stream: trio.SocketStream) -> None:
        await serve_rpc_connection(
            stream, handler, identity=identity, max_concurrency=max_concurrency
        )

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, on_connection, listeners)
            task_status.started(report(bound))
    finally:
        remove_unix_socket(address)
    raise AssertionError("serve_listeners returned")  # pragma: no cover
