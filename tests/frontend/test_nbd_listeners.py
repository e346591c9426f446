"""An NBD socket path or port in use is refused, and a stop removes only its own socket (issue
16 #14): ``open_listeners`` as ``serve_nbd`` (and every lhtrio server) uses it."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from lhtrio.errors import ConflictError, InvalidArgumentError
from lhtrio.frontend.nbd.server import serve_nbd
from lhtrio.net import Address, parse_address
from lhtrio.net.listeners import open_listeners, remove_unix_socket

from .nbd_client import MemoryDevice, RawClient


async def _served(address: Address) -> bool:
    """Whether an NBD server answers at ``address`` with its greeting."""
    try:
        async with await RawClient.connect(address) as client:
            await client.exactly(18)
    except (OSError, EOFError):
        return False
    return True


async def test_a_second_server_on_the_same_socket_path_is_refused_and_the_first_keeps_it(
    tmp_path: Path,
) -> None:
    address = parse_address(f"unix:{tmp_path}/nbd.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_nbd, address, MemoryDevice())
        inode = os.stat(address.path).st_ino
        with (
            pytest.raises(ConflictError, match=f"unix:{address.path} is in use by another"),
            trio.fail_after(5),  # (a server that took the path over would serve forever)
        ):
            await serve_nbd(address, MemoryDevice())
        # The refused server neither took the path over nor removed it on its way out.
        assert os.stat(address.path).st_ino == inode
        assert await _served(address)
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "nbd.sock").exists()  # the first removed its own socket on its way out


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "nbd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a server that died
    address = parse_address(f"unix:{path}")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_nbd, address, MemoryDevice())
        assert await _served(address)
        nursery.cancel_scope.cancel()


async def test_a_path_that_is_not_a_socket_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "nbd.sock"
    path.write_text("precious")
    with (
        pytest.raises(ConflictError, match=f"unix:{path}: it exists and is not a socket"),
        trio.fail_after(5),
    ):
        await serve_nbd(parse_address(f"unix:{path}"), MemoryDevice())
    assert path.read_text() == "precious"


async def test_a_stop_leaves_a_socket_that_another_server_took_over(tmp_path: Path) -> None:
    address = parse_address(f"unix:{tmp_path}/nbd.sock")
    listeners, _ = await open_listeners(address)
    for listener in listeners:
        await listener.aclose()
    os.unlink(address.path)  # (an operator removed it) and another server binds the path
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with other:
        other.bind(address.path)
        other.listen()
        remove_unix_socket(address)  # our stop
        assert stat.S_ISSOCK(os.stat(address.path).st_mode)  # the other server keeps its path
    os.unlink(address.path)


async def test_a_tcp_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(
                ConflictError, match=f"address 127.0.0.1:{port} is in use by another process"
            ),
            trio.fail_after(5),
        ):
            await serve_nbd(Address(host="127.0.0.1", port=port), MemoryDevice())


async def test_an_address_that_cannot_be_listened_on_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgumentError, match=r"cannot listen on address 192\.0\.2\.1:0"):
        await open_listeners(Address(host="192.0.2.1", port=0))  # (TEST-NET-1: not ours)
