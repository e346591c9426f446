"""The NBD request decoder: every command, validation, batching, incremental input, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhtrio.frontend.nbd.proto import (
    MAX_BLOCK_SIZE,
    NEED_DATA,
    BlockStatus,
    Cache,
    Disconnect,
    ExportInfo,
    Flush,
    InvalidRequest,
    Item,
    NbdProtocolError,
    Read,
    Request,
    TransmissionDecoder,
    Trim,
    Write,
    WriteZeroes,
)
from lhtrio.frontend.nbd.transmission import DEFAULT_BUFFER_SIZE
from lhtrio.wire.buffers import PEEK

from .nbd_helpers import (
    BLOCK_STATUS,
    CACHE,
    DF,
    DISC,
    EINVAL,
    ENOSPC,
    EPERM,
    EXPORT,
    FAST_ZERO,
    FLUSH,
    FUA,
    NO_HOLE,
    READ,
    REQ_ONE,
    SIZE,
    TRIM,
    WRITE,
    WRITE_ZEROES,
    decode,
    request,
    transmission,
    write,
)


def decoder(**kwargs: object) -> TransmissionDecoder:
    t = kwargs.pop("t", None) or transmission()
    return TransmissionDecoder(t, **kwargs)  # type: ignore[arg-type]


def feed(dec: TransmissionDecoder, data: bytes, chunk: int) -> list[Item]:
    """Receive like a server: at most ``chunk`` bytes into receive_buffer(), drain each time."""
    items: list[Item] = []
    pos = 0
    while pos < len(data):
        target = dec.receive_buffer()
        n = min(len(target), chunk, len(data) - pos)
        target[:n] = data[pos : pos + n]
        dec.commit(n)
        pos += n
        items += dec.drain()
    return items


def one(data: bytes, dec: TransmissionDecoder | None = None) -> Item:
    dec = dec or decoder()
    dec.receive_data(data)
    [item] = dec.drain()
    assert dec.buffered == 0
    return item


# --- every command ----------------------------------------------------------------------------


def test_every_command_parses_into_its_request() -> None:
    assert one(request(READ, 1, 4096, 512, FUA | DF)) == Read(1, 4096, 512, FUA | DF)
    assert one(write(2, 8192, b"abc", FUA)) == Write(2, 8192, 3, FUA, b"abc")
    assert one(request(FLUSH, 3, 0, 0)) == Flush(3, 0, 0, 0)
    assert one(request(TRIM, 4, 0, SIZE, FUA)) == Trim(4, 0, SIZE, FUA)
    zero = one(request(WRITE_ZEROES, 5, 512, 512, NO_HOLE))
    assert zero == WriteZeroes(5, 512, 512, NO_HOLE)
    assert isinstance(zero, WriteZeroes)
    assert zero.no_hole
    status = one(request(BLOCK_STATUS, 6, 0, SIZE, REQ_ONE))
    assert status == BlockStatus(6, 0, SIZE, REQ_ONE)
    assert isinstance(status, BlockStatus)
    assert status.req_one
    assert one(request(DISC, 7, 0, 0)) == Disconnect(7)


def test_request_properties_and_handles_up_to_u64() -> None:
    item = one(request(READ, 2**64 - 1, SIZE - 1, 1, FUA | DF))
    assert isinstance(item, Read)
    assert item.handle == 2**64 - 1
    assert item.fua
    assert item.df
    assert item.COMMAND == READ
    assert repr(item) == f"Read(handle={2**64 - 1}, offset={SIZE - 1}, length=1, flags=0x5)"
    assert Read(1, 2, 3, 0) != Trim(1, 2, 3, 0)
    assert Write(1, 0, 1, 0, b"a") == Write(1, 0, 1, 0, bytearray(b"a"))


def test_zero_length_read_write_trim_are_accepted() -> None:
    assert one(request(READ, 1, SIZE, 0)) == Read(1, SIZE, 0, 0)
    assert one(write(1, SIZE, b"")) == Write(1, SIZE, 0, 0, b"")
    assert one(request(TRIM, 1, 0, 0)) == Trim(1, 0, 0, 0)


def test_a_batch_comes_out_in_order_from_one_drain() -> None:
    data = b"".join(
        [
            request(READ, 1, 0, 4096),
            write(2, 0, b"x" * 4096),
            request(FLUSH, 3, 0, 0),
            request(READ, 4, 0, MAX_BLOCK_SIZE + 1),  # refused in the middle
            write(5, 4096, b"y" * 100),
            request(READ, 6, 4096, 100),
        ]
    )
    dec = decoder()
    dec.receive_data(data)
    items = dec.drain()
    assert [item.handle for item in items] == [1, 2, 3, 4, 5, 6]
    assert isinstance(items[3], InvalidRequest)
    assert dec.drain() == []
    assert dec.buffered == 0


# --- validation -------------------------------------------------------------------------------

_PAST = "past the end of the export"


@pytest.mark.parametrize(
    ("data", "error", "text"),
    [
        (request(READ, 9, SIZE - 1, 2), EINVAL, _PAST),
        (request(READ, 9, SIZE + 1, 0), EINVAL, _PAST),
        (request(READ, 9, 2**64 - 1, 1), EINVAL, _PAST),
        (request(READ, 9, 0, MAX_BLOCK_SIZE + 1), EINVAL, "maximum block size"),
        (request(READ, 9, 0, 1, 0x20), EINVAL, "flags 0x20"),
        (request(READ, 9, 0, 1, REQ_ONE), EINVAL, "flags 0x8"),
        (write(9, SIZE - 1, b"ab"), ENOSPC, _PAST),
        (write(9, 0, b"ab", DF), EINVAL, "flags 0x4"),
        (request(WRITE_ZEROES, 9, SIZE, 1), ENOSPC, _PAST),
        (request(WRITE_ZEROES, 9, 0, 1, FAST_ZERO), EINVAL, "flags 0x10"),
        (request(TRIM, 9, 1, SIZE), EINVAL, _PAST),
        (request(TRIM, 9, 0, 1, NO_HOLE), EINVAL, "flags 0x2"),
        (request(FLUSH, 9, 0, 1), EINVAL, "must be zero"),
        (request(FLUSH, 9, 1, 0), EINVAL, "must be zero"),
        (request(BLOCK_STATUS, 9, 0, 0), EINVAL, "zero"),
        (request(BLOCK_STATUS, 9, SIZE, 1), EINVAL, _PAST),
        (request(CACHE, 9, 0, 1), EINVAL, "CACHE: not supported"),
        (request(8, 9, 0, 1), EINVAL, "not supported"),
        (request(0xFFFF, 9, 0, 1), EINVAL, "command 65535"),
    ],
)
def test_invalid_requests_get_the_right_error(data: bytes, error: int, text: str) -> None:
    item = one(data)
    assert isinstance(item, InvalidRequest)
    assert item.handle == 9
    assert item.error == error
    assert text in item.message


def test_commands_without_a_payload_are_not_capped_at_the_maximum_block_size() -> None:
    big = ExportInfo(name="big", size=1 << 40, can_cache=True)
    dec = decoder(t=transmission(big))
    assert one(request(TRIM, 1, 0, 2**32 - 1), dec) == Trim(1, 0, 2**32 - 1, 0)
    assert one(request(BLOCK_STATUS, 2, 0, 2**32 - 1), dec) == BlockStatus(2, 0, 2**32 - 1, 0)
    # issue 16 #19: a 40 MiB WRITE_ZEROES was refused with EINVAL (qemu-nbd accepts it)
    assert one(request(WRITE_ZEROES, 3, 0, 40 << 20), dec) == WriteZeroes(3, 0, 40 << 20, 0)
    assert one(request(WRITE_ZEROES, 4, 0, 2**32 - 1), dec) == WriteZeroes(4, 0, 2**32 - 1, 0)
    assert one(request(CACHE, 5, 0, 2**32 - 1), dec) == Cache(5, 0, 2**32 - 1, 0)


def test_cache_and_fast_zero_are_accepted_when_the_export_offers_them() -> None:
    export = ExportInfo(name="vol", size=SIZE, can_cache=True, can_fast_zero=True)
    dec = decoder(t=transmission(export))
    assert one(request(CACHE, 1, 4096, 8192), dec) == Cache(1, 4096, 8192, 0)
    assert one(request(CACHE, 2, 0, 0), dec) == Cache(2, 0, 0, 0)
    zero = one(request(WRITE_ZEROES, 3, 0, 4096, FAST_ZERO | FUA), dec)
    assert zero == WriteZeroes(3, 0, 4096, FAST_ZERO | FUA)
    assert isinstance(zero, WriteZeroes)
    assert zero.fast
    assert zero.fua
    assert not zero.no_hole
    for data, error in (
        (request(CACHE, 4, 0, 1, FUA), EINVAL),  # no flag is defined for CACHE
        (request(CACHE, 4, SIZE, 1), EINVAL),
        (request(READ, 4, 0, 1, FAST_ZERO), EINVAL),
        (request(TRIM, 4, 0, 1, FAST_ZERO), EINVAL),
    ):
        item = one(data, dec)
        assert isinstance(item, InvalidRequest)
        assert item.error == error


def test_what_was_not_negotiated_is_refused() -> None:
    plain = decoder(t=transmission(structured=False))
    item = one(request(READ, 1, 0, 1, DF), plain)
    assert isinstance(item, InvalidRequest)
    assert item.error == EINVAL
    item = one(request(BLOCK_STATUS, 2, 0, 1), plain)
    assert isinstance(item, InvalidRequest)
    assert item.error == EINVAL
    assert one(request(BLOCK_STATUS, 3, 0, 1), decoder(t=transmission(meta=False))) != BlockStatus(
        3, 0, 1, 0
    )


def test_export_without_optional_commands() -> None:
    bare = ExportInfo(
        name="bare", size=SIZE, can_flush=False, can_fua=False, can_trim=False, can_zero=False
    )
    dec = decoder(t=transmission(bare))
    for data in (
        request(FLUSH, 1, 0, 0),
        request(TRIM, 1, 0, 1),
        request(WRITE_ZEROES, 1, 0, 1),
        request(READ, 1, 0, 1, FUA),
        write(1, 0, b"z", FUA),
    ):
        item = one(data, dec)
        assert isinstance(item, InvalidRequest)
        assert item.error == EINVAL
    assert one(write(2, 0, b"z"), dec) == Write(2, 0, 1, 0, b"z")


def test_read_only_export_refuses_writes_with_eperm_and_consumes_the_payload() -> None:
    ro = ExportInfo(name="ro", size=SIZE, read_only=True)
    dec = decoder(t=transmission(ro), buffer_size=64, direct_min=16)
    dec.receive_data(
        write(1, 0, b"w" * 100)
        + request(TRIM, 2, 0, 1)
        + request(WRITE_ZEROES, 3, 0, 1)
        + request(READ, 4, 0, 1)
    )
    items = dec.drain()
    assert [(type(i).__name__, getattr(i, "error", None)) for i in items] == [
        ("InvalidRequest", EPERM),
        ("InvalidRequest", EPERM),
        ("InvalidRequest", EPERM),
        ("Read", None),
    ]


@pytest.mark.parametrize("length", [1, 15, 16, 4096, 64 << 10, MAX_BLOCK_SIZE])
def test_out_of_range_write_is_skipped_then_refused_and_the_stream_stays_in_step(
    length: int,
) -> None:
    dec = decoder(buffer_size=64, direct_min=16)
    data = write(1, SIZE, b"\xee" * length) + request(READ, 2, 0, 8)
    items = feed(dec, data, 4096)
    assert dec.buffered == 0
    assert items == [
        InvalidRequest(
            1,
            WRITE,
            ENOSPC,  # type: ignore[arg-type]
            f"WRITE: {length} bytes at offset {SIZE} go past the end of the export ({SIZE} bytes)",
        ),
        Read(2, 0, 8, 0),
    ]
    assert dec.buffer_size == 2 * (28 + 16)


def test_invalid_refusal_waits_for_the_payload() -> None:
    dec = decoder()
    dec.receive_data(write(1, SIZE, b"abcd")[:-1])
    assert dec.drain() == []
    dec.receive_data(b"d")
    [item] = dec.drain()
    assert isinstance(item, InvalidRequest)


# --- broken streams ---------------------------------------------------------------------------


def test_oversized_write_closes_without_a_partial_write() -> None:
    dec = decoder()
    dec.receive_data(request(READ, 1, 0, 1) + request(WRITE, 2, 0, MAX_BLOCK_SIZE + 1) + b"x" * 100)
    assert dec.drain() == [Read(1, 0, 1, 0)]
    with pytest.raises(NbdProtocolError, match="exceeds"):
        dec.drain()
    with pytest.raises(NbdProtocolError):
        dec.next_request()
    with pytest.raises(NbdProtocolError):
        dec.eof()


def test_bad_magic_after_good_requests_returns_them_then_raises() -> None:
    dec = decoder()
    dec.receive_data(request(READ, 1, 0, 1) + b"\x25\x60\x95\x14" + bytes(24))
    assert dec.drain() == [Read(1, 0, 1, 0)]
    with pytest.raises(NbdProtocolError, match="magic 0x25609514"):
        dec.drain()


def test_bad_magic_alone_raises_at_once() -> None:
    dec = decoder()
    dec.receive_data(bytes(28))
    with pytest.raises(NbdProtocolError):
        dec.drain()


@pytest.mark.parametrize(
    "partial",
    [request(READ, 1, 0, 1)[:-1], write(1, 0, b"abc")[:-1], write(1, SIZE, b"abc")[:-1]],
)
def test_eof_in_the_middle_of_a_request_is_an_error(partial: bytes) -> None:
    dec = decoder()
    dec.receive_data(partial)
    assert dec.drain() == []
    with pytest.raises(NbdProtocolError, match="middle of a request"):
        dec.eof()


def test_eof_between_requests_is_fine() -> None:
    dec = decoder()
    dec.receive_data(write(1, 0, b"abc"))
    assert len(dec.drain()) == 1
    dec.eof()


def test_everything_after_disconnect_is_dropped() -> None:
    dec = decoder(buffer_size=64, direct_min=16)
    dec.receive_data(request(DISC, 1, 0, 0) + request(READ, 2, 0, 1) + b"garbage" * 50)
    assert dec.drain() == [Disconnect(1)]
    dec.receive_data(b"more garbage" * 100)
    assert dec.drain() == []
    assert dec.next_request() is NEED_DATA
    dec.eof()


# --- receiving into the decoder's memory --------------------------------------------------------


def test_large_write_payload_is_received_straight_into_its_own_buffer() -> None:
    dec = decoder(direct_min=1024)
    payload = bytes(range(256)) * 64  # 16 KiB
    data = write(7, 0, payload) + request(FLUSH, 8, 0, 0)
    pos, targets, items = 0, [], []
    while pos < len(data):
        target = dec.receive_buffer()
        n = min(len(target), len(data) - pos, 1000)
        target[:n] = data[pos : pos + n]
        targets.append(target.obj)
        dec.commit(n)
        pos += n
        items += dec.drain()
    assert items == [Write(7, 0, len(payload), 0, payload), Flush(8, 0, 0, 0)]
    assert isinstance(items[0], Write)
    assert any(obj is items[0].data for obj in targets)  # the kernel's buffer is the payload


def test_after_a_large_write_the_next_receive_takes_little_more_than_a_header() -> None:
    dec = decoder()
    payload = bytes(range(256)) * 1024  # 256 KiB: its own buffer
    dec.receive_data(write(1, 0, payload))
    assert dec.drain() == [Write(1, 0, len(payload), 0, payload)]
    # The next large write's header comes with little of its payload, which would be copied
    # from the shared buffer into the payload's own; the rest goes straight there.
    peek = dec.receive_buffer()
    assert len(peek) == PEEK < DEFAULT_BUFFER_SIZE
    following = write(2, 0, payload)
    peek[:] = following[:PEEK]
    dec.commit(PEEK)
    assert dec.drain() == []
    rest = dec.receive_buffer()
    assert len(rest) == len(following) - PEEK  # exactly the rest of the payload
    rest[:] = following[PEEK:]
    dec.commit(len(rest))
    assert dec.drain() == [Write(2, 0, len(payload), 0, payload)]
    dec.receive_data(request(FLUSH, 3, 0, 0))  # a small request in the peek ...
    assert dec.drain() == [Flush(3, 0, 0, 0)]
    assert len(dec.receive_buffer()) > PEEK  # ... and then the whole free tail again


def test_small_write_payloads_are_owned_copies() -> None:
    dec = decoder()
    dec.receive_data(write(1, 0, b"a" * 10) + write(2, 0, b"b" * 10))
    first, second = dec.drain()
    assert isinstance(first, Write)
    assert isinstance(second, Write)
    dec.receive_data(write(3, 0, b"c" * 10))
    dec.drain()
    assert (first.data, second.data) == (b"a" * 10, b"b" * 10)
    assert isinstance(first.data, bytearray)


def test_decoder_size_follows_an_expansion() -> None:
    dec = decoder()
    dec.receive_data(request(READ, 1, SIZE, 1))
    assert isinstance(dec.drain()[0], InvalidRequest)
    dec.size = SIZE + 1
    dec.receive_data(request(READ, 1, SIZE, 1))
    assert dec.drain() == [Read(1, SIZE, 1, 0)]


# --- incremental input: byte at a time equals at once (Hypothesis) -------------------------------

_handles = st.integers(0, 2**64 - 1)
_offsets = st.one_of(st.integers(0, SIZE), st.integers(0, 2**64 - 1))
_lengths = st.one_of(st.integers(0, 64), st.integers(0, SIZE), st.integers(0, 2**32 - 1))
_flags = st.one_of(
    st.sampled_from([0, FUA, DF, NO_HOLE, REQ_ONE, FAST_ZERO]), st.integers(0, 0xFFFF)
)
_small_payloads = st.one_of(st.binary(max_size=40), st.binary(min_size=200, max_size=300))
_requests = st.one_of(
    st.builds(
        request,
        st.sampled_from([READ, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS, 9, 0xFFFF]),
        _handles,
        _offsets,
        _lengths,
        _flags,
    ),
    st.builds(write, _handles, st.integers(0, SIZE), _small_payloads, _flags),
)
_streams = st.builds(
    lambda reqs, disc: b"".join(reqs) + (request(DISC, 0, 0, 0) if disc else b""),
    st.lists(_requests, max_size=12),
    st.booleans(),
)


@given(data=_streams, chunks=st.lists(st.integers(1, 100), min_size=1, max_size=5))
def test_byte_at_a_time_and_any_split_equal_at_once(data: bytes, chunks: list[int]) -> None:
    at_once, error = decode(data)
    assert error is None
    assert decode(data, chunks=[1]) == (at_once, None)
    assert decode(data, chunks=chunks) == (at_once, None)
    assert decode(data, chunks=chunks, drain=False) == (at_once, None)
    big = TransmissionDecoder(transmission())  # defaults: 256 KiB buffer, 64 KiB direct_min
    assert decode(data, decoder=big) == (at_once, None)


@given(data=_streams)
def test_every_request_is_either_valid_or_refused(data: bytes) -> None:
    items, _ = decode(data)
    for item in items:
        if isinstance(item, Request):
            assert item.offset + item.length <= SIZE
            if isinstance(item, Write):
                assert len(item.data) == item.length
            if not isinstance(item, Trim | BlockStatus):
                assert item.length <= MAX_BLOCK_SIZE


# --- fuzz: garbage gives items or the protocol error, in bounded memory --------------------------

_garbage = st.lists(
    st.one_of(
        _requests,
        st.binary(max_size=40),
        st.builds(lambda r, cut: r[:cut], _requests, st.integers(0, 40)),
    ),
    max_size=10,
).map(b"".join)


@settings(max_examples=300)
@given(data=_garbage, chunk=st.integers(1, 200), structured=st.booleans())
def test_fuzz_garbage_gives_items_or_the_protocol_error(
    data: bytes, chunk: int, structured: bool
) -> None:
    dec = TransmissionDecoder(transmission(structured=structured), buffer_size=64, direct_min=16)
    size = dec.buffer_size
    try:
        for i in range(0, len(data), chunk):
            for item in feed(dec, data[i : i + chunk], chunk):
                assert isinstance(item, Request | InvalidRequest | Disconnect)
                if isinstance(item, Write):
                    assert len(item.data) == item.length
            assert dec.buffer_size == size  # never grows
            assert dec.buffered <= max(size, MAX_BLOCK_SIZE)
        dec.eof()
    except NbdProtocolError:
        with pytest.raises(NbdProtocolError):
            dec.drain()


def test_export_fixture_is_the_one_the_helpers_use() -> None:
    assert EXPORT.size == SIZE
