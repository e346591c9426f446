"""Server-sent events read sans-I/O: bytes in, messages out (the WHATWG ``text/event-stream``
rules, as the admin API's watch streams use them: ``docs/api.md``, "Watch streams").

:meth:`SseParser.feed` takes whatever bytes arrived (any split: a message may come a byte at a
time) and returns the messages they complete:

* lines end with ``\\n``, ``\\r\\n`` or ``\\r``; a UTF-8 byte order mark at the very start is
  dropped;
* ``field: value`` (one space after the colon removed; a line without a colon is a field with an
  empty value); ``data`` lines are joined with ``\\n``, ``event`` names the message (``message``
  when absent), ``id`` sets the last event id (ignored when it holds a NUL), which lasts until
  another ``id`` changes it, ``retry`` is a reconnection delay in milliseconds (digits only);
  unknown fields are ignored;
* a line starting with ``:`` is a comment (the API's ``: keep-alive``): counted in
  :attr:`SseParser.comments`, never a message;
* an empty line dispatches the message being built; one without ``data`` is dropped.

Incomplete input is capped: a line or a message over :data:`MAX_MESSAGE` bytes raises
:class:`SseError` (the caller drops the connection and reconnects). Garbage either parses or
raises :class:`SseError`, nothing else (bytes that are not UTF-8 are replaced, as the standard
says).
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["MAX_MESSAGE", "Message", "SseError", "SseParser"]

#: The largest line or message accepted (bytes): a watch message holds one object's document.
MAX_MESSAGE: Final = 16 << 20

_BOM: Final = "\ufeff"


class SseError(Exception):
    """The stream broke the rules (a message over :data:`MAX_MESSAGE`)."""


@attrs.frozen(kw_only=True)
class Message:
    """One server-sent event: ``id`` is the last event id when it was dispatched (None if the
    stream never gave one)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


@attrs.define(eq=False)
class SseParser:
    """Parses one connection's stream (make a new one for each connection, keeping
    :attr:`last_id` to resume)."""

    last_id: str | None = None
    comments: int = 0
    retry: int | None = None
    _buffer: bytearray = attrs.field(factory=bytearray)
    _started: bool = False
    _cr: bool = False  # the previous chunk ended with \r: a \n starting this one belongs to it
    _event: str = ""
    _data: list[str] = attrs.field(factory=list)
    _size: int = 0

    def feed(self, chunk: bytes) -> list[Message]:
        """The messages ``chunk`` completes (none while a message is incomplete)."""
        if not chunk:
            return []
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = False
        self._buffer += chunk
        out: list[Message] = []
        while True:
            line = self._next_line()
            if line is None:
                break
            message = self._line(line)
            if message is not None:
                out.append(message)
        if len(self._buffer) > MAX_MESSAGE:
            raise SseError(f"a server-sent event line is over {MAX_MESSAGE} bytes")
        return out

    def _next_line(self) -> str | None:
        buffer = self._buffer
        cr, lf = buffer.find(b"\r"), buffer.find(b"\n")
        ends = [i for i in (cr, lf) if i >= 0]
        if not ends:
            return None
        end = min(ends)
        raw = bytes(buffer[:end])
        skip = 1
        if buffer[end : end + 1] == b"\r":
            if end + 1 < len(buffer):
                skip = 2 if buffer[end + 1 : end + 2] == b"\n" else 1
            else:
                self._cr = True  # a \n may follow in the next chunk
        del buffer[: end + skip]
        text = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        return text

    def _line(self, line: str) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._size += len(value) + 1
            if self._size > MAX_MESSAGE:
                raise SseError(f"a server-sent event is over {MAX_MESSAGE} bytes")
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self.last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return Message(
            event=event or "message", data="\n".join(data), id=self.last_id, retry=self.retry
        )
