"""The one NBD-specific error: the client broke the protocol and the connection must close."""

from __future__ import annotations

from lhtrio.errors import RemoteProtocolError

__all__ = ["NbdProtocolError"]


class NbdProtocolError(RemoteProtocolError):
    """An NBD client sent something the server cannot answer within the protocol.

    Raised by the sans-I/O handshake and request decoder for a broken stream (bad magic,
    unknown client flags, an option or a write too large to accept, an unknown export after
    ``NBD_OPT_EXPORT_NAME``, a connection cut in the middle of a message). The server
    disconnects; there is no way to resynchronise. Errors are sticky: the object that raised
    raises the same error again on every later call.
    """
