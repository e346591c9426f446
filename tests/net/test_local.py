"""The same-host shortcut: a server offers a Unix socket in its hello; a local client uses it."""

from __future__ import annotations

import functools
import socket
from pathlib import Path

import pytest
import trio

from lhtrio.net import open_rpc_client, serve_rpc, serve_rpc_connection
from lhtrio.net.transport import SocketTransport
from lhtrio.wire import LOCAL, Hello, Identity, Pong, Reply, Request, answer_hello

ME = Identity(volume="v", instance="v-r1")


def _pong(request: Request) -> Reply:
    return Pong()


async def _server(nursery: trio.Nursery, *, local: bool, identity: Identity = ME) -> str:
    host, port = await nursery.start(
        functools.partial(serve_rpc, _pong, "127.0.0.1", 0, identity=identity, local=local)
    )
    return f"tcp://{host}:{port}"


async def _offering(nursery: trio.Nursery, identity: Identity) -> str:
    """A TCP server whose hello offers whatever ``identity.local`` says (a server's word)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    handler = functools.partial(serve_rpc_connection, handler=_pong, identity=identity)
    await nursery.start(trio.serve_listeners, handler, listeners)
    return f"tcp://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


def test_the_server_names_its_same_host_socket_only_to_a_client_that_asks() -> None:
    me = Identity(volume="v", instance="v-r1", features=("batch-ack",), local="unix:@lhtrio-x")
    asked = answer_hello(Hello(volume="v", features=("batch-ack", LOCAL)), me)
    assert asked.local == "unix:@lhtrio-x"
    assert asked.features == ("batch-ack", LOCAL)
    plain = answer_hello(Hello(volume="v", features=("batch-ack",)), me)
    assert plain.local == ""
    assert plain.features == ("batch-ack",)
    # A server without a same-host socket does not pretend to have the feature.
    assert answer_hello(Hello(volume="v", features=(LOCAL,)), ME).features == ()


async def test_a_client_on_the_same_host_moves_to_the_unix_socket() -> None:
    async with trio.open_nursery() as nursery:
        address = await _server(nursery, local=True)
        async with open_rpc_client(address, volume="v", local=True) as client:
            assert client.via.startswith("unix:@lhtrio-")
            assert len(client.via) == len("unix:@lhtrio-") + 32
            assert client.peer == address  # still known by the address it was given
            transport = client._transport
            assert isinstance(transport, SocketTransport)
            assert transport.stream.socket.family == socket.AF_UNIX
            await client.ping()
            assert client.server is not None
            assert client.server.instance == "v-r1"
        # Without asking: TCP, and the answer names nothing.
        async with open_rpc_client(address, volume="v") as client:
            assert client.via == ""
            assert client.server is not None
            assert client.server.local == ""
            await client.ping()
        address = await _server(nursery, local=False)  # nothing offered: TCP
        async with open_rpc_client(address, volume="v", local=True) as client:
            assert client.via == ""
            await client.ping()
        nursery.cancel_scope.cancel()


async def test_a_same_host_socket_that_fails_leaves_the_client_on_tcp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        # Nobody listens on the offered name (a server on another host): TCP, silently.
        gone = Identity(volume="v", instance="v-r1", local="unix:@lhtrio-nobody-listens-here")
        async with open_rpc_client(await _offering(nursery, gone), volume="v", local=True) as c:
            assert c.via == ""
            await c.ping()
        # The name belongs to another volume's server: its hello refuses us, we stay on TCP.
        other = await _server(nursery, local=True, identity=Identity(volume="other"))
        async with open_rpc_client(other, volume="other", local=True) as c:
            others = c.via
        address = await _offering(nursery, Identity(volume="v", local=others))
        async with open_rpc_client(address, volume="v", local=True) as c:
            assert c.via == ""
            await c.ping()
        assert "staying on TCP" in caplog.text
        # A file path is never followed, even when something listens there.
        path = tmp_path / "trap.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as trap:
            trap.bind(str(path))
            trap.listen(1)
            trap.setblocking(False)
            address = await _offering(nursery, Identity(volume="v", local=f"unix:{path}"))
            with trio.fail_after(10):  # (one that followed it would wait for a hello answer)
                async with open_rpc_client(address, volume="v", local=True) as c:
                    assert c.via == ""
                    await c.ping()
            with pytest.raises(BlockingIOError):
                trap.accept()  # nothing connected
        nursery.cancel_scope.cancel()
