"""Listening sockets for lhtrio's servers: TCP (``tcp://HOST:PORT``) or Unix (``unix:PATH``).

Unix sockets serve clients on the same host: the NBD frontend for local consumers, and replicas
whose engine runs on the same node (Longhorn's *strict-local* data path), which skips the whole
TCP stack on every frame.
"""

from __future__ import annotations

import contextlib
import os
import socket

import trio

from lhtrio.net.address import Address

__all__ = ["open_listeners", "remove_unix_socket"]


async def open_listeners(address: Address) -> tuple[list[trio.SocketListener], Address]:
    """Listen on ``address``; returns the listeners and the bound address (the real port)."""
    if address.is_unix:
        remove_unix_socket(address)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(address.socket_path)
        sock.listen(128)
        return [trio.SocketListener(sock)], address
    listeners = list(await trio.open_tcp_listeners(address.port, host=address.host or None))
    host, port = listeners[0].socket.getsockname()[:2]
    return listeners, Address(host=host, port=port)


def remove_unix_socket(address: Address) -> None:
    """Remove a Unix socket file left by a previous run (nothing for TCP addresses)."""
    if address.is_unix and not address.is_abstract:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address.path)
