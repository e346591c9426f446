"""The sans-I/O codec: round trips, incremental decoding, the fuzz invariant, caps, stickiness."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhtrio.errors import FrameTooLargeError, RemoteProtocolError
from lhtrio.wire import (
    NEED_DATA,
    Call,
    Decoder,
    Done,
    Hello,
    Message,
    Ping,
    Read,
    UnknownTag,
    Write,
    encode,
    encode_frame,
)
from lhtrio.wire.buffers import PEEK, unfilled
from lhtrio.wire.codec import DIRECT_MIN, MAGIC, PREFIX_SIZE, encode_generic
from lhtrio.wire.decoder import decode_generic

from .strategies import messages, seqs


def frame(head: list[Any], data: bytes = b"", *, magic: int = MAGIC, flags: int = 0) -> bytes:
    packed = msgpack.packb(head)
    return struct.pack("<HHII", magic, flags, len(packed), len(data)) + packed + data


def decode_all(data: bytes, *, chunk: int | None = None, drain: bool = False) -> list[Any]:
    decoder = Decoder(buffer_size=64)
    out: list[Any] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        decoder.receive_data(piece)
        if drain:
            out += decoder.drain()
        else:
            while (item := decoder.next_message()) is not NEED_DATA:
                out.append(item)
    decoder.eof()
    return out


@given(seq=seqs, message=messages)
def test_round_trip_every_message(seq: int, message: Message) -> None:
    data = encode_frame(seq, message)
    assert decode_all(data) == [(seq, message)]
    assert decode_all(data, drain=True) == [(seq, message)]


@given(seq=seqs, message=messages)
def test_tuned_and_generic_paths_agree(seq: int, message: Message) -> None:
    tuned = encode_frame(seq, message)
    assert b"".join(encode_generic(seq, message)) == tuned
    assert decode_generic(tuned) == (seq, message)


@given(batch=st.lists(st.tuples(seqs, messages), max_size=6), chunk=st.integers(1, 7000))
def test_any_split_decodes_the_same(batch: list[tuple[int, Message]], chunk: int) -> None:
    data = b"".join(encode_frame(seq, m) for seq, m in batch)
    assert decode_all(data) == batch
    assert decode_all(data, chunk=chunk) == batch
    assert decode_all(data, chunk=chunk, drain=True) == batch


@given(seq=seqs, message=messages)
def test_byte_at_a_time_equals_at_once(seq: int, message: Message) -> None:
    data = encode_frame(seq, message)
    if len(data) > 5000:  # the direct path is covered by the chunked test above
        data = encode_frame(seq, Ping())
        message = Ping()
    assert decode_all(data, chunk=1) == decode_all(data) == [(seq, message)]


def test_payload_is_sent_without_copy() -> None:
    payload = bytearray(b"x" * 4096)
    buffers = encode(5, Write(0, payload))
    assert buffers[-1] is payload


def test_large_payload_is_received_into_its_own_buffer() -> None:
    payload = bytes(range(256)) * 1024
    data = encode_frame(1, Write(0, payload))
    decoder = Decoder()
    decoder.receive_data(data[: PREFIX_SIZE + 20])  # prefix, head and a little payload
    assert decoder.next_message() is NEED_DATA
    target = decoder.receive_buffer()
    assert len(target) == len(data) - PREFIX_SIZE - 20  # exactly the rest of the payload
    target[:] = data[PREFIX_SIZE + 20 :]
    decoder.commit(len(target))
    ((_, message),) = decoder.drain()
    assert isinstance(message, Write)
    assert isinstance(message.data, bytearray)
    assert message.data == payload
    # The next receive takes little more than a head: the rest of a large payload that follows
    # goes straight into its own buffer instead of being copied there from the shared one.
    peek = decoder.receive_buffer()
    assert len(peek) == PEEK
    following = encode_frame(2, Write(0, payload))
    peek[:] = following[:PEEK]
    decoder.commit(PEEK)
    assert decoder.drain() == []
    rest = decoder.receive_buffer()
    assert len(rest) == len(following) - PEEK  # exactly the rest of the payload
    rest[:] = following[PEEK:]
    decoder.commit(len(rest))
    ((_, message),) = decoder.drain()
    assert isinstance(message, Write)
    assert message.data == payload
    peek = decoder.receive_buffer()  # a small frame in the peek ...
    small = encode_frame(2, Write(0, b"s" * 100))
    peek[: len(small)] = small
    decoder.commit(len(small))
    assert [seq for seq, _ in decoder.drain()] == [2]
    assert len(decoder.receive_buffer()) > PEEK  # ... and then the whole free tail again


def test_a_large_payload_in_unfilled_memory_is_handed_on_only_whole() -> None:
    assert len(unfilled(1 << 20)) == 1 << 20
    stale = bytearray(b"\xee" * (1 << 20))  # leave recognisable bytes for the allocator to reuse
    del stale
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = encode_frame(1, Write(0, payload))
    decoder = Decoder()
    for pos in range(0, len(data), 7000):
        decoder.receive_data(data[pos : pos + 7000])
        if pos + 7000 < len(data):
            assert decoder.drain() == []  # nothing before its last byte arrived
    ((_, message),) = decoder.drain()
    assert isinstance(message, Write)
    assert message.data == payload


@settings(max_examples=400)
@given(garbage=st.binary(max_size=200), split=st.integers(1, 50))
def test_fuzz_garbage_decodes_or_raises_protocol_error(garbage: bytes, split: int) -> None:
    decoder = Decoder(max_head=256, max_data=4096, buffer_size=64)
    try:
        for i in range(0, len(garbage), split):
            decoder.receive_data(garbage[i : i + split])
            decoder.drain()
        decoder.eof()
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):  # and it stays broken
            decoder.next_message()
    assert len(decoder._buf) <= PREFIX_SIZE + 256 + DIRECT_MIN


@settings(max_examples=300)
@given(
    message=messages,
    position=st.integers(0, 400),
    byte=st.integers(0, 255),
)
def test_fuzz_mutated_frames(message: Message, position: int, byte: int) -> None:
    data = bytearray(encode_frame(1, message)[:400])
    data[position % len(data)] = byte
    decoder = Decoder(max_head=1024, max_data=1 << 20)
    try:
        decoder.receive_data(bytes(data))
        decoder.drain()
    except RemoteProtocolError:
        pass


def test_frame_cap_is_checked_before_buffering() -> None:
    decoder = Decoder(max_head=100, max_data=1000)
    decoder.receive_data(struct.pack("<HHII", MAGIC, 0, 10, 1001))
    with pytest.raises(FrameTooLargeError, match="1001 bytes"):
        decoder.next_message()
    decoder = Decoder(max_head=100, max_data=1000)
    decoder.receive_data(struct.pack("<HHII", MAGIC, 0, 101, 0))
    with pytest.raises(FrameTooLargeError, match="head of 101 bytes"):
        decoder.next_message()


def test_errors_are_sticky() -> None:
    decoder = Decoder()
    decoder.receive_data(b"\x00" * PREFIX_SIZE)
    with pytest.raises(RemoteProtocolError, match="magic") as first:
        decoder.next_message()
    decoder.receive_data(encode_frame(1, Ping()))
    with pytest.raises(RemoteProtocolError) as again:
        decoder.drain()
    assert again.value is first.value


def test_good_frames_before_a_bad_one_are_delivered_first() -> None:
    decoder = Decoder()
    decoder.receive_data(encode_frame(1, Ping()) + encode_frame(2, Ping()) + b"\x00" * PREFIX_SIZE)
    assert decoder.drain() == [(1, Ping()), (2, Ping())]
    with pytest.raises(RemoteProtocolError):
        decoder.drain()


def test_eof_in_the_middle_of_a_frame() -> None:
    decoder = Decoder()
    decoder.receive_data(encode_frame(1, Ping())[:-1])
    assert decoder.drain() == []
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        decoder.eof()


def test_unknown_tag_is_reported_not_fatal() -> None:
    data = frame([99, 5, "future"]) + encode_frame(6, Ping())
    assert decode_all(data) == [(5, UnknownTag(99)), (6, Ping())]


def test_forward_compatible_heads() -> None:
    # A newer v1 peer may append fields: ignored. Trailing fields with defaults may be left out.
    assert decode_all(frame([3, 1, 4096, 512, "extra"])) == [(1, Read(4096, 512))]
    assert decode_all(frame([4, 2, 0], b"ab")) == [(2, Write(0, b"ab", False))]
    assert decode_all(frame([1, 3, "vol"])) == [(3, Hello("vol"))]
    assert decode_all(frame([68, 4])) == [(4, Done(0))]


@pytest.mark.parametrize(
    ("head", "data", "match"),
    [
        ([4, 1, -1, False], b"x", "bad offset"),
        ([4, 1, 0, 1], b"x", "bad flag"),
        ([3, 1, 0, (32 << 20) + 1], b"", "bad length"),
        ([3, 1, 0], b"", "too few fields"),
        ([2, 1], b"x", "must not carry a payload"),
        ([7, 1, 5, {}], b"", "bad Call"),
        ([7, 1, "n", {1: 2}], b"", "not valid msgpack|bad Call"),
        ([1, 1, "v", "", "", ["1"]], b"", "bad Hello"),
        (["3", 1], b"", "bad tag"),
        ([3, 1.5], b"", "or seq 1.5"),
    ],
)
def test_bad_fields_are_protocol_errors(head: list[Any], data: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        decode_all(frame(head, data))
    with pytest.raises(RemoteProtocolError, match=match):
        decode_all(frame(head, data), drain=True)


def test_call_args_may_nest_any_msgpack() -> None:
    message = Call("snapshot", {"labels": {"a": "b"}, "sizes": [1, 2**40], "blob": b"\x00"})
    assert decode_all(encode_frame(9, message)) == [(9, message)]
