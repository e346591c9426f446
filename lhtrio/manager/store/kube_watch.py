"""Watch streams of the Kubernetes API over HTTP/1.1, on a connection of their own.

A watch is one ``GET ...?watch=true`` whose chunked answer is one JSON event per line for as
long as it lasts (:mod:`lhtrio.manager.store.kube_format` reads the lines). It is not read
through lightkube's client: a watch is abandoned mid-answer whenever its reader stops, and
httpx2's streamed answers are chains of async generators of which the innermost cannot be closed
then (trio reports each one the garbage collector finds), as the etcd store found with httpx
(:class:`lhtrio.manager.store.etcd_client.WatchStream`). So a watch is h11 (the sans-I/O HTTP/1.1
httpx stands on) over a trio TCP stream, wrapped in TLS for an ``https`` server, with the
connection settings the store's lightkube configuration resolved (:class:`Server`): the CA and
client certificate in an ``ssl.SSLContext``, and the bearer token read again at each connection
(the kubelet rotates a service account's token file).

Resource handling: a :class:`WatchStream`'s connection is its own until :meth:`WatchStream.aclose`
(:func:`open_watch_stream` closes it when its block ends).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import h11
import trio

from lhtrio.manager.store.kube_format import MAX_LINE, WatchBrokenError, watch_refused

__all__ = ["CONNECT", "OPEN", "Server", "WatchStream", "open_watch_stream"]

#: Seconds to connect (TCP and TLS) to the API server.
CONNECT: Final = 5.0
#: Seconds for the API server to answer a watch's head.
OPEN: Final = 10.0
#: A watch reads its connection this many bytes at a time.
READ: Final = 65536
#: What breaks a connection (the watch connects again).
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)


@attrs.frozen(kw_only=True)
class Server:
    """Where the API server is and how to show who we are: ``path`` is the server URL's own
    path (``""`` usually); ``ssl_context`` is None for ``http``; ``token()`` is the bearer
    token now (None: none)."""

    host: str
    port: int
    path: str
    ssl_context: ssl.SSLContext | None
    token: Callable[[], str | None]

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class WatchStream:
    """One watch's answer on a connection of its own (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, server: Server) -> None:
        self._stream = stream
        self._http = h11.Connection(h11.CLIENT)
        self._server = server

    async def start(self, target: str) -> None:
        """Send ``GET target`` and read the answer's head: GoneError (410), StorageError (the
        API server refused it) or WatchBrokenError (it failed: try again) unless it is 200."""
        headers = [("Host", self._server.authority), ("Accept", "application/json")]
        token = self._server.token()
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        request = h11.Request(method="GET", target=self._server.path + target, headers=headers)
        out = self._http.send(request) or b""
        out += self._http.send(h11.EndOfMessage()) or b""
        try:
            await self._stream.send_all(out)
            head = await self._next()
        except _BROKEN as exc:
            raise WatchBrokenError(f"the API server did not open a watch: {exc!r}") from None
        if not isinstance(head, h11.Response):
            raise WatchBrokenError("the API server closed a watch before answering")
        if head.status_code != 200:
            raise watch_refused(head.status_code, await self._body())

    async def _next(self) -> object:
        """The next h11 event of the answer (reading the connection as needed)."""
        while True:
            event = self._http.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._http.receive_data(bytes(await self._stream.receive_some(READ)))

    async def _body(self) -> bytes:
        body = bytearray()
        try:
            while isinstance(event := await self._next(), h11.Data) and len(body) < MAX_LINE:
                body += event.data
        except _BROKEN:
            pass  # what came is the answer
        return bytes(body)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The answer's bytes as they come, until it ends (the API server's timeout, or the
        connection closed); WatchBrokenError if the connection breaks."""
        while True:
            try:
                event = await self._next()
            except _BROKEN as exc:
                raise WatchBrokenError(f"a watch's connection broke: {exc!r}") from None
            if not isinstance(event, h11.Data):
                return
            yield bytes(event.data)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _connect(server: Server) -> trio.abc.Stream:
    try:
        with trio.fail_after(CONNECT):
            tcp = await trio.open_tcp_stream(server.host, server.port)
            if server.ssl_context is None:
                return tcp
            tls = trio.SSLStream(tcp, server.ssl_context, server_hostname=server.host)
            try:
                await tls.do_handshake()
            except BaseException:
                await tcp.aclose()
                raise
            return tls
    except (*_BROKEN, trio.TooSlowError) as exc:
        where = f"{'https' if server.ssl_context else 'http'}://{server.authority}"
        raise WatchBrokenError(f"the API server at {where} did not answer: {exc!r}") from None


@asynccontextmanager
async def open_watch_stream(server: Server, target: str) -> AsyncIterator[WatchStream]:
    """A watch ``GET target`` (path and query) on ``server``, its head read, open until the
    block ends."""
    stream = WatchStream(await _connect(server), server)
    try:
        try:
            with trio.fail_after(OPEN):
                await stream.start(target)
        except trio.TooSlowError:
            raise WatchBrokenError(
                f"the API server did not answer a watch in {OPEN:.0f} s"
            ) from None
        yield stream
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
