"""The RPC client: many calls in flight on one connection, frames coalesced into few sends.

Shape of a connection (all tasks owned by the nursery inside :func:`connect_rpc`)::

    call() ──append frame──► outbox ──► writer task ──sendmsg(all queued frames)──► socket
    call() ◄──reschedule──── pending[seq] ◄── reader task ◄──recv_into(decoder)──── socket

The reader may instead be a callback of a shared :class:`~lhtrio.net.reactor.Reactor`
(``reactor=``): an engine reads all its replica links that way, in one task or in place.

* **Coalescing.** :meth:`RpcClient.call` appends its frame to the connection's
  :class:`~lhtrio.net.transport.Outbox` and leaves it to the writer task, which sends everything
  queued in that moment, so 32 concurrent calls leave in one ``writev``.
  :meth:`RpcClient.call_many` and :meth:`RpcClient.submit` send their batch at once.
* **Pairing.** Replies are matched by sequence number. A waiting call parks with
  ``trio.lowlevel.wait_task_rescheduled`` (no Event, no channel per call); the reader reschedules
  it with the reply.
* **Cancellation.** A call can be cancelled while it waits (put deadlines at the call site:
  ``with trio.fail_after(8): await client.call(...)``). The request may already have reached the
  server, so a cancelled write has an unknown outcome; a late reply is dropped.
* **Connection loss** (EOF, reset, malformed reply, a Goodbye from the server) fails every pending
  call and every later call with one :class:`~lhtrio.errors.ConnectionLostError` that says why.
  The reader and writer swallow only these expected transport failures; anything else is a bug
  and propagates out of the ``async with``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import outcome
import trio

from lhtrio.errors import ConnectionLostError, LhtrioError, RemoteProtocolError, error_from_code
from lhtrio.net._nursery import open_connection_nursery
from lhtrio.net.address import Address, parse_address
from lhtrio.net.network import NETWORK
from lhtrio.net.pending import Pending, SeqSource
from lhtrio.net.reactor import Reactor
from lhtrio.net.transport import Outbox, Transport, make_transport
from lhtrio.wire import (
    LOCAL,
    NEED_DATA,
    Call,
    Decoder,
    Error,
    Goodbye,
    Hello,
    HelloOk,
    Ping,
    Reply,
    Request,
    Result,
    Role,
    check_hello_ok,
    encode,
)

__all__ = [
    "HELLO_TIMEOUT",
    "RpcClient",
    "Pending",
    "SeqSource",
    "ClientStatistics",
    "connect_rpc",
    "open_rpc_client",
]

logger = logging.getLogger(__name__)

#: How long connecting and the hello may take before the peer is given up on: something that is
#: not an lhtrio endpoint (an HTTP server, a port that swallows bytes) never answers a hello.
HELLO_TIMEOUT: Final = 10.0

_EXPECTED_FAILURES: Final = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
    RemoteProtocolError,
)


@attrs.frozen(kw_only=True)
class ClientStatistics:
    calls_pending: int
    frames_sent: int
    sends: int
    replies_received: int
    receives: int


class RpcClient:
    """One connection to an lhtrio RPC server. Get one from :func:`open_rpc_client`."""

    def __init__(self, transport: Transport, *, peer: str, seqs: SeqSource | None = None) -> None:
        self.peer = peer
        self.via = ""  # the same-host address used instead of ``peer`` (open_rpc_client(local=))
        self.server: HelloOk | None = None
        self._transport = transport
        self._decoder = Decoder()
        self._pending: dict[int, trio.lowlevel.Task | Pending] = {}
        self._out = Outbox(transport)
        self._seqs = seqs or SeqSource()
        self._broken: ConnectionLostError | None = None
        self._closed = trio.Event()
        self._replies = self._receives = 0
        self._reactor: Reactor | None = None  # reads replies instead of _reader, if set
        self._watched = -1

    # --- public API ------------------------------------------------------------------------------

    async def call(self, request: Request) -> Reply:
        """Send ``request`` and wait for its reply; an error reply is raised as its exception.

        Raises :class:`~lhtrio.errors.ConnectionLostError` if the connection is or becomes
        unusable, and the error class of the code of an error reply (``remote=True``).
        """
        if self._broken is not None:
            raise self._broken
        seq = self._seqs.take(1)
        out = self._out
        out.buffers += encode(seq, request)
        out.frames += 1
        # Through the writer, which runs once every task that is ready has queued its frame:
        # concurrent calls share one writev. (call_many sends at once: its batch is whole.)
        self._flush(False)
        if self._broken is not None:
            raise self._broken
        pending = self._pending
        pending[seq] = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            pending.pop(seq, None)
            return trio.lowlevel.Abort.SUCCEEDED

        reply: Reply = await trio.lowlevel.wait_task_rescheduled(abort)
        if reply.__class__ is Error:
            raise error_from_code(reply.code, reply.message)
        return reply

    def submit(self, requests: Sequence[Request]) -> Pending:
        """Send ``requests`` now, together (one ``writev``), without waiting for the replies.

        Raises ConnectionLostError if the connection is unusable.
        """
        if self._broken is not None:
            raise self._broken
        first = self._seqs.take(len(requests))
        buffers: list[Any] = []
        for seq, request in enumerate(requests, first):
            buffers += encode(seq, request)
        return self.submit_encoded(buffers, first, len(requests))

    def submit_encoded(
        self,
        frames: Sequence[Any],
        first: int,
        count: int,
        *,
        callback: Callable[[Pending], None] | None = None,
    ) -> Pending:
        """Send ``count`` requests already encoded with seqs ``first..`` from this client's
        :class:`SeqSource` (the same bytes may go to every connection sharing the source).

        ``callback`` (see :class:`Pending`) runs in the reader's task, or in whatever task breaks
        the connection (a later submit may); never for this batch inside this call.
        """
        if self._broken is not None:
            raise self._broken
        batch = Pending(self._pending, first, count, callback)
        out = self._out
        out.buffers += frames
        out.frames += count
        self._flush(True)  # a batch is whole by construction: no need to wait for others
        if self._broken is not None:
            raise self._broken
        pending = self._pending
        for seq in range(first, first + count):
            pending[seq] = batch
        return batch

    async def call_many(self, requests: Sequence[Request]) -> list[Reply | LhtrioError]:
        """Send ``requests`` together and wait for all their replies, in request order.

        The batch path (``submit`` + ``wait``): one send and one wake-up for the whole batch. An
        error reply becomes its exception *in the list*; only a lost connection raises.
        """
        return await self.submit(requests).wait()

    async def call_control(self, name: str, /, **args: Any) -> Any:
        """A control :class:`~lhtrio.wire.Call`; returns the :class:`~lhtrio.wire.Result` value."""
        reply = await self.call(Call(name=name, args=args))
        if not isinstance(reply, Result):
            raise ConnectionLostError(f"{self.peer} answered call {name!r} with {reply!r}")
        return reply.value

    async def ping(self) -> None:
        await self.call(Ping())

    @property
    def broken(self) -> ConnectionLostError | None:
        """Why the connection is unusable, or None while it works."""
        return self._broken

    async def wait_broken(self) -> ConnectionLostError:
        """Wait until the connection breaks (for monitors)."""
        await self._closed.wait()
        assert self._broken is not None
        return self._broken

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            calls_pending=len(self._pending),
            frames_sent=self._out.frames,
            sends=self._out.sends,
            replies_received=self._replies,
            receives=self._receives,
        )

    async def _handshake(self, hello: Hello, role: Role | None) -> None:
        """Say hello before the connection's tasks start (so its errors are plain exceptions)."""
        seq = self._seqs.take(1)
        try:
            await self._transport.send(encode(seq, hello))
            while (item := self._decoder.next_message()) is NEED_DATA:
                if not await self._transport.receive_into(self._decoder):
                    raise ConnectionLostError(f"{self.peer} closed the connection during hello")
        except _EXPECTED_FAILURES as exc:
            raise ConnectionLostError(
                f"hello to {self.peer} failed: {exc}; is it an lhtrio endpoint?"
            ) from exc
        reply_seq, reply = item
        if isinstance(reply, Error):
            raise error_from_code(reply.code, reply.message)
        if reply_seq != seq or not isinstance(reply, HelloOk):
            raise ConnectionLostError(f"{self.peer} answered hello with {reply!r}")
        check_hello_ok(reply, hello, role=role)
        self.server = reply

    # --- connection tasks -------------------------------------------------------------------------

    def _fail(self, why: str) -> None:
        if self._broken is not None:
            return
        self._broken = ConnectionLostError(f"connection to {self.peer} lost: {why}")
        waiters = list(self._pending.values())
        self._pending.clear()
        for waiter in waiters:  # an Outcome can be unwrapped once: one per waiter
            if isinstance(waiter, Pending):
                waiter.break_off(self._broken)
            else:
                trio.lowlevel.reschedule(waiter, outcome.Error(self._broken))
        self._out.close()
        self._closed.set()
        if self._reactor is not None:
            self._reactor.remove(self._watched)

    def _received(self) -> bool:
        """Deliver every reply decoded so far; False once the connection is done for."""
        decoder, pending = self._decoder, self._pending
        self._receives += 1
        for seq, reply in decoder.drain():
            self._replies += 1
            waiter = pending.pop(seq, None)
            if waiter.__class__ is Pending:
                waiter.deliver(seq, reply)
            elif waiter is not None:
                trio.lowlevel.reschedule(waiter, outcome.Value(reply))  # type: ignore[arg-type]
            elif reply.__class__ is Goodbye:
                self._fail(f"server said goodbye ({reply.reason})")
                return False
            elif seq == 0 and reply.__class__ is Error:
                self._fail(f"server reported {reply.message}")
                return False
            # else: the reply of a cancelled call; drop it.
        if decoder.error is not None:  # a bad frame followed the batch
            raise decoder.error
        return True

    async def _reader(self) -> None:
        decoder, transport = self._decoder, self._transport
        try:
            while True:
                if not await transport.receive_into(decoder):
                    decoder.eof()
                    self._fail("server closed the connection")
                    return
                if not self._received():
                    return
        except _EXPECTED_FAILURES as exc:
            self._fail(str(exc) or type(exc).__name__)

    def _readable(self) -> None:
        """The reactor's callback (instead of the reader task): the socket has something."""
        try:
            n = self._transport.receive_nowait(self._decoder)
            if n is None:
                return
            if not n:
                self._decoder.eof()
                self._fail("server closed the connection")
                return
            self._received()
        except _EXPECTED_FAILURES as exc:
            self._fail(str(exc) or type(exc).__name__)

    def _flush(self, now: bool) -> None:
        """Send now or wake the writer; a broken connection fails every pending call."""
        try:
            self._out.flush(now=now)
        except _EXPECTED_FAILURES as exc:
            self._fail(str(exc) or type(exc).__name__)

    async def _writer(self) -> None:
        try:
            await self._out.writer()
        except _EXPECTED_FAILURES as exc:
            self._fail(str(exc) or type(exc).__name__)


@asynccontextmanager
async def connect_rpc(
    stream: trio.abc.Stream,
    *,
    volume: str = "",
    instance: str = "",
    client: str = "",
    features: Sequence[str] = (),
    peer: str = "peer",
    seqs: SeqSource | None = None,
    reactor: Reactor | None = None,
    role: Role | None = None,
) -> AsyncIterator[RpcClient]:
    """Run an RPC client over an already connected ``stream`` (handshake included).

    With a ``reactor`` (and a socket stream), replies are read by the reactor instead of a reader
    task of the connection's own (:mod:`lhtrio.net.reactor`).

    Resource handling: the stream is closed when the block exits. Cancellation: leaving the
    block cancels the connection's tasks; calls still pending fail with ConnectionLostError.
    """
    hello = Hello(volume=volume, instance=instance, client=client, features=tuple(features))
    rpc = await _greeted(stream, hello, peer=peer, seqs=seqs, role=role)
    async with _running(rpc, reactor):
        yield rpc


async def _greeted(
    stream: trio.abc.Stream,
    hello: Hello,
    *,
    peer: str,
    seqs: SeqSource | None,
    role: Role | None,
) -> RpcClient:
    """A client on ``stream`` that has said ``hello`` (within :data:`HELLO_TIMEOUT`); the stream
    is closed if that fails."""
    rpc = RpcClient(make_transport(stream), peer=peer, seqs=seqs)
    try:
        with trio.move_on_after(HELLO_TIMEOUT) as late:
            await rpc._handshake(hello, role)
    except BaseException:
        await _close(rpc)
        raise
    if late.cancelled_caught:
        await _close(rpc)
        raise ConnectionLostError(
            f"{peer} did not answer the hello within {HELLO_TIMEOUT:g} s: it is not an "
            "lhtrio endpoint, or it is stuck"
        )
    return rpc


@asynccontextmanager
async def _running(rpc: RpcClient, reactor: Reactor | None) -> AsyncIterator[None]:
    """Run the connection of ``rpc`` (which has said hello) until the block exits; close it."""
    try:
        async with open_connection_nursery() as nursery:
            if reactor is not None and rpc._transport.fileno() >= 0:
                rpc._reactor, rpc._watched = reactor, rpc._transport.fileno()
                reactor.add(rpc._watched, rpc._readable)
            else:
                nursery.start_soon(rpc._reader)
            nursery.start_soon(rpc._writer)
            try:
                yield
            finally:
                rpc._fail("client closed the connection")
                nursery.cancel_scope.cancel()
    finally:
        await _close(rpc)


async def _close(rpc: RpcClient) -> None:
    rpc._fail("client closed the connection")
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await rpc._transport.aclose()


async def _connect(address: Address) -> trio.abc.Stream:
    try:
        with trio.fail_after(HELLO_TIMEOUT):
            if (network := NETWORK.get()) is not None:  # (the simulator's: lhtrio.net.network)
                return await network.connect(address)
            if address.is_unix:
                return await trio.open_unix_socket(address.socket_path)
            return await trio.open_tcp_stream(address.host, address.port)
    except OSError as exc:
        raise ConnectionLostError(f"cannot connect to {address}: {exc.strerror or exc}") from exc
    except trio.TooSlowError:
        raise ConnectionLostError(
            f"cannot connect to {address}: no answer within {HELLO_TIMEOUT:g} s"
        ) from None


async def _on_same_host(rpc: RpcClient, hello: Hello, role: Role | None) -> RpcClient:
    """The connection to use instead of ``rpc`` (TCP, hello said): a new one to the server's
    same-host address if it offered one and it answers as the same server, else ``rpc``
    (:func:`lhtrio.net.server._serve` explains the shortcut)."""
    assert rpc.server is not None
    offered = rpc.server.local
    try:
        address = parse_address(offered)
        if not address.is_abstract:  # only names in the abstract namespace, never a file
            raise ConnectionLostError(f"{offered!r} is not an abstract Unix socket")
        stream = await _connect(address)
    except LhtrioError as exc:  # (a server on another host: its name is not here)
        logger.debug("%s: staying on TCP: %s", rpc.peer, exc)
        return rpc
    again = attrs.evolve(
        hello,
        instance=rpc.server.instance,
        features=tuple(f for f in hello.features if f != LOCAL),
    )
    try:
        local = await _greeted(stream, again, peer=rpc.peer, seqs=rpc._seqs, role=role)
    except LhtrioError as exc:
        logger.warning("%s offered %s, which failed: %s; staying on TCP", rpc.peer, offered, exc)
        return rpc
    local.via = str(address)
    await _close(rpc)
    return local


@asynccontextmanager
async def open_rpc_client(
    address: str | Address,
    *,
    volume: str = "",
    instance: str = "",
    client: str = "",
    features: Sequence[str] = (),
    seqs: SeqSource | None = None,
    reactor: Reactor | None = None,
    local: bool = False,
    role: Role | None = None,
) -> AsyncIterator[RpcClient]:
    """Connect to the lhtrio RPC server at ``address`` and say hello.

    ``volume``/``instance`` name the server we expect, ``role`` what it must be (a replica, an
    engine, a node); a server that is someone else refuses (and we refuse a server that answers
    as someone else) with IdentityMismatchError. ``local``: if the server is on this host and
    offers a same-host socket, use that instead of TCP (``via`` then names it); otherwise, or if
    it fails, stay on TCP. Connecting and the hello take at most :data:`HELLO_TIMEOUT` seconds
    (ConnectionLostError after that).
    """
    addr = parse_address(address) if isinstance(address, str) else address
    asks = local and not addr.is_unix
    hello = Hello(
        volume=volume,
        instance=instance,
        client=client,
        features=(*features, LOCAL) if asks else tuple(features),
    )
    rpc = await _greeted(await _connect(addr), hello, peer=str(addr), seqs=seqs, role=role)
    if asks and rpc.server is not None and rpc.server.local:
        try:
            rpc = await _on_same_host(rpc, hello, role)
        except BaseException:  # (cancelled on the way: the TCP connection goes too)
            await _close(rpc)
            raise
    async with _running(rpc, reactor):
        yield rpc
