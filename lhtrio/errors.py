"""The one error tree of lhtrio.

Every error lhtrio raises on purpose derives from :class:`LhtrioError`. Each class carries the
:class:`ErrorCode` that represents it on the wire, so an error raised by a handler on one side of
a connection is re-raised as the same class on the other side (see :func:`error_from_code`).
The set of codes is closed: it is part of protocol version 1 (``protocol/README.md``), and a code
a peer does not know is treated as ``INTERNAL``.

Messages say what happened, to what, and what to do about it; they are written at the raise site.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "ErrorCode",
    "LhtrioError",
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "FrameTooLargeError",
    "HandshakeError",
    "VersionMismatchError",
    "IdentityMismatchError",
    "RpcError",
    "ConnectionLostError",
    "UnknownMessageError",
    "UnknownCallError",
    "InvalidArgumentError",
    "OutOfRangeError",
    "NotFoundError",
    "AlreadyExistsError",
    "ConflictError",
    "StaleVersionError",
    "FailedPreconditionError",
    "GoneError",
    "StorageError",
    "NoSpaceError",
    "CorruptMetadataError",
    "ShuttingDownError",
    "NotSupportedError",
    "UnavailableError",
    "InternalError",
    "error_from_code",
]


class ErrorCode(enum.IntEnum):
    """Wire codes of error replies (protocol v1, closed set)."""

    INTERNAL = 1
    MALFORMED = 2
    FRAME_TOO_LARGE = 3
    VERSION_MISMATCH = 4
    IDENTITY_MISMATCH = 5
    UNKNOWN_MESSAGE = 6
    UNKNOWN_CALL = 7
    INVALID_ARGUMENT = 8
    OUT_OF_RANGE = 9
    NOT_FOUND = 10
    ALREADY_EXISTS = 11
    CONFLICT = 12
    IO_ERROR = 13
    NO_SPACE = 14
    CORRUPT = 15
    SHUTTING_DOWN = 16
    NOT_SUPPORTED = 17


class LhtrioError(Exception):
    """Root of every error lhtrio raises on purpose.

    ``remote`` is true when the error was reported by a peer over the wire rather than raised
    in this process.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, remote: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.remote = remote


class InternalError(LhtrioError):
    """A bug or an unexpected failure on the peer; the message has the details."""


class ProtocolError(LhtrioError):
    """A peer broke the wire protocol (bad framing, bad message, wrong order)."""

    code = ErrorCode.MALFORMED


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the protocol; the connection cannot continue.

    Named as h11 names it: *remote* is the peer's fault, *local* our own misuse.
    """


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow (our own misuse)."""


class FrameTooLargeError(RemoteProtocolError):
    """A frame header announced more bytes than the negotiated cap."""

    code = ErrorCode.FRAME_TOO_LARGE


class HandshakeError(LhtrioError):
    """The hello exchange failed; the peers must not talk to each other."""


class VersionMismatchError(HandshakeError):
    code = ErrorCode.VERSION_MISMATCH


class IdentityMismatchError(HandshakeError):
    """The peer serves another volume or instance than the one we asked for."""

    code = ErrorCode.IDENTITY_MISMATCH


class RpcError(LhtrioError):
    """A call could not be completed at the RPC level."""


class ConnectionLostError(RpcError):
    """The connection closed or broke; every call pending on it fails with this."""

    code = ErrorCode.SHUTTING_DOWN


class UnknownMessageError(RpcError):
    code = ErrorCode.UNKNOWN_MESSAGE


class UnknownCallError(RpcError):
    code = ErrorCode.UNKNOWN_CALL


class InvalidArgumentError(LhtrioError):
    code = ErrorCode.INVALID_ARGUMENT


class OutOfRangeError(InvalidArgumentError):
    code = ErrorCode.OUT_OF_RANGE


class NotFoundError(LhtrioError):
    code = ErrorCode.NOT_FOUND


class AlreadyExistsError(LhtrioError):
    code = ErrorCode.ALREADY_EXISTS


class ConflictError(LhtrioError):
    """The operation conflicts with one in progress (a rebuild, a purge, a revert), or with a
    change made since the caller read the object (a stale ``resourceVersion``: read it again)."""

    code = ErrorCode.CONFLICT


class StaleVersionError(ConflictError):
    """A change made on condition that the object is still at a version it no longer is (an
    ``If-Match`` that does not match): nothing was changed. ``current`` is the object's
    ``resourceVersion`` now (empty while it is not stored): read it again, then decide."""

    def __init__(self, message: str, *, current: str, remote: bool = False) -> None:
        super().__init__(message, remote=remote)
        self.current = current


class FailedPreconditionError(LhtrioError):
    """The request is well-formed and its object exists, but the object itself rules it out as it
    is (shrinking a volume, salvaging one whose replicas work, removing a disk that holds
    replicas): nothing was changed, and asking again changes nothing until the object is changed
    first. Unlike a :class:`ConflictError`, waiting does not help."""

    code = ErrorCode.CONFLICT


class GoneError(ConflictError):
    """A watch asked to resume from a revision the store no longer keeps: list again, then watch
    from the list's revision (Kubernetes' 410 Gone)."""


class StorageError(LhtrioError):
    """An I/O error from the disk underneath."""

    code = ErrorCode.IO_ERROR


class NoSpaceError(StorageError):
    code = ErrorCode.NO_SPACE


class CorruptMetadataError(StorageError):
    """On-disk metadata is unreadable or inconsistent; nothing was changed."""

    code = ErrorCode.CORRUPT


class ShuttingDownError(LhtrioError):
    code = ErrorCode.SHUTTING_DOWN


class UnavailableError(LhtrioError):
    """Something the request needs cannot be had now (a volume that did not attach in time, an
    engine that does not answer); nothing was changed by the refusal. Try again later."""

    code = ErrorCode.SHUTTING_DOWN


class NotSupportedError(LhtrioError):
    """The request cannot be done the way it asked, and nothing was changed (a fast ``Zero``
    over data that only writing zeros can hide); the caller may ask again without the
    constraint. A refusal, never a failure of the server that answers it."""

    code = ErrorCode.NOT_SUPPORTED


# The class each code is re-raised as on the receiving side.
_BY_CODE: dict[ErrorCode, type[LhtrioError]] = {
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.MALFORMED: LocalProtocolError,
    ErrorCode.FRAME_TOO_LARGE: LocalProtocolError,
    ErrorCode.VERSION_MISMATCH: VersionMismatchError,
    ErrorCode.IDENTITY_MISMATCH: IdentityMismatchError,
    ErrorCode.UNKNOWN_MESSAGE: UnknownMessageError,
    ErrorCode.UNKNOWN_CALL: UnknownCallError,
    ErrorCode.INVALID_ARGUMENT: InvalidArgumentError,
    ErrorCode.OUT_OF_RANGE: OutOfRangeError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.ALREADY_EXISTS: AlreadyExistsError,
    ErrorCode.CONFLICT: ConflictError,
    ErrorCode.IO_ERROR: StorageError,
    ErrorCode.NO_SPACE: NoSpaceError,
    ErrorCode.CORRUPT: CorruptMetadataError,
    ErrorCode.SHUTTING_DOWN: ShuttingDownError,
    ErrorCode.NOT_SUPPORTED: NotSupportedError,
}


def error_from_code(code: int, message: str) -> LhtrioError:
    """The exception a peer's error reply stands for (unknown codes become ``InternalError``)."""
    try:
        cls = _BY_CODE[ErrorCode(code)]
    except ValueError:
        cls = InternalError
        message = f"(unknown error code {code}) {message}"
    return cls(message, remote=True)
