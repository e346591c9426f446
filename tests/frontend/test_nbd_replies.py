"""NBD reply encoders, byte for byte against the protocol document's layouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.frontend.nbd.proto import (
    Buffer,
    StateFlag,
    block_status_chunk,
    error_chunk,
    error_offset_chunk,
    error_reply,
    none_chunk,
    offset_data_header,
    offset_hole_chunk,
    pack_read_reply_header_into,
    pack_simple_reply_into,
    read_reply,
    read_reply_header,
    read_reply_header_size,
    simple_reply,
    sparse_read_reply,
    zero_spans,
)

from .nbd_helpers import CHUNK_MAGIC, EINVAL, EIO, SIMPLE_MAGIC, be

H = 0x0102030405060708
DONE = be(1, 2)
NOT_DONE = be(0, 2)


def chunk(flags: bytes, kind: int, payload: bytes) -> bytes:
    return CHUNK_MAGIC + flags + be(kind, 2) + be(H, 8) + be(len(payload), 4) + payload


def test_simple_reply() -> None:
    assert simple_reply(H) == SIMPLE_MAGIC + be(0, 4) + be(H, 8)
    assert simple_reply(H, EIO) == bytes.fromhex("67446698 00000005 0102030405060708")


def test_read_reply_simple_puts_the_data_buffer_itself_in_the_list() -> None:
    data = memoryview(bytearray(b"abcd"))
    out: list[Buffer] = []
    read_reply(out, H, 4096, data, structured=False)
    assert out[0] == SIMPLE_MAGIC + be(0, 4) + be(H, 8)
    assert out[1] is data


def test_read_reply_structured_is_one_offset_data_chunk_flagged_done() -> None:
    data = b"abcd"
    out: list[Buffer] = []
    read_reply(out, H, 4096, data, structured=True)
    assert b"".join(out) == chunk(DONE, 1, be(4096, 8) + b"abcd")
    assert out[1] is data


def test_zero_length_structured_read_is_a_none_chunk() -> None:
    out: list[Buffer] = []
    read_reply(out, H, 0, b"", structured=True)
    assert out == [chunk(DONE, 0, b"")]
    assert none_chunk(H) == chunk(DONE, 0, b"")


@pytest.mark.parametrize("structured", [False, True])
@pytest.mark.parametrize("length", [0, 1, 4096])
def test_packing_read_headers_into_a_send_buffer(structured: bool, length: int) -> None:
    buf = bytearray(64)
    n = pack_read_reply_header_into(buf, 3, H, 512, length, structured=structured)
    header = read_reply_header(H, 512, length, structured=structured)
    assert n == len(header) == read_reply_header_size(length, structured=structured)
    assert buf[3 : 3 + n] == header
    assert pack_simple_reply_into(buf, 0, H, EINVAL) == 16
    assert buf[:16] == simple_reply(H, EINVAL)


def test_offset_data_and_hole_chunks() -> None:
    # the header announces 8 + 100 bytes; the 100 bytes of data follow it separately
    assert offset_data_header(H, 7, 100) == CHUNK_MAGIC + DONE + be(1, 2) + be(H, 8) + be(
        108, 4
    ) + be(7, 8)
    assert offset_data_header(H, 7, 1, done=False)[4:6] == NOT_DONE
    assert offset_hole_chunk(H, 4096, 512) == chunk(DONE, 2, be(4096, 8) + be(512, 4))
    with pytest.raises(ValueError, match="OFFSET_DATA"):
        offset_data_header(H, 0, 0)
    with pytest.raises(ValueError, match="OFFSET_HOLE"):
        offset_hole_chunk(H, 0, 0)


def test_error_chunks() -> None:
    assert error_chunk(H, EIO, "disk on fire") == chunk(
        DONE, 32769, be(5, 4) + be(12, 2) + b"disk on fire"
    )
    assert error_chunk(H, EINVAL) == chunk(DONE, 32769, be(22, 4) + be(0, 2))
    assert error_offset_chunk(H, EIO, 8192, "bad", done=False) == chunk(
        NOT_DONE, 32770, be(5, 4) + be(3, 2) + b"bad" + be(8192, 8)
    )
    with pytest.raises(ValueError, match="nonzero"):
        error_chunk(H, 0)


def test_error_messages_are_cut_to_4096_bytes_on_a_character_boundary() -> None:
    reply = error_chunk(H, EIO, "é" * 3000)  # 6000 bytes of UTF-8
    length = int.from_bytes(reply[24:26], "big")
    assert length == 4096
    assert reply[26:].decode() == "é" * 2048
    reply = error_chunk(H, EIO, "x" + "é" * 3000)
    assert int.from_bytes(reply[24:26], "big") == 4095


def test_error_reply_picks_the_shape() -> None:
    assert error_reply(H, EIO, structured=False, message="ignored") == simple_reply(H, EIO)
    assert error_reply(H, EIO, structured=True, message="m") == error_chunk(H, EIO, "m")


def test_block_status_chunk() -> None:
    data, hole = 0, StateFlag.HOLE | StateFlag.ZERO
    extents = [(4096, data), (0, data), (8192, hole), (65536, data)]
    assert block_status_chunk(H, 1, extents, length=16384) == chunk(
        DONE,
        5,
        be(1, 4) + be(4096, 4) + be(0, 4) + be(8192, 4) + be(3, 4) + be(4096, 4) + be(0, 4),
    )
    assert block_status_chunk(H, 1, extents, length=16384, req_one=True) == chunk(
        DONE, 5, be(1, 4) + be(4096, 4) + be(0, 4)
    )
    assert block_status_chunk(H, 9, [(2**40, hole)], length=100, done=False) == chunk(
        NOT_DONE, 5, be(9, 4) + be(100, 4) + be(3, 4)
    )
    with pytest.raises(ValueError, match="nonzero length"):
        block_status_chunk(H, 1, [(0, 0)], length=10)


# --- holes in structured reads ------------------------------------------------------------------


def _zero_spans_model(data: bytes, offset: int) -> list[tuple[int, int]]:
    """zero_spans written the slow, obvious way: block by block."""
    n, first = len(data), -offset % 4096
    whole = (n - first) // 4096 if first < n else 0
    if not whole:
        return [(0, n)] if n and not any(data) else []
    spans: list[tuple[int, int]] = []
    for b in range(whole):
        start = first + 4096 * b
        if not any(data[start : start + 4096]):
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], start + 4096)
            else:
                spans.append((start, start + 4096))
    end = first + 4096 * whole
    if spans and spans[0][0] == first and not any(data[:first]):
        spans[0] = (0, spans[0][1])
    if spans and spans[-1][1] == end and not any(data[end:]):
        spans[-1] = (spans[-1][0], n)
    return spans


@st.composite
def _sparse_data(draw: st.DrawFn) -> tuple[bytes, int]:
    size = draw(st.sampled_from([1, 511, 4096, 4097, 12288, 20000, 70000, (1 << 20) + 300]))
    data = bytearray(size)
    for _ in range(draw(st.integers(0, 5))):
        start = draw(st.integers(0, size - 1))
        length = draw(st.sampled_from([1, 7, 4096, 5000, 300000]))
        data[start : start + length] = b"\x01" * len(data[start : start + length])
    return bytes(data), draw(st.sampled_from([0, 1, 512, 4095, 4096, 1 << 30]))


@given(_sparse_data())
def test_zero_spans_are_the_whole_zero_blocks(case: tuple[bytes, int]) -> None:
    data, offset = case
    assert zero_spans(data, offset) == _zero_spans_model(data, offset)
    assert zero_spans(bytearray(data), offset) == _zero_spans_model(data, offset)


@given(_sparse_data())
def test_a_sparse_read_reply_is_valid_chunks_that_rebuild_the_data(case: tuple[bytes, int]) -> None:
    data, offset = case
    out: list[Buffer] = []
    sparse_read_reply(out, H, offset, data)
    wire = b"".join(bytes(b) for b in out)
    rebuilt = bytearray(len(data))
    covered = 0
    done = False
    while wire:
        assert not done  # DONE only on the last chunk
        assert wire[:4] == CHUNK_MAGIC
        flags, kind = int.from_bytes(wire[4:6], "big"), int.from_bytes(wire[6:8], "big")
        length = int.from_bytes(wire[16:20], "big")
        payload, wire = wire[20 : 20 + length], wire[20 + length :]
        at = int.from_bytes(payload[:8], "big") - offset
        assert at == covered  # in order, contiguous, inside the request
        if kind == 1:
            rebuilt[at : at + length - 8] = payload[8:]
            covered += length - 8
        else:
            assert kind == 2
            assert length == 12
            covered += int.from_bytes(payload[8:], "big")
        done = bool(flags & 1)
    assert done
    assert covered == len(data)
    assert bytes(rebuilt) == data


def test_a_memoryview_is_sent_as_one_data_chunk() -> None:
    out: list[Buffer] = []
    sparse_read_reply(out, H, 0, memoryview(bytes(8192)))
    assert out[0] == offset_data_header(H, 0, 8192)
    assert len(out) == 2
