"""Endpoint addresses as operators write them: ``tcp://HOST:PORT``, ``HOST:PORT``, ``unix:PATH``.

``unix:@NAME`` is a Unix socket in Linux's abstract namespace (no file; gone with its listener),
written as ``ss`` shows it.
"""

from __future__ import annotations

import attrs

from lhtrio.errors import InvalidArgumentError

__all__ = ["Address", "parse_address"]


@attrs.frozen
class Address:
    """A TCP endpoint (``host``, ``port``) or a Unix socket (``path``)."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_abstract(self) -> bool:
        """A Unix socket in the abstract namespace (``unix:@NAME``)."""
        return self.path.startswith("@")

    @property
    def socket_path(self) -> str:
        """The path to bind or connect to (a leading NUL byte for an abstract socket)."""
        return "\0" + self.path[1:] if self.is_abstract else self.path

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_address(text: str, *, default_host: str = "127.0.0.1") -> Address:
    """Parse ``tcp://HOST:PORT``, ``HOST:PORT``, ``:PORT``, ``[v6]:PORT`` or ``unix:PATH``."""
    if text.startswith("unix:"):
        path = text.removeprefix("unix:").removeprefix("//")
        if not path:
            raise InvalidArgumentError(f"address {text!r} has an empty socket path")
        return Address(path=path)
    rest = text.removeprefix("tcp://")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InvalidArgumentError(
            f"address {text!r} is not HOST:PORT, tcp://HOST:PORT or unix:PATH"
        )
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise InvalidArgumentError(f"address {text!r} has port {port} outside 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Address(host=host or default_host, port=port)
