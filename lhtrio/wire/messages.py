"""The messages of protocol version 1 (``protocol/README.md`` is the normative spec).

Messages are frozen attrs values with no I/O and no knowledge of framing or sequence numbers: the
codec pairs each one with a ``seq`` on the wire. Every class has a stable, explicit ``TAG``:
requests use 1-63, replies 64-127. Tags are never reused; new messages get new tags and are
announced through a hello feature, so version 1 can grow without breaking older peers (an unknown
tag is answered with an ``UNKNOWN_MESSAGE`` error reply, and the connection continues).

Classes whose ``PAYLOAD`` is true carry bulk bytes in their field ``data``. That field travels
after the msgpack head as raw bytes, never inside msgpack (see :mod:`lhtrio.wire.codec`); the other
fields travel in the head in the order the class declares them.

Fields may be given by keyword or by position (the codec builds data messages positionally:
a frozen attrs ``__init__`` called with keywords costs three times as much, measured).
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Final

import attrs

__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Buffer",
    "Message",
    "Request",
    "Reply",
    "Hello",
    "Ping",
    "Read",
    "Write",
    "Unmap",
    "Flush",
    "Call",
    "Zero",
    "ZeroMode",
    "ZERO",
    "HelloOk",
    "Pong",
    "Data",
    "Done",
    "Result",
    "Error",
    "Goodbye",
    "MESSAGE_TYPES",
]

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = (1,)

#: What a payload may be: the decoder hands out ``bytes`` or ``bytearray`` it owns; senders may
#: pass a ``memoryview`` (for example a slice of an NBD receive buffer) to avoid a copy.
Buffer = bytes | bytearray | memoryview


class Message:
    """Base of every protocol message."""

    __slots__ = ()
    TAG: ClassVar[int]
    PAYLOAD: ClassVar[bool] = False


class Request(Message):
    __slots__ = ()


class Reply(Message):
    __slots__ = ()


# --- requests ------------------------------------------------------------------------------------


@attrs.frozen
class Hello(Request):
    """First message of every connection (client to server).

    ``volume`` and ``instance`` name the server the client expects to reach; an empty
    ``instance`` accepts any instance of the volume. ``client`` names the caller for logs.
    """

    TAG: ClassVar[int] = 1
    volume: str
    instance: str = ""
    client: str = ""
    versions: tuple[int, ...] = SUPPORTED_VERSIONS
    features: tuple[str, ...] = ()


@attrs.frozen
class Ping(Request):
    TAG: ClassVar[int] = 2


@attrs.frozen
class Read(Request):
    TAG: ClassVar[int] = 3
    offset: int
    length: int


@attrs.frozen
class Write(Request):
    """Write ``data`` at ``offset``; ``fua`` asks for it to be durable before the reply."""

    TAG: ClassVar[int] = 4
    PAYLOAD: ClassVar[bool] = True
    offset: int
    data: Buffer = attrs.field(eq=bytes, hash=False, repr=False)
    fua: bool = False

    @property
    def length(self) -> int:
        return len(self.data)


@attrs.frozen
class Unmap(Request):
    TAG: ClassVar[int] = 5
    offset: int
    length: int


@attrs.frozen
class Flush(Request):
    TAG: ClassVar[int] = 6


@attrs.frozen
class Call(Request):
    """A named control operation with msgpack arguments (replica and engine control)."""

    TAG: ClassVar[int] = 7
    name: str
    args: dict[str, Any] = attrs.field(factory=dict)


#: The hello feature that announces :class:`Zero` (a peer that did not announce it is sent
#: writes of zeros instead).
ZERO: Final = "zero"


class ZeroMode(enum.IntEnum):
    """How a :class:`Zero` makes its range read as zeros (``protocol/README.md`` §4)."""

    #: Punch the head where no older layer holds data (it then reads as zeros), write zeros
    #: where one does. The default.
    PUNCH = 0
    #: Punch only: refuse with ``NOT_SUPPORTED``, changing nothing, if an older layer holds data.
    FAST = 1
    #: Write zeros, never punch: the range stays allocated (NBD's ``NO_HOLE``).
    ALLOCATE = 2


@attrs.frozen
class Zero(Request):
    """Make ``length`` bytes at ``offset`` read as zeros, without sending them (feature
    ``zero``). ``mode`` is a :class:`ZeroMode` value; the receiver refuses one it does not know
    with ``INVALID_ARGUMENT``."""

    TAG: ClassVar[int] = 8
    offset: int
    length: int
    mode: int = 0


# --- replies -------------------------------------------------------------------------------------


@attrs.frozen
class HelloOk(Reply):
    """The server's answer to :class:`Hello`. ``local``: where a client on the same host can
    reach the same server without TCP (``unix:@NAME``, a Unix socket in the abstract namespace);
    only told to a client that announced the ``local`` feature. ``role``: what the server is
    (``replica``, ``engine``, ``node``), so that a client never takes one for another."""

    TAG: ClassVar[int] = 65
    version: int
    volume: str
    instance: str
    features: tuple[str, ...] = ()
    local: str = ""
    role: str = ""


@attrs.frozen
class Pong(Reply):
    TAG: ClassVar[int] = 66


@attrs.frozen
class Data(Reply):
    """Reply to :class:`Read`: exactly the requested number of bytes."""

    TAG: ClassVar[int] = 67
    PAYLOAD: ClassVar[bool] = True
    data: Buffer = attrs.field(eq=bytes, hash=False, repr=False)


@attrs.frozen
class Done(Reply):
    """Success of a write, unmap or flush; ``count``: bytes affected, where that means something."""

    TAG: ClassVar[int] = 68
    count: int = 0


@attrs.frozen
class Result(Reply):
    """Reply to :class:`Call`."""

    TAG: ClassVar[int] = 69
    value: Any = None


@attrs.frozen
class Error(Reply):
    """Failure of the request with the same seq (seq 0: the connection as a whole)."""

    TAG: ClassVar[int] = 70
    code: int
    message: str


@attrs.frozen
class Goodbye(Reply):
    """Unsolicited (seq 0): the sender is closing the connection on purpose."""

    TAG: ClassVar[int] = 71
    reason: str = ""


MESSAGE_TYPES: Final[dict[int, type[Message]]] = {
    cls.TAG: cls
    for cls in (
        Hello,
        Ping,
        Read,
        Write,
        Unmap,
        Flush,
        Call,
        Zero,
        HelloOk,
        Pong,
        Data,
        Done,
        Result,
        Error,
        Goodbye,
    )
}
