"""The NBD handshake (fixed newstyle), server side, without I/O.

Usage, h11-style: the server sends :meth:`Handshake.data_to_send` (the greeting is queued at
construction), then loops ``next_event()``: on :data:`NEED_DATA` it receives more bytes and
feeds them with :meth:`~Handshake.receive_data` (or calls :meth:`~Handshake.eof`); after any
other event it sends ``data_to_send()``. The loop ends with :class:`Ready` (enter transmission
with ``event.transmission`` and hand :attr:`Handshake.trailing_data` to the request decoder),
:class:`Aborted` or :class:`Closed` (close the connection), or :class:`NbdProtocolError`
(close the connection; ``data_to_send()`` may still hold a last error reply, worth one
best-effort send).

Design decisions:

* **The handshake answers every option itself.** Everything an answer depends on comes from
  two callables given at construction (``lookup(name)`` and ``list_exports()``), so the server
  loop stays five lines and the whole negotiation is testable byte-for-byte without sockets.
  Events only report what happened (for logs and for the decision to enter transmission).
* **Block size constraints are always sent** with ``NBD_OPT_INFO``/``NBD_OPT_GO``, requested or
  not: min 1, preferred 4096, max 32 MiB. The maximum is stricter than the spec's default
  (unlimited), and the spec says such a server SHOULD advertise it.
* **Transmission flags advertise only what the export says it supports** (:class:`ExportInfo`);
  ``NBD_FLAG_SEND_DF`` only once structured replies are on (a single data chunk per read is the
  only thing :mod:`.replies` ever sends, so "don't fragment" always holds);
  ``NBD_FLAG_CAN_MULTI_CONN`` only if the export asks for it.
* **STARTTLS is answered ``NBD_REP_ERR_UNSUP``** (the spec's NOTLS mode: the option is not
  supported at all). Unknown options get ``NBD_REP_ERR_UNSUP``; unknown exports
  ``NBD_REP_ERR_UNKNOWN``; malformed option data ``NBD_REP_ERR_INVALID``.
* **Only ``base:allocation``** is a metadata context. ``NBD_OPT_SET_META_CONTEXT`` needs
  structured replies first and replaces the previous selection even when it fails; the
  selection counts only if the export finally chosen is the one it named (compared by the
  export's canonical name, so "" and "vol" for the same export agree).
* **Caps.** Option data above ``max_option_data`` (64 KiB by default: the longest legitimate
  option is a few KiB of strings) is answered ``NBD_REP_ERR_TOO_BIG`` and the connection is
  closed, before a byte of it is buffered. Strings are at most 4096 bytes. An unknown export
  after ``NBD_OPT_EXPORT_NAME`` cannot be refused within the protocol: the spec says to close.
* Fixed newstyle is honoured even if the client does not set ``NBD_FLAG_C_FIXED_NEWSTYLE`` (the
  spec allows it); unknown client flags close the connection (the spec requires it).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from lhtrio.frontend.nbd.constants import (
    BASE_ALLOCATION,
    GREETING,
    IHAVEOPT,
    MAX_BLOCK_SIZE,
    MAX_STRING,
    MIN_BLOCK_SIZE,
    NBDMAGIC,
    NEED_DATA,
    OPTION_HEADER,
    OPTION_REPLY_HEADER,
    OPTION_REPLY_MAGIC,
    PREFERRED_BLOCK_SIZE,
    ClientFlag,
    HandshakeFlag,
    Info,
    NeedData,
    Option,
    OptionReply,
)
from lhtrio.frontend.nbd.errors import NbdProtocolError
from lhtrio.frontend.nbd.exports import ExportInfo, Transmission, transmission_flags

__all__ = [
    "DEFAULT_MAX_OPTION_DATA",
    "META_CONTEXT_ID",
    "OptionRequest",
    "Ready",
    "Aborted",
    "Closed",
    "Event",
    "Handshake",
]

DEFAULT_MAX_OPTION_DATA: Final = 64 << 10
#: The id lhtrio gives ``base:allocation`` in answer to ``NBD_OPT_SET_META_CONTEXT``.
META_CONTEXT_ID: Final = 1

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_INFO_EXPORT = struct.Struct(">HQH")
_INFO_BLOCK_SIZE = struct.Struct(">HIII")
_EXPORT_NAME_REPLY = struct.Struct(">QH")
_ZEROES: Final = bytes(124)
_KNOWN_CLIENT_FLAGS: Final = int(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES)


@attrs.frozen
class OptionRequest:
    """The client sent ``option``; the handshake answered it with the final reply ``reply``."""

    option: int
    reply: int
    export: str | None = None
    message: str = ""


@attrs.frozen
class Ready:
    """The client entered transmission (``NBD_OPT_GO`` acknowledged, or ``EXPORT_NAME``)."""

    transmission: Transmission


@attrs.frozen
class Aborted:
    """The client sent ``NBD_OPT_ABORT`` (acknowledged): close the connection."""


@attrs.frozen
class Closed:
    """The client closed the connection between two messages, before transmission."""


Event = OptionRequest | Ready | Aborted | Closed


class _State(enum.Enum):
    CLIENT_FLAGS = 0
    OPTIONS = 1
    FINISHED = 2


def _decode(raw: bytes) -> str | None:
    if len(raw) > MAX_STRING:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _message(text: str) -> bytes:
    return text.encode("utf-8")[:MAX_STRING].decode("utf-8", "ignore").encode("utf-8")


def _parse_name(data: bytes, after: int, what: str) -> tuple[str, int] | str:
    """The length-prefixed export name that starts option data, followed by at least ``after``
    more bytes (``what``); ``(name, offset past it)`` or what is wrong."""
    if len(data) < 4 + after:
        return f"option data of {len(data)} bytes is too short for a name and {what}"
    (name_len,) = _U32.unpack_from(data, 0)
    if name_len > len(data) - 4 - after:
        return f"export name length {name_len} overruns the option data ({len(data)} bytes)"
    name = _decode(data[4 : 4 + name_len])
    if name is None:
        return f"export name is not UTF-8 text of at most {MAX_STRING} bytes"
    return name, 4 + name_len


def _parse_info(data: bytes) -> tuple[str, set[int]] | str:
    """``(name, requested info types)`` of INFO/GO option data, or what is wrong with it."""
    parsed = _parse_name(data, 2, "a request list")
    if isinstance(parsed, str):
        return parsed
    name, pos = parsed
    (count,) = _U16.unpack_from(data, pos)
    pos += 2
    if len(data) != pos + 2 * count:
        return f"{count} information requests do not match the {len(data) - pos} bytes left"
    return name, set(struct.unpack_from(f">{count}H", data, pos))


def _parse_meta(data: bytes) -> tuple[str, list[str]] | str:
    """``(export name, queries)`` of LIST/SET_META_CONTEXT option data, or what is wrong."""
    parsed = _parse_name(data, 4, "a query count")
    if isinstance(parsed, str):
        return parsed
    name, pos = parsed
    (count,) = _U32.unpack_from(data, pos)
    pos += 4
    queries: list[str] = []
    for _ in range(count):
        if len(data) - pos < 4:
            return f"{count} queries announced, only {len(queries)} present"
        (query_len,) = _U32.unpack_from(data, pos)
        pos += 4
        if query_len > len(data) - pos:
            return f"query length {query_len} overruns the option data"
        query = _decode(data[pos : pos + query_len])
        if query is None:
            return f"query is not UTF-8 text of at most {MAX_STRING} bytes"
        queries.append(query)
        pos += query_len
    if pos != len(data):
        return f"{len(data) - pos} bytes of unexpected data after the queries"
    return name, queries


def _select_contexts(queries: list[str], *, listing: bool) -> list[str]:
    """The contexts ``queries`` select (``base:`` is a wildcard only when listing)."""
    if not queries:
        return [BASE_ALLOCATION] if listing else []
    wanted = {BASE_ALLOCATION, "base:"} if listing else {BASE_ALLOCATION}
    return [BASE_ALLOCATION] if any(q in wanted for q in queries) else []


class Handshake:
    """The server side of one NBD handshake (see the module docstring for the loop).

    ``lookup(name)`` maps an export name (``""`` is the default export) to its
    :class:`ExportInfo`, or None if there is no such export. ``list_exports()`` enumerates the
    exports for ``NBD_OPT_LIST``; without it, listing is refused with ``NBD_REP_ERR_POLICY``.
    """

    def __init__(
        self,
        lookup: Callable[[str], ExportInfo | None],
        *,
        list_exports: Callable[[], Iterable[ExportInfo]] | None = None,
        max_option_data: int = DEFAULT_MAX_OPTION_DATA,
    ) -> None:
        self._lookup = lookup
        self._list_exports = list_exports
        self.max_option_data = max_option_data
        self._state = _State.CLIENT_FLAGS
        self._in = bytearray()
        self._out = bytearray(
            GREETING.pack(
                NBDMAGIC, IHAVEOPT, HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES
            )
        )
        self._eof = False
        self._final: Event | None = None
        self._error: NbdProtocolError | None = None
        self.client_flags = 0
        self.structured_replies = False
        self._meta_export: str | None = None  # canonical export name the selection is for

    # feeding and sending

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the client."""
        if self._eof:
            raise RuntimeError("receive_data() after eof()")
        self._in += data

    def eof(self) -> None:
        """The client closed its side of the connection."""
        self._eof = True

    def data_to_send(self) -> bytes:
        """Everything queued for the client since the last call (greeting, replies)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the message that ended the handshake (for the decoder)."""
        return bytes(self._in) if self._state is _State.FINISHED else b""

    # events

    def next_event(self) -> Event | NeedData:
        """Process the next complete client message: an event, or :data:`NEED_DATA`.

        After :class:`Ready`, :class:`Aborted` or :class:`Closed` the same event is returned
        again. Raises :class:`NbdProtocolError` on a broken stream, and from then on.
        """
        if self._error is not None:
            raise self._error
        if self._final is not None:
            return self._final
        try:
            event = self._next()
        except NbdProtocolError as exc:
            self._error = exc
            raise
        if isinstance(event, Ready | Aborted | Closed):
            self._state = _State.FINISHED
            self._final = event
        return event

    def _need_data(self, what: str) -> NeedData | Closed:
        if not self._eof:
            return NEED_DATA
        if self._in:
            raise NbdProtocolError(
                f"NBD client closed the connection in the middle of {what} "
                f"({len(self._in)} bytes pending)"
            )
        return Closed()

    def _next(self) -> Event | NeedData:
        buf = self._in
        if self._state is _State.CLIENT_FLAGS:
            if len(buf) < 4:
                return self._need_data("its handshake flags")
            (flags,) = _U32.unpack_from(buf, 0)
            if flags & ~_KNOWN_CLIENT_FLAGS:
                raise NbdProtocolError(
                    f"NBD client flags 0x{flags:08x} set bits this server does not know; "
                    "the protocol requires closing the connection"
                )
            del buf[:4]
            self.client_flags = flags
            self._state = _State.OPTIONS
        if len(buf) < OPTION_HEADER.size:
            return self._need_data("an option header")
        magic, option, length = OPTION_HEADER.unpack_from(buf, 0)
        if magic != IHAVEOPT:
            raise NbdProtocolError(
                f"NBD option magic 0x{magic:016x} is not IHAVEOPT: not an NBD client, or a "
                "broken stream"
            )
        if length > self.max_option_data:
            if option != Option.EXPORT_NAME:
                self._reply(
                    option,
                    OptionReply.ERR_TOO_BIG,
                    _message(f"option data of {length} bytes exceeds {self.max_option_data}"),
                )
            raise NbdProtocolError(
                f"NBD option {option} carries {length} bytes of data "
                f"(cap {self.max_option_data}); closing the connection"
            )
        end = OPTION_HEADER.size + length
        if len(buf) < end:
            return self._need_data("an option")
        data = bytes(buf[OPTION_HEADER.size : end])
        del buf[:end]
        return self._answer(option, data)

    # answering options

    def _reply(self, option: int, reply: int, data: bytes = b"") -> None:
        self._out += OPTION_REPLY_HEADER.pack(OPTION_REPLY_MAGIC, option, reply, len(data))
        self._out += data

    def _refuse(
        self, option: int, reply: OptionReply, message: str, export: str | None = None
    ) -> OptionRequest:
        self._reply(option, reply, _message(message))
        return OptionRequest(option, reply, export, message)

    def _ack(self, option: int, export: str | None = None) -> OptionRequest:
        self._reply(option, OptionReply.ACK)
        return OptionRequest(option, OptionReply.ACK, export)

    def _answer(self, option: int, data: bytes) -> Event:
        if option == Option.EXPORT_NAME:
            return self._export_name(data)
        if option == Option.ABORT:  # data, if any, is ignored (the spec says so)
            self._reply(option, OptionReply.ACK)
            return Aborted()
        if option in (Option.INFO, Option.GO):
            return self._info_go(option, data)
        if option == Option.STRUCTURED_REPLY:
            if data:
                return self._refuse(option, OptionReply.ERR_INVALID, "option takes no data")
            self.structured_replies = True
            return self._ack(option)
        if option in (Option.LIST_META_CONTEXT, Option.SET_META_CONTEXT):
            return self._meta_context(option, data)
        if option == Option.LIST:
            return self._list(data)
        if option == Option.STARTTLS:
            return self._refuse(option, OptionReply.ERR_UNSUP, "this server does not offer TLS")
        return self._refuse(option, OptionReply.ERR_UNSUP, f"option {option} is not supported")

    def _export_name(self, data: bytes) -> Ready:
        name = _decode(data)
        if name is None:
            raise NbdProtocolError(
                "NBD_OPT_EXPORT_NAME with a name that is not UTF-8 text of at most "
                f"{MAX_STRING} bytes; this option cannot be refused, closing the connection"
            )
        export = self._lookup(name)
        if export is None:
            raise NbdProtocolError(
                f"NBD client asked for unknown export {name!r} with NBD_OPT_EXPORT_NAME, which "
                "cannot be refused: closing the connection (clients using NBD_OPT_GO get "
                "NBD_REP_ERR_UNKNOWN instead)"
            )
        transmission = self._transmission(export)
        self._out += _EXPORT_NAME_REPLY.pack(export.size, transmission.flags)
        if not transmission.no_zeroes:
            self._out += _ZEROES
        return Ready(transmission)

    def _info_go(self, option: int, data: bytes) -> Event:
        parsed = _parse_info(data)
        if isinstance(parsed, str):
            return self._refuse(option, OptionReply.ERR_INVALID, parsed)
        name, requests = parsed
        export = self._lookup(name)
        if export is None:
            return self._refuse(
                option, OptionReply.ERR_UNKNOWN, f"there is no export named {name!r}", name
            )
        flags = transmission_flags(export, structured_replies=self.structured_replies)
        self._reply(option, OptionReply.INFO, _INFO_EXPORT.pack(Info.EXPORT, export.size, flags))
        if Info.NAME in requests:
            self._reply(option, OptionReply.INFO, _U16.pack(Info.NAME) + _message(export.name))
        if Info.DESCRIPTION in requests and export.description:
            description = _message(export.description)
            self._reply(option, OptionReply.INFO, _U16.pack(Info.DESCRIPTION) + description)
        self._reply(
            option,
            OptionReply.INFO,
            _INFO_BLOCK_SIZE.pack(
                Info.BLOCK_SIZE, MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, MAX_BLOCK_SIZE
            ),
        )
        self._reply(option, OptionReply.ACK)
        if option == Option.GO:
            return Ready(self._transmission(export))
        return OptionRequest(option, OptionReply.ACK, name)

    def _meta_context(self, option: int, data: bytes) -> OptionRequest:
        setting = option == Option.SET_META_CONTEXT
        if setting:
            self._meta_export = None  # replaced even if this request fails
            if not self.structured_replies:
                return self._refuse(
                    option,
                    OptionReply.ERR_INVALID,
                    "negotiate NBD_OPT_STRUCTURED_REPLY before selecting metadata contexts",
                )
        parsed = _parse_meta(data)
        if isinstance(parsed, str):
            return self._refuse(option, OptionReply.ERR_INVALID, parsed)
        name, queries = parsed
        export = self._lookup(name)
        if export is None:
            return self._refuse(
                option, OptionReply.ERR_UNKNOWN, f"there is no export named {name!r}", name
            )
        context_id = META_CONTEXT_ID if setting else 0  # ids in a listing are reserved: zero
        for context in _select_contexts(queries, listing=not setting):
            self._reply(option, OptionReply.META_CONTEXT, _U32.pack(context_id) + context.encode())
            if setting:
                self._meta_export = export.name
        return self._ack(option, name)

    def _list(self, data: bytes) -> OptionRequest:
        option = Option.LIST
        if data:
            return self._refuse(option, OptionReply.ERR_INVALID, "option takes no data")
        if self._list_exports is None:
            return self._refuse(option, OptionReply.ERR_POLICY, "this server does not list exports")
        for export in self._list_exports():
            name = _message(export.name)
            self._reply(
                option,
                OptionReply.SERVER,
                _U32.pack(len(name)) + name + _message(export.description),
            )
        return self._ack(option)

    def _transmission(self, export: ExportInfo) -> Transmission:
        structured = self.structured_replies
        meta = META_CONTEXT_ID if structured and self._meta_export == export.name else None
        return Transmission(
            export=export,
            flags=transmission_flags(export, structured_replies=structured),
            structured_replies=structured,
            meta_context=meta,
            no_zeroes=bool(self.client_flags & ClientFlag.NO_ZEROES),
        )
