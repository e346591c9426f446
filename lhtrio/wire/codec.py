"""Framing and message encoding of protocol v1, without I/O.

A frame is a 12-byte little-endian prefix ``magic u16 | flags u16 | head_len u32 | data_len u32``,
then ``head_len`` bytes of msgpack (an array ``[tag, seq, field...]``), then ``data_len`` raw
bytes of payload. ``protocol/README.md`` is the normative description; this module is the
reference codec.

Design decisions (measured with ``nox -s bench -- wire``, figures in ``docs/benchmarks.md``):

* **Bulk data never goes through msgpack.** The payload follows the head as raw bytes, so encoding a
  write costs one small msgpack call and a list of two buffers for a scatter-gather send; the data
  itself is not copied at all on the sending side.
* **Hand-tuned codecs for the data path, cattrs for the rest.** Read, Write, Data, Done, Unmap,
  Flush, Ping and Pong are encoded and decoded by small functions that pack a list literal and
  index the unpacked array, with explicit type and range checks. Everything else (hello, calls,
  results, errors) goes through one cattrs converter in tuple order. The generic path is kept
  (``encode_generic``/``decode_generic``) and checked against the tuned one in the tests. The
  tuned path measured 2.2-2.7x faster to encode and 2.8-3.5x faster to decode (about 0.8 and
  1.5-2 µs against 2 and 5-6 µs per message), on a budget of about 7 µs of CPU per 4 KiB
  request (``docs/benchmarks.md``).
* **The frame-size cap is checked on the prefix**, before a single head or payload byte is
  buffered. Small payloads are sliced out of the shared receive buffer (one copy of at most
  ``DIRECT_MIN`` bytes); a payload of ``DIRECT_MIN`` bytes or more gets its own ``bytearray`` and
  :meth:`Decoder.receive_buffer` hands out that bytearray's free tail, so the transport receives
  straight into the buffer the message will own: zero copies after the kernel's.
* **Errors are sticky.** After :class:`~lhtrio.errors.LocalProtocolError` the decoder raises the
  same error forever; the connection must be closed (after an error reply, by the RPC layer).

Forward compatibility inside version 1: decoders ignore trailing head fields they do not know, and
fields missing from the end of a head take their defaults. A frame whose ``flags`` are not zero is
malformed in version 1.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any, Final

import attrs
import cattrs
import msgpack

from lhtrio.errors import FrameTooLargeError, LocalProtocolError
from lhtrio.wire.control import strict_hook
from lhtrio.wire.messages import (
    MESSAGE_TYPES,
    Buffer,
    Data,
    Done,
    Flush,
    Message,
    Ping,
    Pong,
    Read,
    Unmap,
    Write,
)

__all__ = [
    "MAGIC",
    "PREFIX_SIZE",
    "DEFAULT_MAX_HEAD",
    "DEFAULT_MAX_DATA",
    "DIRECT_MIN",
    "NEED_DATA",
    "NeedData",
    "UnknownTag",
    "Decoder",
    "encode",
    "encode_frame",
    "encode_generic",
    "decode_generic",
    "converter",
]

MAGIC: Final = 0x484C  # the bytes b"LH" on the wire
PREFIX_SIZE: Final = 12
DEFAULT_MAX_HEAD: Final = 1 << 20
DEFAULT_MAX_DATA: Final = 32 << 20
DIRECT_MIN: Final = 64 << 10
_MAX_U63: Final = (1 << 63) - 1
_MAX_SEQ: Final = (1 << 64) - 1

_PREFIX = struct.Struct("<HHII")
_pack_prefix = _PREFIX.pack
_unpack_prefix = _PREFIX.unpack_from
_packb = msgpack.Packer(use_bin_type=True, autoreset=True, datetime=False).pack


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: Returned by :meth:`Decoder.next_message` when the buffered bytes hold no complete frame.
NEED_DATA: Final = NeedData.NEED_DATA


@attrs.frozen
class UnknownTag(Message):
    """A well-formed frame with a tag this implementation does not know (not sent, only decoded)."""

    tag: int


def _frame(head: list[Any], data: Buffer | None = None) -> list[Buffer]:
    packed = _packb(head)
    if data is None:
        return [_pack_prefix(MAGIC, 0, len(packed), 0) + packed]
    return [_pack_prefix(MAGIC, 0, len(packed), len(data)) + packed, data]


# --- the generic path: one cattrs converter for every message ------------------------------------

#: The converter of protocol v1 message fields (msgpack-native values, strict types).
converter = cattrs.Converter(detailed_validation=False)
for _kind in (int, str, bool, bytes):
    converter.register_structure_hook(_kind, strict_hook(_kind))
converter.register_structure_hook_func(lambda t: t == Buffer, lambda v, _: v)

_HEAD_FIELDS: Final[dict[type[Message], tuple[str, ...]]] = {
    cls: tuple(f.name for f in attrs.fields(cls) if not (cls.PAYLOAD and f.name == "data"))  # type: ignore[arg-type]
    for cls in MESSAGE_TYPES.values()
}


def encode_generic(seq: int, message: Message) -> list[Buffer]:
    """Encode through the cattrs converter (every message type)."""
    cls = type(message)
    fields = converter.unstructure(message)
    head = [cls.TAG, seq, *(fields[name] for name in _HEAD_FIELDS[cls])]
    return _frame(head, message.data if cls.PAYLOAD else None)  # type: ignore[attr-defined]


def _decode_generic(tag: int, head: list[Any], payload: Buffer) -> Message:
    cls = MESSAGE_TYPES[tag]
    fields: dict[str, Any] = dict(zip(_HEAD_FIELDS[cls], head[2:], strict=False))
    if cls.PAYLOAD:
        fields["data"] = payload
    try:
        message = converter.structure(fields, cls)
    except Exception as exc:
        raise LocalProtocolError(f"bad {cls.__name__} message: {exc!r}") from None
    _check_ranges(message)
    return message


def decode_generic(frame: Buffer) -> tuple[int, Message]:
    """Decode one whole frame through the cattrs converter (tests and benchmarks)."""
    decoder = Decoder()
    decoder.receive_data(frame)
    decoder.generic = True
    item = decoder.next_message()
    if item is NEED_DATA or decoder.buffered:
        raise LocalProtocolError("decode_generic needs exactly one whole frame")
    return item


def _check_ranges(message: Message) -> None:
    if isinstance(message, Read | Unmap):
        _offset(message.offset)
        _length(message.length)
    elif isinstance(message, Write):
        _offset(message.offset)


# --- the tuned path: data messages --------------------------------------------------------------


def _offset(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_U63:
        raise LocalProtocolError(f"bad offset {value!r}: need an integer in 0..2**63-1")
    return value


def _length(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= DEFAULT_MAX_DATA:
        raise LocalProtocolError(f"bad length {value!r}: need an integer in 0..{DEFAULT_MAX_DATA}")
    return value


def _flag(value: Any) -> bool:
    if type(value) is not bool:
        raise LocalProtocolError(f"bad flag {value!r}: need a boolean")
    return value


def _enc_read(seq: int, m: Read) -> list[Buffer]:
    head = _packb([3, seq, m.offset, m.length])
    return [_pack_prefix(MAGIC, 0, len(head), 0) + head]


def _enc_write(seq: int, m: Write) -> list[Buffer]:
    head = _packb([4, seq, m.offset, m.fua])
    return [_pack_prefix(MAGIC, 0, len(head), len(m.data)) + head, m.data]


def _enc_unmap(seq: int, m: Unmap) -> list[Buffer]:
    head = _packb([5, seq, m.offset, m.length])
    return [_pack_prefix(MAGIC, 0, len(head), 0) + head]


def _enc_data(seq: int, m: Data) -> list[Buffer]:
    head = _packb([67, seq])
    return [_pack_prefix(MAGIC, 0, len(head), len(m.data)) + head, m.data]


def _enc_done(seq: int, m: Done) -> list[Buffer]:
    head = _packb([68, seq, m.count])
    return [_pack_prefix(MAGIC, 0, len(head), 0) + head]


def _enc_bare(seq: int, m: Message) -> list[Buffer]:
    return _frame([m.TAG, seq])


_ENCODERS: Final[dict[type[Message], Callable[[int, Any], list[Buffer]]]] = {
    Read: _enc_read,
    Write: _enc_write,
    Unmap: _enc_unmap,
    Data: _enc_data,
    Done: _enc_done,
    Flush: _enc_bare,
    Ping: _enc_bare,
    Pong: _enc_bare,
}


def encode(seq: int, message: Message) -> list[Buffer]:
    """Encode ``message`` with sequence number ``seq`` as buffers for a scatter-gather send.

    The payload of a data message is returned as the very object the message holds (no copy).
    """
    enc = _ENCODERS.get(type(message))
    if enc is None:
        return encode_generic(seq, message)
    return enc(seq, message)


def encode_frame(seq: int, message: Message) -> bytes:
    """One frame as a single ``bytes`` object (tests, vectors, small control messages)."""
    return b"".join(encode(seq, message))


def _dec_read(h: list[Any], _: Buffer) -> Message:
    return Read(_offset(h[2]), _length(h[3]))


def _dec_write(h: list[Any], data: Buffer) -> Message:
    return Write(_offset(h[2]), data, _flag(h[3]) if len(h) > 3 else False)


def _dec_unmap(h: list[Any], _: Buffer) -> Message:
    return Unmap(_offset(h[2]), _length(h[3]))


def _dec_data(_: list[Any], data: Buffer) -> Message:
    return Data(data)


def _dec_done(h: list[Any], _: Buffer) -> Message:
    count = h[2] if len(h) > 2 else 0
    if type(count) is not int or count < 0:
        raise LocalProtocolError(f"bad Done count {count!r}")
    return Done(count)


_FLUSH, _PING, _PONG = Flush(), Ping(), Pong()

_DECODERS: Final[dict[int, Callable[[list[Any], Buffer], Message]]] = {
    Read.TAG: _dec_read,
    Write.TAG: _dec_write,
    Unmap.TAG: _dec_unmap,
    Data.TAG: _dec_data,
    Done.TAG: _dec_done,
    Flush.TAG: lambda h, d: _FLUSH,
    Ping.TAG: lambda h, d: _PING,
    Pong.TAG: lambda h, d: _PONG,
}
# Fields a tuned decoder indexes without checking the head's length.
_MIN_HEAD: Final[dict[int, int]] = {Read.TAG: 4, Write.TAG: 3, Unmap.TAG: 4}


# The batch fast path (Decoder.drain) accepts only the exact, common shape of each data message
# and falls back to the general path above for anything else, which then decides precisely.
def _fast_write(h: list[Any], data: Buffer) -> tuple[int, Message]:
    _, seq, offset, fua = h
    if (
        type(seq) is int
        and type(offset) is int
        and type(fua) is bool
        and 0 <= seq <= _MAX_SEQ
        and 0 <= offset <= _MAX_U63
    ):
        return seq, Write(offset, data, fua)
    raise ValueError


def _fast_data(h: list[Any], data: Buffer) -> tuple[int, Message]:
    _, seq = h
    if type(seq) is int and 0 <= seq <= _MAX_SEQ:
        return seq, Data(data)
    raise ValueError


def _fast_range(
    cls: type[Read] | type[Unmap],
) -> Callable[[list[Any], Buffer], tuple[int, Message]]:
    def fast(h: list[Any], data: Buffer) -> tuple[int, Message]:
        _, seq, offset, length = h
        if (
            not data
            and type(seq) is int
            and type(offset) is int
            and type(length) is int
            and 0 <= seq <= _MAX_SEQ
            and 0 <= offset <= _MAX_U63
            and 0 <= length <= DEFAULT_MAX_DATA
        ):
            return seq, cls(offset, length)
        raise ValueError

    return fast


def _fast_done(h: list[Any], data: Buffer) -> tuple[int, Message]:
    _, seq, count = h
    if not data and type(seq) is int and type(count) is int and 0 <= seq <= _MAX_SEQ and count >= 0:
        return seq, Done(count)
    raise ValueError


_FAST: Final[dict[int, Callable[[list[Any], Buffer], tuple[int, Message]]]] = {
    Write.TAG: _fast_write,
    Data.TAG: _fast_data,
    Read.TAG: _fast_range(Read),
    Unmap.TAG: _fast_range(Unmap),
    Done.TAG: _fast_done,
}
_unpackb = msgpack.unpackb


# --- the decoder --------------------------------------------------------------------------------


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
        self._error: LocalProtocolError | None = None

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
        return self._view[self._end :]

    def commit(self, nbytes: int) -> None:
        """Record that ``nbytes`` were written into the last :meth:`receive_buffer`."""
        if self._state is _State.DIRECT:
            self._direct_fill += nbytes
        else:
            self._end += nbytes

    def receive_data(self, data: Buffer) -> None:
        """Copy ``data`` in (for streams that hand out their own buffers)."""
        view = memoryview(data).cast("B")
        while view:
            target = self.receive_buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            self.commit(n)
            view = view[n:]

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

        Raises :class:`~lhtrio.errors.LocalProtocolError` on malformed input, and from then on.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except LocalProtocolError as exc:
            self._error = exc
            raise

    def drain(self) -> list[tuple[int, Message]]:
        """Every complete message buffered now, in order (an empty list means NEED_DATA).

        The path the transports use: whole small frames of the common data messages are decoded
        in one tight loop; anything else goes through :meth:`next_message`. If a malformed frame
        follows good ones, the good ones are returned and the next call raises.
        """
        if self._error is not None:
            raise self._error
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
            if start == end:
                start = end = 0
            self._start, self._end = start, end
        try:
            while (next_item := self.next_message()) is not NEED_DATA:
                out.append(next_item)
        except LocalProtocolError:
            if not out:
                raise
        return out

    def eof(self) -> None:
        """The peer closed its side; raise if that cut a frame in half."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            self._error = LocalProtocolError(
                f"connection closed in the middle of a frame ({self.buffered} bytes pending)"
            )
            raise self._error

    def _next(self) -> tuple[int, Message] | NeedData:
        buf = self._buf
        if self._state is _State.PREFIX:
            if self._end - self._start < PREFIX_SIZE:
                return NEED_DATA
            magic, flags, head_len, data_len = _unpack_prefix(buf, self._start)
            if magic != MAGIC:
                raise LocalProtocolError(f"bad frame magic 0x{magic:04x} (expected 0x{MAGIC:04x})")
            if flags:
                raise LocalProtocolError(f"frame flags 0x{flags:04x} are not defined in v1")
            if not head_len:
                raise LocalProtocolError("frame head is empty (a head is at least [tag, seq])")
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
        self._state = _State.PREFIX
        return self._build(self._head, payload)

    def _start_direct(self) -> None:
        direct = bytearray(self._data_len)
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
            raise LocalProtocolError(f"frame head is not valid msgpack: {exc!r}") from None
        if type(head) is not list or len(head) < 2:
            raise LocalProtocolError("frame head must be an array [tag, seq, ...]")
        tag, seq = head[0], head[1]
        if type(tag) is not int or type(seq) is not int or not 0 <= seq <= _MAX_SEQ:
            raise LocalProtocolError(f"bad tag {tag!r} or seq {seq!r} in frame head")
        cls = MESSAGE_TYPES.get(tag)
        if cls is not None and not cls.PAYLOAD and self._data_len:
            raise LocalProtocolError(f"{cls.__name__} frame must not carry a payload")
        if len(head) < _MIN_HEAD.get(tag, 2):
            raise LocalProtocolError(f"{cls.__name__ if cls else tag} head has too few fields")
        return head

    def _build(self, head: list[Any], payload: Buffer) -> tuple[int, Message]:
        tag, seq = head[0], head[1]
        if tag not in MESSAGE_TYPES:
            return seq, UnknownTag(tag=tag)
        dec = None if self.generic else _DECODERS.get(tag)
        if dec is None:
            return seq, _decode_generic(tag, head, payload)
        return seq, dec(head, payload)
