"""A watch read over raw HTTP/1.1 (h11 on a trio TCP stream), one event at a time with a
deadline. Not httpx: a test stops reading a watch mid-answer, and an httpx stream abandoned so
leaves its async generators to the garbage collector (a warning, an error here).

Resource handling: the connection is the block's (:func:`watching`); leaving it closes it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import trio

__all__ = ["EVENT_DEADLINE", "Events", "watching"]

#: The longest a test waits for one event (seconds).
EVENT_DEADLINE = 10.0


class Events:
    """The newline-delimited JSON events of one watch."""

    def __init__(self, tcp: trio.SocketStream, http: h11.Connection) -> None:
        self._tcp = tcp
        self._http = http
        self._pending = b""
        self._done = False
        self.status = 0
        self.headers: dict[str, str] = {}

    async def _event(self) -> object:
        while (event := self._http.next_event()) is h11.NEED_DATA:
            self._http.receive_data(await self._tcp.receive_some(65536))
        return event

    async def start(self) -> None:
        head = await self._event()
        assert isinstance(head, h11.Response), head
        self.status = head.status_code
        self.headers = {k.decode().lower(): v.decode() for k, v in head.headers}

    async def _line(self) -> bytes | None:
        while b"\n" not in self._pending:
            if self._done:
                return None
            event = await self._event()
            if isinstance(event, h11.Data):
                self._pending += bytes(event.data)
            else:
                self._done = True  # EndOfMessage: the server ended the watch
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(EVENT_DEADLINE):
            while (line := await self._line()) is not None:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    return event
        raise AssertionError("the watch ended")

    async def until(self, kind: str) -> dict[str, Any]:
        """The next event of type ``kind``, skipping others."""
        while (event := await self.next())["type"] != kind:
            pass
        return event

    async def ended(self) -> bool:
        """True once the server ends the stream with no more events; False at an event."""
        with trio.fail_after(EVENT_DEADLINE):
            while (line := await self._line()) is not None:
                if line.strip():
                    return False
        return True


@asynccontextmanager
async def watching(url: str, path: str, **params: str) -> AsyncIterator[Events]:
    """``GET path?watch=true&params`` on the server at ``url``, answered 200."""
    where = urlsplit(url)
    assert where.hostname is not None
    assert where.port is not None
    tcp = await trio.open_tcp_stream(where.hostname, where.port)
    async with tcp:
        http = h11.Connection(h11.CLIENT)
        target = f"{path}?{urlencode({'watch': 'true', **params})}"
        request = h11.Request(
            method="GET",
            target=target,
            headers=[("Host", where.netloc), ("Accept", "application/json")],
        )
        await tcp.send_all((http.send(request) or b"") + (http.send(h11.EndOfMessage()) or b""))
        events = Events(tcp, http)
        with trio.fail_after(EVENT_DEADLINE):
            await events.start()
        assert events.status == 200, events.status
        yield events
