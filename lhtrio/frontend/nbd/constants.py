"""The numbers of the NBD protocol (fixed newstyle), as the NBD protocol document defines them.

Everything on the wire is big-endian. Magics are plain ``int`` constants; the sets a reader
wants to see by name in logs and tests (options, reply types, commands, errors) are
``enum.IntEnum`` so ``Option(7)`` prints as ``Option.GO``. The hot path compares plain ints
(an ``IntEnum`` member *is* an int, so both spellings work).

The ``struct.Struct`` layouts of every fixed-size message live here too, next to the numbers
they carry, so the handshake, the request decoder and the reply encoders share one definition.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

__all__ = [
    "NEED_DATA",
    "NeedData",
    "NBDMAGIC",
    "IHAVEOPT",
    "OPTION_REPLY_MAGIC",
    "REQUEST_MAGIC",
    "SIMPLE_REPLY_MAGIC",
    "STRUCTURED_REPLY_MAGIC",
    "MAX_STRING",
    "MIN_BLOCK_SIZE",
    "PREFERRED_BLOCK_SIZE",
    "MAX_BLOCK_SIZE",
    "BASE_ALLOCATION",
    "HandshakeFlag",
    "ClientFlag",
    "TransmissionFlag",
    "Option",
    "OptionReply",
    "Info",
    "Command",
    "CommandFlag",
    "ReplyFlag",
    "ChunkType",
    "Errno",
    "StateFlag",
    "GREETING",
    "OPTION_HEADER",
    "OPTION_REPLY_HEADER",
    "REQUEST",
    "SIMPLE_REPLY",
    "CHUNK_HEADER",
]


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: What the sans-I/O readers return when the buffered bytes hold no complete message.
NEED_DATA: Final = NeedData.NEED_DATA

NBDMAGIC: Final = 0x4E42444D41474943  # b"NBDMAGIC"
IHAVEOPT: Final = 0x49484156454F5054  # b"IHAVEOPT"
OPTION_REPLY_MAGIC: Final = 0x0003E889045565A9
REQUEST_MAGIC: Final = 0x25609513
SIMPLE_REPLY_MAGIC: Final = 0x67446698
STRUCTURED_REPLY_MAGIC: Final = 0x668E33EF

#: Export names, queries and error messages are at most this many bytes (the spec's string rule).
MAX_STRING: Final = 4096

# The block size constraints lhtrio advertises with NBD_INFO_BLOCK_SIZE. The maximum is also the
# largest READ/WRITE/WRITE_ZEROES the decoder accepts (the spec's 2**25 portability bound).
MIN_BLOCK_SIZE: Final = 1
PREFERRED_BLOCK_SIZE: Final = 4096
MAX_BLOCK_SIZE: Final = 32 << 20

#: The only metadata context lhtrio serves.
BASE_ALLOCATION: Final = "base:allocation"


class HandshakeFlag(enum.IntFlag):
    """u16 sent by the server right after the two magics."""

    FIXED_NEWSTYLE = 1 << 0
    NO_ZEROES = 1 << 1


class ClientFlag(enum.IntFlag):
    """u32 the client answers the greeting with."""

    FIXED_NEWSTYLE = 1 << 0
    NO_ZEROES = 1 << 1


class TransmissionFlag(enum.IntFlag):
    """u16 describing the export, sent when the client enters transmission."""

    HAS_FLAGS = 1 << 0
    READ_ONLY = 1 << 1
    SEND_FLUSH = 1 << 2
    SEND_FUA = 1 << 3
    ROTATIONAL = 1 << 4
    SEND_TRIM = 1 << 5
    SEND_WRITE_ZEROES = 1 << 6
    SEND_DF = 1 << 7
    CAN_MULTI_CONN = 1 << 8
    SEND_RESIZE = 1 << 9
    SEND_CACHE = 1 << 10
    SEND_FAST_ZERO = 1 << 11


class Option(enum.IntEnum):
    EXPORT_NAME = 1
    ABORT = 2
    LIST = 3
    PEEK_EXPORT = 4
    STARTTLS = 5
    INFO = 6
    GO = 7
    STRUCTURED_REPLY = 8
    LIST_META_CONTEXT = 9
    SET_META_CONTEXT = 10
    EXTENDED_HEADERS = 11


_ERR: Final = 1 << 31


class OptionReply(enum.IntEnum):
    ACK = 1
    SERVER = 2
    INFO = 3
    META_CONTEXT = 4
    ERR_UNSUP = _ERR + 1
    ERR_POLICY = _ERR + 2
    ERR_INVALID = _ERR + 3
    ERR_PLATFORM = _ERR + 4
    ERR_TLS_REQD = _ERR + 5
    ERR_UNKNOWN = _ERR + 6
    ERR_SHUTDOWN = _ERR + 7
    ERR_BLOCK_SIZE_REQD = _ERR + 8
    ERR_TOO_BIG = _ERR + 9


class Info(enum.IntEnum):
    """Information types of NBD_REP_INFO (answers to NBD_OPT_INFO and NBD_OPT_GO)."""

    EXPORT = 0
    NAME = 1
    DESCRIPTION = 2
    BLOCK_SIZE = 3


class Command(enum.IntEnum):
    READ = 0
    WRITE = 1
    DISC = 2
    FLUSH = 3
    TRIM = 4
    CACHE = 5
    WRITE_ZEROES = 6
    BLOCK_STATUS = 7


class CommandFlag(enum.IntFlag):
    FUA = 1 << 0
    NO_HOLE = 1 << 1
    DF = 1 << 2
    REQ_ONE = 1 << 3
    FAST_ZERO = 1 << 4


class ReplyFlag(enum.IntFlag):
    DONE = 1 << 0


class ChunkType(enum.IntEnum):
    """Types of structured reply chunks (errors have bit 15 set)."""

    NONE = 0
    OFFSET_DATA = 1
    OFFSET_HOLE = 2
    BLOCK_STATUS = 5
    ERROR = (1 << 15) + 1
    ERROR_OFFSET = (1 << 15) + 2


class Errno(enum.IntEnum):
    """The error values an NBD reply may carry (a closed set, not the host's errno)."""

    EPERM = 1
    EIO = 5
    ENOMEM = 12
    EINVAL = 22
    ENOSPC = 28
    EOVERFLOW = 75
    ENOTSUP = 95
    ESHUTDOWN = 108


class StateFlag(enum.IntFlag):
    """Descriptor flags of the ``base:allocation`` metadata context."""

    HOLE = 1 << 0
    ZERO = 1 << 1


#: NBDMAGIC u64, IHAVEOPT u64, handshake flags u16.
GREETING: Final = struct.Struct(">QQH")
#: IHAVEOPT u64, option u32, data length u32 (then the data).
OPTION_HEADER: Final = struct.Struct(">QII")
#: reply magic u64, option u32, reply type u32, data length u32 (then the data).
OPTION_REPLY_HEADER: Final = struct.Struct(">QIII")
#: magic u32, command flags u16, type u16, handle u64, offset u64, length u32 (then WRITE data).
REQUEST: Final = struct.Struct(">IHHQQI")
#: magic u32, error u32, handle u64 (then READ data on success).
SIMPLE_REPLY: Final = struct.Struct(">IIQ")
#: magic u32, flags u16, type u16, handle u64, payload length u32 (then the payload).
CHUNK_HEADER: Final = struct.Struct(">IHHQI")
