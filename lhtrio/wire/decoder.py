"""The incremental frame decoder of protocol v1 (sans-I/O; the design is in :mod:`.codec`).

Feed it bytes (:meth:`Decoder.receive_data`) or let a transport receive straight into its memory
(:meth:`Decoder.receive_buffer` + :meth:`Decoder.commit`); take ``(seq, message)`` pairs with
:meth:`Decoder.next_message` or, batched, :meth:`Decoder.drain`.
"""

from __future__ import annotations

import enum
from typing import Any

from lhtrio.errors import FrameTooLargeError, RemoteProtocolError
from lhtrio.wire.buffers import PEEK, feed, unfilled
from lhtrio.wire.codec import (
    _DECODERS,
    _FAST,
    _MAX_SEQ,
    _MIN_HEAD,
    DEFAULT_MAX_DATA,
    DEFAULT_MAX_HEAD,
    DIRECT_MIN,
    MAGIC,
    NEED_DATA,
    PREFIX_SIZE,
    NeedData,
    UnknownTag,
    _decode_generic,
    _unpack_prefix,
    _unpackb,
)
from lhtrio.wire.messages import MESSAGE_TYPES, Buffer, Message

__all__ = ["Decoder", "decode_generic"]


class _State(enum.Enum):
    PREFIX = 0
    HEAD = 1
    DATA = 2
    DIRECT = 3


class Decoder:
    """Incremental frame decoder: feed bytes, take ``(seq, message)`` pairs or :data:`NEED_DATA`.

    Two ways to feed it: :meth:`receive_data` copies bytes in (simple, for tests and generic
    streams); :meth:`receive_buffer` + :meth:`commit` let a transport ``recv_into`` the decoder's
    own memory (no copy). Memory held is bounded by ``PREFIX_SIZE + max_head + DIRECT_MIN`` for
    the shared buffer plus at most ``max_data`` for one direct payload.

    A tag the decoder does not know raises nothing here: it yields ``(seq, UnknownTag)`` so the
    RPC layer can answer ``UNKNOWN_MESSAGE`` and continue (the frame itself was well formed).
    """

    def __init__(
        self,
        *,
        max_head: int = DEFAULT_MAX_HEAD,
        max_data: int = DEFAULT_MAX_DATA,
        buffer_size: int = 256 << 10,
    ) -> None:
        self.max_head = max_head
        self.max_data = max_data
        self.generic = False  # decode every message through the cattrs converter
        self._buf = bytearray(max(buffer_size, PREFIX_SIZE))
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._state = _State.PREFIX
        self._head_len = 0
        self._data_len = 0
        self._head: list[Any] = []
        self._direct: bytearray | None = None
        self._direct_fill = 0
        self._peek = False  # a large payload just ended: the next receive takes PEEK at most
        #: The protocol error that stopped decoding, raised by every later call. A reader loop
        #: checks it after a batch: :meth:`drain` returns the good frames before a bad one first.
        self.error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a message."""
        return self._end - self._start + self._direct_fill

    # feeding

    def receive_buffer(self) -> memoryview:
        """Writable memory for the next receive; call :meth:`commit` with the byte count."""
        if self._state is _State.DIRECT:
            assert self._direct is not None
            return memoryview(self._direct)[self._direct_fill :]
        if self._end == len(self._buf):
            self._make_room()
        if self._peek:
            return self._view[self._end : self._end + PEEK]
        return self._view[self._end :]

    def commit(self, nbytes: int) -> None:
        """Record that ``nbytes`` were written into the last :meth:`receive_buffer`."""
        if self._state is _State.DIRECT:
            self._direct_fill += nbytes
        else:
            self._end += nbytes
            self._peek = False

    def receive_data(self, data: Buffer) -> None:
        """Copy ``data`` in (for streams that hand out their own buffers)."""
        feed(self, data)

    def _make_room(self) -> None:
        live = self._end - self._start
        need = live + 1
        if self._state is _State.HEAD:
            need = max(
                need, self._head_len + (self._data_len if self._data_len < DIRECT_MIN else 0)
            )
        elif self._state is _State.DATA:
            need = max(need, self._data_len)
        if need <= len(self._buf):
            self._buf[:live] = self._buf[self._start : self._end]
        else:
            grown = bytearray(max(need, 2 * len(self._buf)))
            grown[:live] = self._buf[self._start : self._end]
            self._buf, self._view = grown, memoryview(grown)
        self._start, self._end = 0, live

    # decoding

    def next_message(self) -> tuple[int, Message] | NeedData:
        """The next complete ``(seq, message)``, or :data:`NEED_DATA`.

        Raises :class:`~lhtrio.errors.RemoteProtocolError` on malformed input, and from then on.
        """
        if self.error is not None:
            raise self.error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self.error = exc
            raise

    def drain(self) -> list[tuple[int, Message]]:
        """Every complete message buffered now, in order (an empty list means NEED_DATA).

        The path the transports use: whole small frames of the common data messages are decoded
        in one tight loop; anything else goes through :meth:`next_message`. If a malformed frame
        follows good ones, the good ones are returned and the next call raises.
        """
        if self.error is not None:
            raise self.error
        out: list[tuple[int, Message]] = []
        if self._state is _State.PREFIX and not self.generic:
            buf, view, fast = self._buf, self._view, _FAST
            start, end, max_head = self._start, self._end, self.max_head
            while end - start >= PREFIX_SIZE:
                magic, flags, head_len, data_len = _unpack_prefix(buf, start)
                head_start = start + PREFIX_SIZE
                data_start = head_start + head_len
                frame_end = data_start + data_len
                if (
                    frame_end > end
                    or magic != MAGIC
                    or flags
                    or not 0 < head_len <= max_head
                    or data_len >= DIRECT_MIN
                ):
                    break
                try:
                    head = _unpackb(view[head_start:data_start])
                    if type(head) is not list:
                        break
                    item = fast[head[0]](head, buf[data_start:frame_end] if data_len else b"")
                except Exception:
                    break  # the general path decodes (or rejects) this frame
                out.append(item)
                start = frame_end
            if start == end:  # all consumed: nothing for the general path to look at
                self._start = self._end = 0
                return out
            self._start, self._end = start, end
        try:
            while (next_item := self.next_message()) is not NEED_DATA:
                out.append(next_item)
        except RemoteProtocolError:
            if not out:
                raise
        return out

    def eof(self) -> None:
        """The peer closed its side; raise if that cut a frame in half."""
        if self.error is not None:
            raise self.error
        if self.buffered:
            self.error = RemoteProtocolError(
                f"connection closed in the middle of a frame ({self.buffered} bytes pending)"
            )
            raise self.error

    def _next(self) -> tuple[int, Message] | NeedData:
        buf = self._buf
        if self._state is _State.PREFIX:
            if self._end - self._start < PREFIX_SIZE:
                return NEED_DATA
            magic, flags, head_len, data_len = _unpack_prefix(buf, self._start)
            if magic != MAGIC:
                raise RemoteProtocolError(f"bad frame magic 0x{magic:04x} (expected 0x{MAGIC:04x})")
            if flags:
                raise RemoteProtocolError(f"frame flags 0x{flags:04x} are not defined in v1")
            if not head_len:
                raise RemoteProtocolError("frame head is empty (a head is at least [tag, seq])")
            if head_len > self.max_head:
                raise FrameTooLargeError(f"frame head of {head_len} bytes (cap {self.max_head})")
            if data_len > self.max_data:
                raise FrameTooLargeError(f"frame payload of {data_len} bytes (cap {self.max_data})")
            self._start += PREFIX_SIZE
            self._head_len, self._data_len = head_len, data_len
            self._state = _State.HEAD
        if self._state is _State.HEAD:
            start, head_len = self._start, self._head_len
            if self._end - start < head_len:
                return NEED_DATA
            self._head = self._parse_head(self._view[start : start + head_len])
            self._start = start + head_len
            if self._data_len >= DIRECT_MIN:
                self._start_direct()
            else:
                self._state = _State.DATA
        if self._state is _State.DATA:
            start, data_len = self._start, self._data_len
            if self._end - start < data_len:
                return NEED_DATA
            payload: Buffer = buf[start : start + data_len] if data_len else b""
            self._start = start + data_len
            if self._start == self._end:
                self._start = self._end = 0
        else:  # DIRECT
            assert self._direct is not None
            if self._direct_fill < self._data_len:
                return NEED_DATA
            payload, self._direct, self._direct_fill = self._direct, None, 0
            self._peek = True
        self._state = _State.PREFIX
        return self._build(self._head, payload)

    def _start_direct(self) -> None:
        direct = unfilled(self._data_len)
        have = min(self._end - self._start, self._data_len)
        direct[:have] = self._buf[self._start : self._start + have]
        self._start += have
        if self._start == self._end:
            self._start = self._end = 0
        self._direct, self._direct_fill = direct, have
        self._state = _State.DIRECT

    def _parse_head(self, raw: memoryview) -> list[Any]:
        try:
            head = _unpackb(raw)
        except Exception as exc:
            raise RemoteProtocolError(f"frame head is not valid msgpack: {exc!r}") from None
        if type(head) is not list or len(head) < 2:
            raise RemoteProtocolError("frame head must be an array [tag, seq, ...]")
        tag, seq = head[0], head[1]
        if type(tag) is not int or type(seq) is not int or not 0 <= seq <= _MAX_SEQ:
            raise RemoteProtocolError(f"bad tag {tag!r} or seq {seq!r} in frame head")
        cls = MESSAGE_TYPES.get(tag)
        if cls is not None and not cls.PAYLOAD and self._data_len:
            raise RemoteProtocolError(f"{cls.__name__} frame must not carry a payload")
        if len(head) < _MIN_HEAD.get(tag, 2):
            raise RemoteProtocolError(f"{cls.__name__ if cls else tag} head has too few fields")
        return head

    def _build(self, head: list[Any], payload: Buffer) -> tuple[int, Message]:
        tag, seq = head[0], head[1]
        if tag not in MESSAGE_TYPES:
            return seq, UnknownTag(tag=tag)
        dec = None if self.generic else _DECODERS.get(tag)
        if dec is None:
            return seq, _decode_generic(tag, head, payload)
        return seq, dec(head, payload)


def decode_generic(frame: Buffer) -> tuple[int, Message]:
    """Decode one whole frame through the cattrs converter (tests and benchmarks)."""
    decoder = Decoder()
    decoder.receive_data(frame)
    decoder.generic = True
    item = decoder.next_message()
    if item is NEED_DATA or decoder.buffered:
        raise RemoteProtocolError("decode_generic needs exactly one whole frame")
    return item
