"""Calls to etcd's v3 JSON gateway over HTTP/1.1: one keep-alive ``httpx.AsyncClient`` per store
for the unary calls, a connection of its own for each watch (:class:`WatchStream`), the members
tried in turn.

Why the gateway and not gRPC: etcd serves every v3 call as JSON over HTTP on its client port,
including the streaming watch (newline-delimited results on one chunked response); httpx, already
a dependency, and h11, its own HTTP/1.1 machine, run under trio. No gRPC stack, no generated
code.

**Members.** A call goes to the member that answered last; when it cannot be *connected* to, the
next one is tried, and so on once around. Only a connection failure moves on: a request that
reached a member and got no answer may have been applied, so it is not sent again (the caller
sees StorageError and, as after any store error, reads again).

**Timeouts** are set here, at the call: :data:`CONNECT` for a connection, :data:`CALL` for a
whole unary call. A watch has no read deadline (it is quiet while nothing changes); a dropped
connection ends its results, and the watch reconnects (:mod:`lhtrio.manager.store.etcd`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import attrs
import h11
import httpx
import trio

from lhtrio.errors import StorageError
from lhtrio.manager.store.etcd_format import Json, error_message

__all__ = ["CALL", "CONNECT", "Answer", "EtcdClient", "WatchStream", "open_etcd_client"]

logger = logging.getLogger(__name__)

#: Seconds to connect to one member before trying the next.
CONNECT: Final = 2.0
#: Seconds a unary call may take, every member tried (then StorageError).
CALL: Final = 10.0
#: A watch reads its connection this many bytes at a time.
READ: Final = 65536
#: The longest watch result taken (bytes; etcd's own request limit is 1.5 MiB).
MAX_LINE: Final = 16 << 20


@attrs.frozen
class Answer:
    """A call's HTTP status and JSON body (``ok``: etcd did it)."""

    status: int
    body: Json

    @property
    def ok(self) -> bool:
        return self.status == 200


def _json(raw: bytes, where: str) -> Json:
    try:
        value = json.loads(raw)
    except ValueError:
        raise StorageError(f"etcd at {where} answered something that is not JSON") from None
    if not isinstance(value, dict):
        raise StorageError(f"etcd at {where} answered something that is not a JSON object")
    return value


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class EtcdClient:
    """The gateway's calls (see the module docstring); get one from :func:`open_etcd_client`."""

    def __init__(self, endpoints: Sequence[str], http: httpx.AsyncClient) -> None:
        if not endpoints:
            raise ValueError("an etcd client needs at least one member")
        self.endpoints = tuple(endpoints)
        self._http = http
        self._current = 0

    def _members(self) -> list[tuple[int, str]]:
        """The members in the order to try them: the last one that answered first."""
        count = len(self.endpoints)
        order = [(self._current + i) % count for i in range(count)]
        return [(i, self.endpoints[i]) for i in order]

    def _unreachable(self, errors: list[str]) -> StorageError:
        return StorageError(f"etcd is unreachable: {'; '.join(errors)}")

    async def answer(self, path: str, body: Json) -> Answer:
        """``POST /v3/PATH`` with ``body``: etcd's answer, whatever its status."""
        errors: list[str] = []
        with trio.move_on_after(CALL) as scope:
            for index, base in self._members():
                try:
                    response = await self._http.post(f"{base}/v3/{path}", json=body)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    errors.append(f"{base}: {_why(exc)}")
                    continue
                except httpx.RequestError as exc:
                    raise StorageError(f"etcd at {base} broke off /v3/{path}: {_why(exc)}") from exc
                self._current = index
                return Answer(response.status_code, _json(response.content, base))
            raise self._unreachable(errors)
        assert scope.cancelled_caught
        raise StorageError(f"etcd did not answer /v3/{path} within {CALL:.0f} s")

    async def call(self, path: str, body: Json) -> Json:
        """``POST /v3/PATH``: etcd's answer; StorageError with etcd's words if it refused."""
        answer = await self.answer(path, body)
        if not answer.ok:
            raise StorageError(f"etcd refused /v3/{path}: {error_message(answer.body)}")
        return answer.body

    async def open_watch(self, request: Json) -> WatchStream:
        """Open a watch stream with ``request`` (``{"create_request": ...}``) on the first member
        that connects (StorageError if none does, or it refuses). Close it with
        :meth:`WatchStream.aclose`."""
        body = json.dumps(request).encode()
        errors: list[str] = []
        for index, base in self._members():
            host, _, port = base.removeprefix("http://").rpartition(":")
            try:
                with trio.fail_after(CONNECT):
                    tcp = await trio.open_tcp_stream(host.strip("[]"), int(port))
            except (OSError, trio.TooSlowError) as exc:
                errors.append(f"{base}: {_why(exc)}")
                continue
            self._current = index
            watch = WatchStream(tcp, base)
            try:
                with trio.fail_after(CALL):
                    await watch.start(host, int(port), body)
            except trio.TooSlowError:
                await watch.aclose()
                raise StorageError(
                    f"etcd at {base} did not answer a watch in {CALL:.0f} s"
                ) from None
            except BaseException:
                await watch.aclose()
                raise
            return watch
        raise self._unreachable(errors)


class WatchStream:
    """One watch: a ``POST /v3/watch`` on a connection of its own, whose chunked answer is one
    JSON result per line, for as long as the watch lasts.

    Not through httpx: a watch is abandoned mid-answer whenever its reader stops, and httpx's
    streamed answers are chains of async generators that cannot all be closed then. h11 (the
    sans-I/O HTTP/1.1 that httpx itself stands on) over a trio TCP stream has no such chain.

    Resource handling: the connection is this stream's until :meth:`aclose`."""

    def __init__(self, tcp: trio.SocketStream, base: str) -> None:
        self._tcp = tcp
        self._http = h11.Connection(h11.CLIENT)
        self.base = base

    async def start(self, host: str, port: int, body: bytes) -> None:
        """Send the request and read the answer's head; StorageError if etcd refused it."""
        headers = [
            ("Host", f"{host}:{port}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
        request = h11.Request(method="POST", target="/v3/watch", headers=headers)
        out = self._http.send(request) or b""
        out += self._http.send(h11.Data(data=body)) or b""
        out += self._http.send(h11.EndOfMessage()) or b""
        try:
            await self._tcp.send_all(out)
            head = await self._next()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
            raise StorageError(f"etcd at {self.base} did not open a watch: {exc!r}") from exc
        if not isinstance(head, h11.Response):
            raise StorageError(f"etcd at {self.base} closed a watch before answering")
        if head.status_code != 200:
            raise StorageError(f"etcd at {self.base} refused a watch: {await self._refusal()}")

    async def _next(self) -> object:
        """The next h11 event of the answer (reading the connection as needed)."""
        while True:
            event = self._http.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._http.receive_data(await self._tcp.receive_some(READ))

    async def _refusal(self) -> str:
        body = bytearray()
        while isinstance(event := await self._next(), h11.Data) and len(body) < MAX_LINE:
            body += event.data
        return error_message(_json(bytes(body), self.base))

    async def results(self) -> AsyncGenerator[Json, None]:
        """The stream's results in order, until it ends, breaks or reports an error (the results
        then simply end: reconnecting is the caller's decision)."""
        pending = bytearray()
        while True:
            try:
                event = await self._next()
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
                logger.debug("etcd watch stream from %s broke: %r", self.base, exc)
                return
            if not isinstance(event, h11.Data):
                return  # the answer ended (etcd stopped, or the connection closed)
            pending += event.data
            *lines, rest = bytes(pending).split(b"\n")
            if len(rest) > MAX_LINE:
                logger.warning("etcd at %s sent a watch result over %d bytes", self.base, MAX_LINE)
                return
            pending = bytearray(rest)
            for line in lines:
                if not line.strip():
                    continue
                message = _json(line, self.base)
                result = message.get("result")
                if not isinstance(result, dict):
                    logger.info("etcd at %s ended a watch: %s", self.base, error_message(message))
                    return
                yield result

    async def aclose(self) -> None:
        await self._tcp.aclose()


@asynccontextmanager
async def open_etcd_client(endpoints: Sequence[str]) -> AsyncIterator[EtcdClient]:
    """A client of the members ``endpoints`` (``http://HOST:PORT``), until the block ends.

    Resource handling: one connection pool for every call and watch of the store; watches hold a
    connection each while they run. Proxy settings of the environment are ignored: etcd is
    reached directly."""
    timeout = httpx.Timeout(None, connect=CONNECT)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as http:
        yield EtcdClient(endpoints, http)
