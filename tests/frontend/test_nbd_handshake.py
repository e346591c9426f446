"""The NBD handshake, byte for byte against the protocol document, plus its fuzz invariant."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.frontend.nbd.proto import (
    NEED_DATA,
    Aborted,
    Closed,
    ExportInfo,
    Handshake,
    NbdProtocolError,
    OptionRequest,
    Ready,
    Transmission,
)

from .nbd_helpers import (
    ABORT,
    ERR_INVALID,
    ERR_POLICY,
    ERR_TOO_BIG,
    ERR_UNKNOWN,
    ERR_UNSUP,
    EXPORT,
    EXPORT_NAME,
    GO,
    INFO,
    LIST,
    LIST_META_CONTEXT,
    OTHER,
    REP_ACK,
    REP_INFO,
    REP_META_CONTEXT,
    REP_SERVER,
    SET_META_CONTEXT,
    SIZE,
    STARTTLS,
    STRUCTURED_REPLY,
    MiB,
    be,
    events,
    go_data,
    handshake,
    lookup,
    meta_data,
    option,
    option_reply,
    parse_option_replies,
)

# Transmission flags of EXPORT: HAS_FLAGS 0x1 | SEND_FLUSH 0x4 | SEND_FUA 0x8 | SEND_TRIM 0x20
# | SEND_WRITE_ZEROES 0x40, plus SEND_DF 0x80 once structured replies are on.
FLAGS = 0x6D
FLAGS_STRUCTURED = 0xED
INFO_EXPORT = be(0, 2) + be(SIZE, 8)
INFO_BLOCK_SIZE = be(3, 2) + be(1, 4) + be(4096, 4) + be(32 * MiB, 4)


def test_greeting_is_nbdmagic_ihaveopt_and_both_handshake_flags() -> None:
    hs = Handshake(lookup)
    assert hs.data_to_send() == bytes.fromhex("4e42444d41474943 49484156454f5054 0003")
    assert hs.data_to_send() == b""
    assert hs.next_event() is NEED_DATA


def test_go_without_structured_replies() -> None:
    hs = handshake()
    [event] = events(hs, option(GO, go_data("vol", 3)))
    assert hs.data_to_send() == (
        option_reply(GO, REP_INFO, INFO_EXPORT + be(FLAGS, 2))
        + option_reply(GO, REP_INFO, INFO_BLOCK_SIZE)
        + option_reply(GO, REP_ACK)
    )
    assert event == Ready(
        Transmission(
            export=EXPORT,
            flags=FLAGS,
            structured_replies=False,
            meta_context=None,
            no_zeroes=True,
        )
    )
    assert hs.next_event() == event  # final events repeat
    assert hs.trailing_data == b""


def test_go_with_structured_replies_and_pipelined_request() -> None:
    hs = handshake(client_flags=1)
    pipelined = b"\x25\x60\x95\x13" + bytes(24)  # a READ sent before the GO reply came
    evs = events(hs, option(STRUCTURED_REPLY) + option(GO, go_data("")) + pipelined)
    assert evs[0] == OptionRequest(STRUCTURED_REPLY, REP_ACK)
    assert hs.data_to_send() == (
        option_reply(STRUCTURED_REPLY, REP_ACK)
        + option_reply(GO, REP_INFO, INFO_EXPORT + be(FLAGS_STRUCTURED, 2))
        + option_reply(GO, REP_INFO, INFO_BLOCK_SIZE)
        + option_reply(GO, REP_ACK)
    )
    assert isinstance(evs[1], Ready)
    assert evs[1].transmission.structured_replies
    assert evs[1].transmission.flags == FLAGS_STRUCTURED
    assert not evs[1].transmission.no_zeroes
    assert hs.trailing_data == pipelined


def test_info_answers_name_and_description_then_stays_in_negotiation() -> None:
    hs = handshake()
    [event] = events(hs, option(INFO, go_data("", 1, 2)))
    assert event == OptionRequest(INFO, REP_ACK, "")
    assert hs.data_to_send() == (
        option_reply(INFO, REP_INFO, INFO_EXPORT + be(FLAGS, 2))
        + option_reply(INFO, REP_INFO, be(1, 2) + b"vol")
        + option_reply(INFO, REP_INFO, be(2, 2) + b"test volume")
        + option_reply(INFO, REP_INFO, INFO_BLOCK_SIZE)
        + option_reply(INFO, REP_ACK)
    )
    assert hs.next_event() is NEED_DATA
    [ready] = events(hs, option(GO, go_data("vol")))
    assert isinstance(ready, Ready)


def test_export_name_without_no_zeroes_sends_124_zero_bytes() -> None:
    hs = handshake(client_flags=1)
    [event] = events(hs, option(EXPORT_NAME, b"vol"))
    assert hs.data_to_send() == be(SIZE, 8) + be(FLAGS, 2) + bytes(124)
    assert isinstance(event, Ready)
    assert event.transmission.export == EXPORT
    assert not event.transmission.no_zeroes


def test_export_name_with_no_zeroes() -> None:
    hs = handshake(client_flags=3)
    [event] = events(hs, option(EXPORT_NAME, b""))
    assert hs.data_to_send() == be(SIZE, 8) + be(FLAGS, 2)
    assert isinstance(event, Ready)
    assert event.transmission.no_zeroes


def test_export_name_unknown_export_closes() -> None:
    hs = handshake()
    with pytest.raises(NbdProtocolError, match="unknown export 'nope'"):
        events(hs, option(EXPORT_NAME, b"nope"))
    assert hs.data_to_send() == b""
    with pytest.raises(NbdProtocolError):  # sticky
        hs.next_event()


def test_list_sends_one_server_reply_per_export() -> None:
    hs = handshake(list_exports=lambda: [EXPORT, OTHER])
    [event] = events(hs, option(LIST))
    assert event == OptionRequest(LIST, REP_ACK)
    assert hs.data_to_send() == (
        option_reply(LIST, REP_SERVER, be(3, 4) + b"vol" + b"test volume")
        + option_reply(LIST, REP_SERVER, be(5, 4) + b"other")
        + option_reply(LIST, REP_ACK)
    )


def test_list_without_a_listing_is_refused_by_policy() -> None:
    hs = handshake()
    [event] = events(hs, option(LIST))
    [(number, reply, message)] = parse_option_replies(hs.data_to_send())
    assert (number, reply) == (LIST, ERR_POLICY)
    assert event == OptionRequest(LIST, ERR_POLICY, None, message.decode())


def test_abort_is_acknowledged() -> None:
    hs = handshake()
    assert events(hs, option(ABORT)) == [Aborted()]
    assert hs.data_to_send() == option_reply(ABORT, REP_ACK)
    assert hs.next_event() == Aborted()


@pytest.mark.parametrize(("number", "data"), [(99, b"hello"), (4, b""), (11, b""), (STARTTLS, b"")])
def test_unknown_and_unsupported_options_get_err_unsup_and_negotiation_goes_on(
    number: int, data: bytes
) -> None:
    hs = handshake()
    [event] = events(hs, option(number, data))
    [(replied, reply, message)] = parse_option_replies(hs.data_to_send())
    assert (replied, reply) == (number, ERR_UNSUP)
    assert message
    assert event == OptionRequest(number, ERR_UNSUP, None, message.decode())
    [ready] = events(hs, option(GO, go_data("vol")))
    assert isinstance(ready, Ready)


@pytest.mark.parametrize("number", [INFO, GO])
def test_unknown_export_gets_err_unknown(number: int) -> None:
    hs = handshake()
    [event] = events(hs, option(number, go_data("nope", 3)))
    [(replied, reply, message)] = parse_option_replies(hs.data_to_send())
    assert (replied, reply) == (number, ERR_UNKNOWN)
    assert b"nope" in message
    assert isinstance(event, OptionRequest)
    assert event.export == "nope"
    assert hs.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("number", "data"),
    [
        (GO, b""),
        (GO, be(10, 4) + b"vol" + be(0, 2)),  # name length overruns
        (GO, go_data("vol") + b"x"),  # trailing byte
        (GO, be(2, 4) + b"\xff\xfe" + be(0, 2)),  # not UTF-8
        (INFO, go_data("vol", 3)[:-1]),
        (STRUCTURED_REPLY, b"x"),
        (LIST, b"x"),
        (LIST_META_CONTEXT, meta_data("vol", "base:allocation")[:-1]),
        (LIST_META_CONTEXT, be(0, 4) + be(2, 4) + be(3, 4) + b"a:b"),  # one query missing
    ],
)
def test_malformed_option_data_gets_err_invalid(number: int, data: bytes) -> None:
    hs = handshake(list_exports=lambda: [EXPORT])
    events(hs, option(number, data))
    [(replied, reply, _)] = parse_option_replies(hs.data_to_send())
    assert (replied, reply) == (number, ERR_INVALID)


def test_set_meta_context_base_allocation() -> None:
    hs = handshake()
    events(hs, option(STRUCTURED_REPLY))
    hs.data_to_send()
    [event] = events(hs, option(SET_META_CONTEXT, meta_data("vol", "base:allocation")))
    assert event == OptionRequest(SET_META_CONTEXT, REP_ACK, "vol")
    assert hs.data_to_send() == (
        option_reply(SET_META_CONTEXT, REP_META_CONTEXT, be(1, 4) + b"base:allocation")
        + option_reply(SET_META_CONTEXT, REP_ACK)
    )
    [ready] = events(hs, option(GO, go_data("")))  # "" is the same export
    assert isinstance(ready, Ready)
    assert ready.transmission.meta_context == 1


@pytest.mark.parametrize(
    "queries", [("qemu:dirty-bitmap:b0",), ("base:",), ("base:nothing", "x-y:z"), ()]
)
def test_set_meta_context_selects_nothing_else(queries: tuple[str, ...]) -> None:
    hs = handshake()
    events(hs, option(STRUCTURED_REPLY))
    hs.data_to_send()
    events(hs, option(SET_META_CONTEXT, meta_data("vol", *queries)))
    assert hs.data_to_send() == option_reply(SET_META_CONTEXT, REP_ACK)
    [ready] = events(hs, option(GO, go_data("vol")))
    assert isinstance(ready, Ready)
    assert ready.transmission.meta_context is None


def test_set_meta_context_needs_structured_replies_and_counts_only_for_its_export() -> None:
    hs = handshake()
    events(hs, option(SET_META_CONTEXT, meta_data("vol", "base:allocation")))
    [(_, reply, _)] = parse_option_replies(hs.data_to_send())
    assert reply == ERR_INVALID
    events(hs, option(STRUCTURED_REPLY) + option(SET_META_CONTEXT, meta_data("other", "base:")))
    events(hs, option(SET_META_CONTEXT, meta_data("other", "base:allocation")))
    events(hs, option(SET_META_CONTEXT, meta_data("nope", "base:allocation")))
    replies = parse_option_replies(hs.data_to_send())
    assert [r[1] for r in replies] == [REP_ACK, REP_ACK, REP_META_CONTEXT, REP_ACK, ERR_UNKNOWN]
    [ready] = events(hs, option(GO, go_data("other")))
    assert isinstance(ready, Ready)
    assert ready.transmission.meta_context is None  # the failed request replaced the selection


def test_meta_context_for_another_export_than_go_is_dropped() -> None:
    hs = handshake()
    events(hs, option(STRUCTURED_REPLY))
    events(hs, option(SET_META_CONTEXT, meta_data("other", "base:allocation")))
    [ready] = events(hs, option(GO, go_data("vol")))
    assert isinstance(ready, Ready)
    assert ready.transmission.meta_context is None


@pytest.mark.parametrize("queries", [(), ("base:",), ("base:allocation", "x-foo:bar")])
def test_list_meta_context(queries: tuple[str, ...]) -> None:
    hs = handshake()
    [event] = events(hs, option(LIST_META_CONTEXT, meta_data("vol", *queries)))
    assert event == OptionRequest(LIST_META_CONTEXT, REP_ACK, "vol")
    assert hs.data_to_send() == (
        option_reply(LIST_META_CONTEXT, REP_META_CONTEXT, be(0, 4) + b"base:allocation")
        + option_reply(LIST_META_CONTEXT, REP_ACK)
    )


def test_read_only_export_and_multi_conn_change_the_flags() -> None:
    export = ExportInfo(name="ro", size=512, read_only=True, can_multi_conn=True, can_fua=False)
    hs = Handshake(lambda name: export)
    hs.data_to_send()
    hs.receive_data(be(3, 4))
    [event] = events(hs, option(EXPORT_NAME, b"ro"))
    # HAS_FLAGS | READ_ONLY 0x2 | SEND_FLUSH | CAN_MULTI_CONN 0x100
    assert hs.data_to_send() == be(512, 8) + be(0x107, 2)
    assert isinstance(event, Ready)
    assert event.transmission.flags == 0x107


@pytest.mark.parametrize(
    ("export", "flags"),
    [
        # SEND_CACHE 0x400 and SEND_FAST_ZERO 0x800 on top of FLAGS
        (ExportInfo(name="vol", size=512, can_cache=True, can_fast_zero=True), FLAGS | 0xC00),
        # FAST_ZERO only with WRITE_ZEROES (the spec: MUST be 0 without SEND_WRITE_ZEROES)
        (ExportInfo(name="vol", size=512, can_zero=False, can_fast_zero=True), FLAGS & ~0x40),
        (
            ExportInfo(name="vol", size=512, read_only=True, can_cache=True, can_fast_zero=True),
            0x1 | 0x2 | 0x4 | 0x8 | 0x400,
        ),
    ],
)
def test_cache_and_fast_zero_flags(export: ExportInfo, flags: int) -> None:
    hs = Handshake(lambda name: export)
    hs.data_to_send()
    hs.receive_data(be(3, 4))
    [event] = events(hs, option(EXPORT_NAME, b"vol"))
    assert isinstance(event, Ready)
    assert event.transmission.flags == flags


# --- broken streams ---------------------------------------------------------------------------


def test_unknown_client_flags_close() -> None:
    hs = Handshake(lookup)
    hs.receive_data(be(4, 4))
    with pytest.raises(NbdProtocolError, match="client flags"):
        hs.next_event()


def test_bad_option_magic_closes() -> None:
    hs = handshake()
    with pytest.raises(NbdProtocolError, match="IHAVEOPT"):
        events(hs, b"IHAVEOPS" + bytes(8))


def test_option_too_large_is_refused_before_buffering_and_closes() -> None:
    hs = handshake(max_option_data=100)
    hs.receive_data(b"IHAVEOPT" + be(GO, 4) + be(101, 4))  # header only: no data buffered
    with pytest.raises(NbdProtocolError, match="101 bytes"):
        hs.next_event()
    [(number, reply, _)] = parse_option_replies(hs.data_to_send())
    assert (number, reply) == (GO, ERR_TOO_BIG)


def test_eof_between_messages_is_closed_and_inside_one_is_an_error() -> None:
    hs = handshake()
    hs.eof()
    assert hs.next_event() == Closed()
    hs = handshake()
    hs.receive_data(option(GO, go_data("vol"))[:-1])
    assert hs.next_event() is NEED_DATA
    hs.eof()
    with pytest.raises(NbdProtocolError, match="middle of an option"):
        hs.next_event()


def test_byte_at_a_time_gives_the_same_bytes_and_events() -> None:
    stream = (
        option(STRUCTURED_REPLY)
        + option(99, b"zz")
        + option(SET_META_CONTEXT, meta_data("vol", "base:allocation"))
        + option(INFO, go_data("", 1))
        + option(GO, go_data("vol", 3))
    )
    whole = handshake()
    expected_events = events(whole, stream)
    expected_bytes = whole.data_to_send()
    hs = handshake()
    got = []
    for i in range(len(stream)):
        got += events(hs, stream[i : i + 1])
    assert got == expected_events
    assert hs.data_to_send() == expected_bytes
    assert isinstance(got[-1], Ready)


# --- fuzz -------------------------------------------------------------------------------------

_options = st.builds(
    option,
    st.sampled_from([EXPORT_NAME, ABORT, LIST, 4, STARTTLS, INFO, GO, 8, 9, 10, 11, 12, 2**31]),
    st.one_of(
        st.binary(max_size=40),
        st.builds(go_data, st.sampled_from(["", "vol", "nope"]), st.integers(0, 5)),
        st.builds(meta_data, st.sampled_from(["vol", "x"]), st.sampled_from(["base:", "a:b"])),
    ),
)


@given(
    flags=st.integers(0, 4),
    pieces=st.lists(st.one_of(_options, st.binary(max_size=30)), max_size=8),
    chunk=st.integers(1, 64),
)
def test_fuzz_garbage_gives_events_or_the_protocol_error(
    flags: int, pieces: list[bytes], chunk: int
) -> None:
    hs = Handshake(lookup, list_exports=lambda: [EXPORT], max_option_data=256)
    hs.data_to_send()
    data = be(flags, 4) + b"".join(pieces)
    try:
        for i in range(0, len(data), chunk):
            hs.receive_data(data[i : i + chunk])
            while (event := hs.next_event()) is not NEED_DATA:
                assert isinstance(event, OptionRequest | Ready | Aborted)
                if not isinstance(event, OptionRequest):
                    return
                hs.data_to_send()
        hs.eof()
        assert isinstance(hs.next_event(), Closed)
    except NbdProtocolError:
        with pytest.raises(NbdProtocolError):
            hs.next_event()
