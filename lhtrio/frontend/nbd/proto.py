"""The NBD protocol (fixed newstyle), server side, sans-I/O: no trio, no sockets.

This module is the public surface; the parts live beside it:

* :mod:`.constants`: the protocol's numbers and fixed message layouts.
* :mod:`.exports`: :class:`ExportInfo` (what a client is told about an export, and which
  commands it accepts) and :class:`Transmission` (what a finished handshake agreed on).
* :mod:`.handshake`: :class:`Handshake`, an h11-style state machine that answers every option
  by itself (``receive_data``/``eof`` -> ``next_event`` -> ``data_to_send``).
* :mod:`.requests` and :mod:`.transmission`: the request items and
  :class:`TransmissionDecoder`, which parses and validates whole batches of requests from a
  buffer the server receives into (``receive_buffer``/``commit`` -> ``drain``).
* :mod:`.replies`: encoders of simple and structured replies for scatter-gather sends.

A server, in outline (the trio glue belongs to ``server.py``)::

    handshake = Handshake(lookup, list_exports=...)
    send(handshake.data_to_send())                  # the greeting
    while True:
        event = handshake.next_event()
        if event is NEED_DATA:
            data = receive()
            handshake.receive_data(data) if data else handshake.eof()
            continue
        send(handshake.data_to_send())              # the answer to that option
        if not isinstance(event, OptionRequest):
            break                                   # Ready: go on; Aborted, Closed: close
    decoder = TransmissionDecoder(event.transmission)
    decoder.receive_data(handshake.trailing_data)
    while True:
        for item in decoder.drain(): ...   # execute, then reply with .replies
        n = recv_into(decoder.receive_buffer())
        decoder.commit(n) if n else decoder.eof()

Notes for the server: drain after every commit (that is what keeps the receive buffer from
growing); on :class:`Disconnect`, finish the requests in flight, then close without a reply;
libnbd closes right after ``NBD_OPT_ABORT`` without reading the ACK, so a failed send there is a
normal close; answer :class:`InvalidRequest` with :func:`error_reply` (it picks the structured
shape a refused READ needs). ``decoder.size`` may be raised after an expansion.

Every broken stream raises :class:`NbdProtocolError` (a
:class:`~lhtrio.errors.RemoteProtocolError`), sticky, and the server closes the connection.
Everything else a client can send is answered within the protocol. The fuzz invariant of the
tests: arbitrary bytes give events, request items or that error, nothing else, in bounded
memory.
"""

from __future__ import annotations

from lhtrio.frontend.nbd.constants import (
    BASE_ALLOCATION,
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    NEED_DATA,
    PREFERRED_BLOCK_SIZE,
    Command,
    CommandFlag,
    Errno,
    NeedData,
    StateFlag,
    TransmissionFlag,
)
from lhtrio.frontend.nbd.errors import NbdProtocolError
from lhtrio.frontend.nbd.exports import ExportInfo, Transmission, transmission_flags
from lhtrio.frontend.nbd.handshake import (
    META_CONTEXT_ID,
    Aborted,
    Closed,
    Event,
    Handshake,
    OptionRequest,
    Ready,
)
from lhtrio.frontend.nbd.replies import (
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
from lhtrio.frontend.nbd.requests import (
    BlockStatus,
    Buffer,
    Cache,
    Disconnect,
    Flush,
    InvalidRequest,
    Item,
    Read,
    Request,
    Trim,
    Write,
    WriteZeroes,
)
from lhtrio.frontend.nbd.transmission import TransmissionDecoder

__all__ = [
    # constants
    "BASE_ALLOCATION",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "PREFERRED_BLOCK_SIZE",
    "META_CONTEXT_ID",
    "NEED_DATA",
    "NeedData",
    "Command",
    "CommandFlag",
    "Errno",
    "StateFlag",
    "TransmissionFlag",
    "NbdProtocolError",
    # handshake
    "ExportInfo",
    "Transmission",
    "transmission_flags",
    "Handshake",
    "Event",
    "OptionRequest",
    "Ready",
    "Aborted",
    "Closed",
    # transmission
    "TransmissionDecoder",
    "Buffer",
    "Item",
    "Request",
    "Read",
    "Write",
    "Flush",
    "Trim",
    "Cache",
    "WriteZeroes",
    "BlockStatus",
    "Disconnect",
    "InvalidRequest",
    # replies
    "simple_reply",
    "error_reply",
    "sparse_read_reply",
    "zero_spans",
    "read_reply",
    "read_reply_header",
    "read_reply_header_size",
    "pack_simple_reply_into",
    "pack_read_reply_header_into",
    "none_chunk",
    "offset_data_header",
    "offset_hole_chunk",
    "error_chunk",
    "error_offset_chunk",
    "block_status_chunk",
]
