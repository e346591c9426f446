"""Client-side bytes for NBD tests, written out from the protocol document field by field.

Deliberately independent of ``lhtrio.frontend.nbd.constants``: every magic and number here is
typed in again from the spec, so a wrong constant in the implementation cannot hide.
"""

from __future__ import annotations

from lhtrio.frontend.nbd.proto import (
    NEED_DATA,
    Event,
    ExportInfo,
    Handshake,
    Item,
    NbdProtocolError,
    OptionRequest,
    Transmission,
    TransmissionDecoder,
    transmission_flags,
)

IHAVEOPT = b"IHAVEOPT"
GREETING = b"NBDMAGIC" + b"IHAVEOPT" + b"\x00\x03"  # FIXED_NEWSTYLE | NO_ZEROES
REPLY_MAGIC = bytes.fromhex("0003e889045565a9")
REQUEST_MAGIC = bytes.fromhex("25609513")
SIMPLE_MAGIC = bytes.fromhex("67446698")
CHUNK_MAGIC = bytes.fromhex("668e33ef")

# option numbers and reply types
EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO, STRUCTURED_REPLY = 1, 2, 3, 5, 6, 7, 8
LIST_META_CONTEXT, SET_META_CONTEXT = 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
ERR_UNSUP, ERR_POLICY, ERR_INVALID = 2**31 + 1, 2**31 + 2, 2**31 + 3
ERR_UNKNOWN, ERR_TOO_BIG = 2**31 + 6, 2**31 + 9
# commands, flags, errors
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS = range(8)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
EPERM, EIO, EINVAL, ENOSPC = 1, 5, 22, 28

MiB = 1 << 20
SIZE = 8 * MiB
EXPORT = ExportInfo(name="vol", size=SIZE, description="test volume")
OTHER = ExportInfo(name="other", size=4096)


def be(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def option(number: int, data: bytes = b"") -> bytes:
    return IHAVEOPT + be(number, 4) + be(len(data), 4) + data


def option_reply(number: int, reply: int, data: bytes = b"") -> bytes:
    return REPLY_MAGIC + be(number, 4) + be(reply, 4) + be(len(data), 4) + data


def go_data(name: str, *infos: int) -> bytes:
    raw = name.encode()
    return be(len(raw), 4) + raw + be(len(infos), 2) + b"".join(be(i, 2) for i in infos)


def meta_data(name: str, *queries: str) -> bytes:
    raw = name.encode()
    out = be(len(raw), 4) + raw + be(len(queries), 4)
    for query in queries:
        out += be(len(query.encode()), 4) + query.encode()
    return out


def request(command: int, handle: int, offset: int, length: int, flags: int = 0) -> bytes:
    return (
        REQUEST_MAGIC
        + be(flags, 2)
        + be(command, 2)
        + be(handle, 8)
        + be(offset, 8)
        + be(length, 4)
    )


def write(handle: int, offset: int, data: bytes, flags: int = 0) -> bytes:
    return request(WRITE, handle, offset, len(data), flags) + data


def parse_option_replies(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split a server's option replies into ``(option, reply type, data)``."""
    out = []
    while data:
        assert data[:8] == REPLY_MAGIC, data[:8]
        number, reply, length = (int.from_bytes(data[i : i + 4], "big") for i in (8, 12, 16))
        out.append((number, reply, data[20 : 20 + length]))
        data = data[20 + length :]
    return out


def lookup(name: str) -> ExportInfo | None:
    return {"": EXPORT, "vol": EXPORT, "other": OTHER}.get(name)


def handshake(client_flags: int = 3, **kwargs: object) -> Handshake:
    """A handshake whose greeting was taken and which got ``client_flags``."""
    hs = Handshake(lookup, **kwargs)  # type: ignore[arg-type]
    assert hs.data_to_send() == GREETING
    hs.receive_data(be(client_flags, 4))
    return hs


def events(hs: Handshake, data: bytes = b"") -> list[Event]:
    """Feed ``data`` and collect events until NEED_DATA or a final event."""
    hs.receive_data(data)
    out: list[Event] = []
    while (event := hs.next_event()) is not NEED_DATA:
        out.append(event)
        if not isinstance(event, OptionRequest):
            break
    return out


def transmission(
    export: ExportInfo = EXPORT, *, structured: bool = True, meta: bool = True
) -> Transmission:
    return Transmission(
        export=export,
        flags=transmission_flags(export, structured_replies=structured),
        structured_replies=structured,
        meta_context=1 if meta and structured else None,
        no_zeroes=True,
    )


def decode(
    data: bytes,
    *,
    chunks: list[int] | None = None,
    drain: bool = True,
    decoder: TransmissionDecoder | None = None,
) -> tuple[list[Item], NbdProtocolError | None]:
    """Items from ``data`` fed in pieces of the sizes in ``chunks`` (cycled), and any error."""
    dec = decoder or TransmissionDecoder(transmission(), buffer_size=64, direct_min=16)
    sizes = chunks or [len(data) or 1]
    out: list[Item] = []
    pos, i = 0, 0
    try:
        while pos < len(data):
            piece = data[pos : pos + sizes[i % len(sizes)]]
            pos += len(piece)
            i += 1
            dec.receive_data(piece)
            if drain:
                out += dec.drain()
            else:
                while (item := dec.next_request()) is not NEED_DATA:
                    out.append(item)
        dec.eof()
    except NbdProtocolError as exc:
        return out, exc
    return out, None
