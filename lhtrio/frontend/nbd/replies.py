"""Encoders of NBD transmission replies (simple replies and structured reply chunks).

Every function returns the small header bytes; read data is never copied into them. A server
collects a batch of replies into a list of buffers and sends it with one scatter-gather send
(:func:`read_reply` appends the header and then the caller's data buffer itself), or packs
headers straight into its own send buffer with the ``pack_*_into`` functions and lets
``os.preadv`` fill the data behind them: the coalesced send that made the measured prototype
2-3x faster than one send per reply.

Design decisions:

* **Which reply shape** follows the spec: without structured replies everything is a simple
  reply (a failed READ gets no payload). With them, a READ is always structured (one
  ``OFFSET_DATA`` chunk flagged DONE, or a ``NONE`` chunk for a zero-length read, so
  ``NBD_CMD_FLAG_DF`` always holds), errors are ``ERROR`` chunks carrying the message (the spec
  prefers them: the client can show the text), and other successes stay 16-byte simple replies
  (allowed, and smaller than a chunk).
* **Holes in structured reads.** :func:`sparse_read_reply` sends the ranges of a read that are
  all zeros as ``OFFSET_HOLE`` chunks (12 bytes each instead of the zeros), so that a
  sparse-aware client skips them, as qemu-nbd's replies let it: runs of whole 4 KiB blocks of
  the export (:func:`zero_spans`), found without a Python loop over the data in the common
  case: the first byte of every block is gathered with one strided slice, and only blocks
  that start with a zero byte are compared (``startswith``, a ``memcmp`` that stops at the first
  nonzero byte). A 4 KiB read of data costs about 0.3 µs more; never used when the client sets
  ``NBD_CMD_FLAG_DF`` (one data chunk then, zeros included).
* **Block status** descriptors are clipped so that they never cover more than the request
  (the spec allows the last one to run past it; never doing so keeps every length within u32),
  zero-length extents are dropped, and ``REQ_ONE`` keeps only the first.
* Messages are UTF-8, cut to the spec's 4096-byte string limit at a character boundary.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from lhtrio.frontend.nbd.constants import (
    CHUNK_HEADER,
    MAX_STRING,
    SIMPLE_REPLY,
    SIMPLE_REPLY_MAGIC,
    STRUCTURED_REPLY_MAGIC,
    ChunkType,
    ReplyFlag,
)
from lhtrio.frontend.nbd.requests import Buffer

__all__ = [
    "SIMPLE_REPLY_SIZE",
    "DATA_CHUNK_HEADER_SIZE",
    "simple_reply",
    "none_chunk",
    "offset_data_header",
    "offset_hole_chunk",
    "error_chunk",
    "error_offset_chunk",
    "block_status_chunk",
    "error_reply",
    "read_reply",
    "sparse_read_reply",
    "zero_spans",
    "read_reply_header",
    "read_reply_header_size",
    "pack_simple_reply_into",
    "pack_read_reply_header_into",
]

SIMPLE_REPLY_SIZE: Final = SIMPLE_REPLY.size
#: Chunk header plus the u64 offset that precedes the data of an OFFSET_DATA chunk.
DATA_CHUNK_HEADER_SIZE: Final = CHUNK_HEADER.size + 8

_DONE: Final = int(ReplyFlag.DONE)
_NONE: Final = int(ChunkType.NONE)
_OFFSET_DATA: Final = int(ChunkType.OFFSET_DATA)
_OFFSET_HOLE: Final = int(ChunkType.OFFSET_HOLE)
_BLOCK_STATUS: Final = int(ChunkType.BLOCK_STATUS)
_ERROR: Final = int(ChunkType.ERROR)
_ERROR_OFFSET: Final = int(ChunkType.ERROR_OFFSET)
_U32_MAX: Final = 0xFFFFFFFF
_SHIFT: Final = 12
_BLOCK: Final = 1 << _SHIFT  # holes are whole blocks of this size (the export's preferred size)
_MASK: Final = _BLOCK - 1
_ZERO_BLOCK: Final = bytes(_BLOCK)
_ZERO_RUN: Final = memoryview(bytes(1 << 20))  # prefixes of it: runs are compared in one go
_RUN_BLOCKS: Final = len(_ZERO_RUN) >> _SHIFT

_pack_simple = SIMPLE_REPLY.pack
_pack_chunk = CHUNK_HEADER.pack
_DATA_HEAD = struct.Struct(">IHHQIQ")  # chunk header + offset
_HOLE = struct.Struct(">IHHQIQI")  # chunk header + offset + hole size
_ERROR_HEAD = struct.Struct(">IHHQIIH")  # chunk header + error + message length
_U64 = struct.Struct(">Q")


def _message(text: str) -> bytes:
    return text.encode("utf-8")[:MAX_STRING].decode("utf-8", "ignore").encode("utf-8")


def simple_reply(handle: int, error: int = 0) -> bytes:
    """A simple reply (no payload): success, or ``error`` (an :class:`~.constants.Errno`)."""
    return _pack_simple(SIMPLE_REPLY_MAGIC, error, handle)


def none_chunk(handle: int) -> bytes:
    """The final ``NBD_REPLY_TYPE_NONE`` chunk (always flagged DONE)."""
    return _pack_chunk(STRUCTURED_REPLY_MAGIC, _DONE, _NONE, handle, 0)


def offset_data_header(handle: int, offset: int, length: int, *, done: bool = True) -> bytes:
    """Header of an ``OFFSET_DATA`` chunk carrying ``length`` (>= 1) bytes read at ``offset``."""
    if not 1 <= length <= _U32_MAX - 8:
        raise ValueError(f"an OFFSET_DATA chunk carries 1..{_U32_MAX - 8} bytes, not {length}")
    flags = _DONE if done else 0
    return _DATA_HEAD.pack(STRUCTURED_REPLY_MAGIC, flags, _OFFSET_DATA, handle, length + 8, offset)


def offset_hole_chunk(handle: int, offset: int, length: int, *, done: bool = True) -> bytes:
    """An ``OFFSET_HOLE`` chunk: ``length`` (>= 1) bytes at ``offset`` read as zeroes."""
    if not 1 <= length <= _U32_MAX:
        raise ValueError(f"an OFFSET_HOLE chunk covers 1..{_U32_MAX} bytes, not {length}")
    flags = _DONE if done else 0
    return _HOLE.pack(STRUCTURED_REPLY_MAGIC, flags, _OFFSET_HOLE, handle, 12, offset, length)


def error_chunk(handle: int, error: int, message: str = "", *, done: bool = True) -> bytes:
    """An ``ERROR`` chunk: the request failed with ``error`` (nonzero)."""
    if not error:
        raise ValueError("an error chunk needs a nonzero error")
    text = _message(message)
    flags = _DONE if done else 0
    head = _ERROR_HEAD.pack(
        STRUCTURED_REPLY_MAGIC, flags, _ERROR, handle, 6 + len(text), error, len(text)
    )
    return head + text


def error_offset_chunk(
    handle: int, error: int, offset: int, message: str = "", *, done: bool = True
) -> bytes:
    """An ``ERROR_OFFSET`` chunk: the request failed with ``error`` at ``offset``."""
    if not error:
        raise ValueError("an error chunk needs a nonzero error")
    text = _message(message)
    flags = _DONE if done else 0
    head = _ERROR_HEAD.pack(
        STRUCTURED_REPLY_MAGIC, flags, _ERROR_OFFSET, handle, 14 + len(text), error, len(text)
    )
    return head + text + _U64.pack(offset)


def block_status_chunk(
    handle: int,
    context_id: int,
    extents: Iterable[tuple[int, int]],
    *,
    length: int,
    req_one: bool = False,
    done: bool = True,
) -> bytes:
    """A ``BLOCK_STATUS`` chunk for a request of ``length`` bytes.

    ``extents`` are consecutive ``(length, flags)`` pairs from the request's offset on (flags
    of ``base:allocation``: :class:`~.constants.StateFlag`). They are clipped to the request
    (only the first with ``req_one``). Raises ValueError if no extent of nonzero length is left.
    """
    words: list[int] = []
    remaining = length
    for extent_length, extent_flags in extents:
        if remaining <= 0:
            break
        if extent_length <= 0:
            continue
        take = min(extent_length, remaining, _U32_MAX)
        words += (take, extent_flags)
        remaining -= take
        if req_one:
            break
    if not words:
        raise ValueError(f"block status for {length} bytes needs an extent of nonzero length")
    flags = _DONE if done else 0
    head = _pack_chunk(STRUCTURED_REPLY_MAGIC, flags, _BLOCK_STATUS, handle, 4 + 4 * len(words))
    return head + struct.pack(f">{len(words) + 1}I", context_id, *words)


def error_reply(handle: int, error: int, *, structured: bool, message: str = "") -> bytes:
    """The whole reply to a failed request (simple, or one ERROR chunk flagged DONE).

    Right for every command, READ included (no payload follows a simple error reply).
    """
    if structured:
        return error_chunk(handle, error, message)
    return _pack_simple(SIMPLE_REPLY_MAGIC, error, handle)


def read_reply_header_size(length: int, *, structured: bool) -> int:
    """Bytes of the header :func:`read_reply_header` makes for a read of ``length`` bytes."""
    if not structured:
        return SIMPLE_REPLY_SIZE
    return DATA_CHUNK_HEADER_SIZE if length else CHUNK_HEADER.size


def read_reply_header(handle: int, offset: int, length: int, *, structured: bool) -> bytes:
    """What precedes the ``length`` bytes of data of a successful READ (the whole reply if 0)."""
    if not structured:
        return _pack_simple(SIMPLE_REPLY_MAGIC, 0, handle)
    if not length:
        return none_chunk(handle)
    if length > _U32_MAX - 8:
        raise ValueError(f"an OFFSET_DATA chunk carries at most {_U32_MAX - 8} bytes")
    return _DATA_HEAD.pack(STRUCTURED_REPLY_MAGIC, _DONE, _OFFSET_DATA, handle, length + 8, offset)


def read_reply(
    out: list[Buffer], handle: int, offset: int, data: Buffer, *, structured: bool
) -> None:
    """Append a successful READ's reply to ``out``: the header, then ``data`` itself."""
    length = len(data)
    out.append(read_reply_header(handle, offset, length, structured=structured))
    if length:
        out.append(data)


def pack_simple_reply_into(buf: bytearray | memoryview, pos: int, handle: int, error: int) -> int:
    """Pack a simple reply at ``buf[pos:]``; returns its size."""
    SIMPLE_REPLY.pack_into(buf, pos, SIMPLE_REPLY_MAGIC, error, handle)
    return SIMPLE_REPLY_SIZE


def pack_read_reply_header_into(
    buf: bytearray | memoryview,
    pos: int,
    handle: int,
    offset: int,
    length: int,
    *,
    structured: bool,
) -> int:
    """Pack :func:`read_reply_header` at ``buf[pos:]``; returns its size (data goes after it)."""
    if not structured:
        SIMPLE_REPLY.pack_into(buf, pos, SIMPLE_REPLY_MAGIC, 0, handle)
        return SIMPLE_REPLY_SIZE
    if not length:
        CHUNK_HEADER.pack_into(buf, pos, STRUCTURED_REPLY_MAGIC, _DONE, _NONE, handle, 0)
        return CHUNK_HEADER.size
    _DATA_HEAD.pack_into(
        buf, pos, STRUCTURED_REPLY_MAGIC, _DONE, _OFFSET_DATA, handle, length + 8, offset
    )
    return DATA_CHUNK_HEADER_SIZE


#: Where in each block :func:`_samples` looks: a data block is unlikely to be zero at all of them.
_PROBES: Final = (0, 2053, _BLOCK - 1)


def _samples(data: bytes | bytearray, first: int, whole: int) -> bytes:
    """One byte per whole block of ``data`` (blocks start at ``first``): zero only if the block
    is zero at every probe. Cheap filter for the candidates worth a full comparison: data with a
    zero first byte in every block (common) would otherwise cost a comparison per block."""
    combined = 0
    for probe in _PROBES:
        combined |= int.from_bytes(data[first + probe :: _BLOCK][:whole], "big")
    return combined.to_bytes(whole, "big")


def zero_spans(data: Buffer, offset: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` ranges of ``data`` (read at export ``offset``) that are all zeros
    and worth a hole chunk, in order: runs of whole 4 KiB blocks of the export, stretched to
    the start or the end of ``data`` when the partial block there is zeros too, or all of a
    read that holds no whole block and is all zeros. Empty for a ``memoryview`` (not searched).
    """
    n = len(data)
    first = (-offset) & _MASK  # where the first block of the export starts in data
    if n == _BLOCK and not first and not isinstance(data, memoryview):  # (the common read)
        return [(0, n)] if not data[0] and data.startswith(_ZERO_BLOCK) else []
    if not n or isinstance(data, memoryview):
        return []
    startswith = data.startswith
    whole = (n - first) >> _SHIFT if first < n else 0
    if not whole:
        return [(0, n)] if startswith(_ZERO_BLOCK[:n] if n <= _BLOCK else bytes(n)) else []
    samples = _samples(data, first, whole)
    spans: list[tuple[int, int]] = []
    i = samples.find(0)
    while 0 <= i < whole:
        start = first + (i << _SHIFT)
        if not startswith(_ZERO_BLOCK, start):
            i = samples.find(0, i + 1)
            continue
        stop = start + _BLOCK
        i += 1
        step = _RUN_BLOCKS  # gallop: as many blocks at once as are left (a MiB at most), halving
        while i < whole and samples[i] == 0:
            step = min(step, whole - i)
            if startswith(_ZERO_RUN[: step << _SHIFT], stop):
                stop += step << _SHIFT
                i += step
            elif step > 1:
                step >>= 1
            else:
                break
        spans.append((start, stop))
        i = samples.find(0, i + 1)  # block i is not zeros (or is past the last whole block)
    if spans:
        head, tail = spans[0], spans[-1]
        if head[0] == first and first and startswith(_ZERO_BLOCK[:first]):
            spans[0] = (0, head[1])
        end = first + (whole << _SHIFT)
        if tail[1] == end < n and startswith(_ZERO_BLOCK[: n - end], end):
            spans[-1] = (spans[-1][0], n)
    return spans


def sparse_read_reply(out: list[Buffer], handle: int, offset: int, data: Buffer) -> None:
    """Append a successful structured READ's reply to ``out``: ``OFFSET_HOLE`` chunks for the
    ranges of ``data`` that are zeros (:func:`zero_spans`), ``OFFSET_DATA`` chunks (header, then
    a view of ``data``) for the rest; only the last chunk is flagged DONE. Never for a read with
    ``NBD_CMD_FLAG_DF``."""
    spans = zero_spans(data, offset)
    if not spans:
        read_reply(out, handle, offset, data, structured=True)
        return
    n = len(data)
    pieces: list[tuple[int, int, bool]] = []  # (start, stop, hole)
    pos = 0
    for start, stop in spans:
        if pos < start:
            pieces.append((pos, start, False))
        pieces.append((start, stop, True))
        pos = stop
    if pos < n:
        pieces.append((pos, n, False))
    view = memoryview(data)
    last = len(pieces) - 1
    for k, (start, stop, hole) in enumerate(pieces):
        done = k == last
        if hole:
            out.append(offset_hole_chunk(handle, offset + start, stop - start, done=done))
        else:
            out.append(offset_data_header(handle, offset + start, stop - start, done=done))
            out.append(view[start:stop])
