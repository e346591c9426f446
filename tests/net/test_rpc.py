"""The RPC layer over trio memory streams and loopback TCP."""

from __future__ import annotations

import functools
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import msgpack
import pytest
import trio
import trio.testing

from lhtrio.errors import (
    ConnectionLostError,
    IdentityMismatchError,
    InternalError,
    OutOfRangeError,
    UnknownCallError,
    VersionMismatchError,
)
from lhtrio.net import RpcClient, connect_rpc, open_rpc_client, serve_rpc, serve_rpc_connection
from lhtrio.net._nursery import open_connection_nursery
from lhtrio.net.client import HELLO_TIMEOUT, Pending
from lhtrio.net.transport import make_transport
from lhtrio.wire import (
    NEED_DATA,
    Call,
    Data,
    Decoder,
    Done,
    Error,
    Goodbye,
    Hello,
    HelloOk,
    Identity,
    Message,
    Pong,
    Read,
    Reply,
    Request,
    Result,
    Role,
    Write,
    encode,
    encode_frame,
)
from lhtrio.wire.codec import MAGIC

ME = Identity(volume="vol-a", instance="vol-a-r-1")


class Backend:
    """A toy handler: a dict of blocks, sync data path, async control calls."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}
        self.gates: dict[str, trio.Event] = {}
        self.running = 0
        self.max_running = 0
        self.more_running = trio.Event()  # set (and replaced) whenever ``running`` grows

    def __call__(self, request: Request) -> Reply | Awaitable[Reply]:
        if isinstance(request, Write):
            self.blocks[request.offset] = bytes(request.data)
            return Done(len(request.data))
        if isinstance(request, Read):
            if request.offset >= 1 << 20:
                raise OutOfRangeError(f"read at {request.offset} is past the end")
            stored = self.blocks.get(request.offset, b"")[: request.length]
            return Data(stored + bytes(request.length - len(stored)))
        if isinstance(request, Call):
            return self.control(request)
        raise AssertionError(request)

    async def control(self, call: Call) -> Reply:
        if call.name == "echo":
            return Result(call.args)
        if call.name == "wait":
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.more_running.set()
            self.more_running = trio.Event()
            try:
                await self.gates.setdefault(call.args["gate"], trio.Event()).wait()
            finally:
                self.running -= 1
            return Result(call.args["gate"])
        if call.name == "bug":
            raise KeyError("oops")
        raise UnknownCallError(f"no call named {call.name!r}")


@asynccontextmanager
async def memory_pair(
    backend: Backend,
    *,
    max_concurrency: int = 64,
    volume: str = "vol-a",
    instance: str = "",
    client: str = "",
) -> AsyncIterator[RpcClient]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with open_connection_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                serve_rpc_connection,
                server_stream,
                backend,
                identity=ME,
                max_concurrency=max_concurrency,
            )
        )
        async with connect_rpc(
            client_stream, volume=volume, instance=instance, client=client
        ) as rpc:
            yield rpc
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def tcp_server(backend: Backend) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            functools.partial(serve_rpc, backend, "127.0.0.1", 0, identity=ME)
        )
        yield f"tcp://{host}:{port}"
        nursery.cancel_scope.cancel()


async def test_calls_over_memory_streams() -> None:
    backend = Backend()
    async with memory_pair(backend, client="engine-a") as client:
        assert client.server == HelloOk(1, "vol-a", "vol-a-r-1", ())
        assert await client.call(Write(4096, b"abc")) == Done(3)
        assert await client.call(Read(4096, 3)) == Data(b"abc")
        assert await client.call_control("echo", x=1, y=[b"\x00"]) == {"x": 1, "y": [b"\x00"]}
        await client.ping()


async def test_calls_over_loopback_tcp() -> None:
    backend = Backend()
    async with tcp_server(backend) as address, open_rpc_client(address, volume="vol-a") as client:
        payload = bytes(range(256)) * 512  # large enough for the direct-receive path
        assert await client.call(Write(0, payload)) == Done(len(payload))
        assert await client.call(Read(0, len(payload))) == Data(payload)
        replies = await client.call_many([Read(0, 3), Read(1 << 30, 3), Write(8, b"z")])
        assert replies[0] == Data(payload[:3])
        assert isinstance(replies[1], OutOfRangeError)
        assert replies[1].remote
        assert replies[2] == Done(1)


async def test_error_replies_raise_the_same_error_class() -> None:
    async with memory_pair(Backend()) as client:
        with pytest.raises(OutOfRangeError, match="past the end") as info:
            await client.call(Read(1 << 30, 1))
        assert info.value.remote
        with pytest.raises(UnknownCallError, match="nope"):
            await client.call_control("nope")
        with pytest.raises(InternalError, match="internal error handling Call"):
            await client.call_control("bug")
        assert await client.call_control("echo") == {}  # the connection is still fine


async def test_pipelined_replies_out_of_order_are_matched_by_seq() -> None:
    backend = Backend()
    async with memory_pair(backend) as client:
        results: dict[int, object] = {}

        async def one(i: int) -> None:
            results[i] = await client.call_control("wait", gate=f"g{i}")

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
            assert backend.running == 20
            for i in reversed(range(20)):  # complete in reverse order
                backend.gates[f"g{i}"].set()
        assert results == {i: f"g{i}" for i in range(20)}


async def test_frames_queued_together_leave_in_one_send() -> None:
    async with memory_pair(Backend()) as client:
        await trio.testing.wait_all_tasks_blocked()  # the connection's tasks are parked
        before = client.statistics()
        async with trio.open_nursery() as nursery:
            for i in range(32):
                nursery.start_soon(client.call, Write(i * 4096, b"x" * 4096))
        after = client.statistics()
        assert after.frames_sent - before.frames_sent == 32
        assert after.sends - before.sends == 1


async def test_handler_concurrency_is_bounded() -> None:
    backend = Backend()
    async with memory_pair(backend, max_concurrency=4) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(functools.partial(client.call_control, "wait", gate="g"))
            await trio.testing.wait_all_tasks_blocked()
            assert backend.running == 4
            backend.gates["g"].set()
        assert backend.max_running == 4


async def test_pending_call_is_cancelled_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    backend = Backend()
    async with memory_pair(backend) as client:
        with trio.move_on_after(5) as scope:
            await client.call_control("wait", gate="late")
        assert scope.cancelled_caught
        assert client.statistics().calls_pending == 0
        backend.gates["late"].set()  # the late reply arrives and is dropped
        assert await client.call_control("echo", n=1) == {"n": 1}
        assert client.broken is None


async def test_a_callback_completes_a_submitted_batch_without_a_waiting_task() -> None:
    backend = Backend()
    async with memory_pair(backend) as client:
        finished = trio.Event()
        seen: list[Pending] = []

        def done(pending: Pending) -> None:
            seen.append(pending)
            finished.set()

        batch = client.submit([Write(0, b"abc"), Read(1 << 30, 3)])
        assert batch.done is False
        first = client._seqs.take(1)  # how an engine encodes once for several connections
        with_callback = client.submit_encoded(
            encode(first, Write(8, b"xyz")), first, 1, callback=done
        )
        await finished.wait()
        assert seen == [with_callback]
        assert with_callback.result() == [Done(3)]
        done_first, error = await batch.wait()
        assert done_first == Done(3)
        assert isinstance(error, OutOfRangeError)
        assert backend.blocks == {0: b"abc", 8: b"xyz"}


async def test_a_forgotten_batch_drops_its_late_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Backend()
    async with memory_pair(backend) as client:
        called: list[Pending] = []
        first = client._seqs.take(1)
        late = client.submit_encoded(
            encode(first, Call(name="wait", args={"gate": "late"})),
            first,
            1,
            callback=called.append,
        )
        await trio.testing.wait_all_tasks_blocked()
        late.forget()
        assert client.statistics().calls_pending == 0
        backend.gates["late"].set()  # the reply arrives and is dropped
        assert await client.call_control("echo", n=1) == {"n": 1}
        assert called == []
        assert client.broken is None


async def test_connection_loss_fails_every_pending_call() -> None:
    backend = Backend()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    failures: list[BaseException] = []
    async with trio.open_nursery() as outer:
        server_scope = trio.CancelScope()

        async def server() -> None:
            with server_scope:
                await serve_rpc_connection(server_stream, backend, identity=ME)

        outer.start_soon(server)
        async with connect_rpc(client_stream, volume="vol-a") as client:

            async def pending() -> None:
                try:
                    await client.call_control("wait", gate="never")
                except ConnectionLostError as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(pending)
                await trio.testing.wait_all_tasks_blocked()
                server_scope.cancel()  # the server goes away with 5 calls in flight
            assert len(failures) == 5
            assert all("goodbye" in str(exc) for exc in failures)
            with pytest.raises(ConnectionLostError):
                await client.ping()


async def test_identity_mismatch_is_refused() -> None:
    with pytest.raises(IdentityMismatchError, match=r"serves volume 'vol-a'.*not volume 'vol-b'"):
        async with memory_pair(Backend(), volume="vol-b"):
            pass
    with pytest.raises(IdentityMismatchError, match="not instance 'vol-a-r-2'"):
        async with memory_pair(Backend(), instance="vol-a-r-2"):
            pass
    async with memory_pair(Backend(), instance="vol-a-r-1") as client:
        await client.ping()


async def raw_exchange(frames: bytes, *, until: int | None = None) -> list[tuple[int, Message]]:
    """Send raw bytes to a server; collect its answers until it closes (or ``until`` arrived)."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    replies: list[tuple[int, Message]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(serve_rpc_connection, server_stream, Backend(), identity=ME)
        )
        await client_stream.send_all(frames)
        decoder = Decoder()
        with trio.fail_after(5):
            while until is None or len(replies) < until:
                data = await client_stream.receive_some()
                if not data:
                    break
                decoder.receive_data(data)
                while (item := decoder.next_message()) is not NEED_DATA:
                    replies.append(item)
        nursery.cancel_scope.cancel()
    return replies


async def test_version_mismatch_is_refused_by_the_server() -> None:
    replies = await raw_exchange(encode_frame(1, Hello("vol-a", versions=(2, 3))))
    assert len(replies) == 1
    seq, error = replies[0]
    assert seq == 1
    assert isinstance(error, Error)
    assert error.code == VersionMismatchError.code
    assert "versions [2, 3]" in error.message


async def test_version_mismatch_is_refused_by_the_client() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def liar() -> None:  # answers with a version the client never offered
        await server_stream.receive_some()
        await server_stream.send_all(encode_frame(1, HelloOk(7, "vol-a", "r")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(liar)
        with pytest.raises(VersionMismatchError, match="version 7"):
            async with connect_rpc(client_stream, volume="vol-a"):
                pass


async def test_first_message_must_be_hello() -> None:
    replies = await raw_exchange(encode_frame(1, Read(0, 1)))
    assert [(seq, type(m)) for seq, m in replies] == [(0, Error)]
    assert "expected Hello" in replies[0][1].message  # type: ignore[attr-defined]


async def test_unknown_message_is_answered_and_the_connection_goes_on() -> None:
    head = msgpack.packb([120, 2, "from the future"])
    unknown = struct.pack("<HHII", MAGIC, 0, len(head), 0) + head
    replies = await raw_exchange(
        encode_frame(1, Hello("vol-a")) + unknown + encode_frame(3, Read(0, 2)), until=3
    )
    assert [(seq, type(m)) for seq, m in replies] == [(1, HelloOk), (2, Error), (3, Data)]
    assert replies[1][1].code == 6  # type: ignore[attr-defined]


async def test_garbage_gets_an_error_then_close_and_the_server_serves_others() -> None:
    backend = Backend()
    async with tcp_server(backend) as address, open_rpc_client(address, volume="vol-a") as good:
        await good.call(Write(0, b"before"))
        host, port = address.removeprefix("tcp://").split(":")
        bad = await trio.open_tcp_stream(host, int(port))
        await bad.send_all(encode_frame(1, Hello("vol-a")) + b"\xff" * 64)
        decoder = Decoder()
        received = b""
        with trio.fail_after(10):
            while data := await bad.receive_some():
                received += data
        decoder.receive_data(received)
        items = decoder.drain()
        assert [type(m) for _, m in items] == [HelloOk, Error]
        assert items[1][0] == 0
        assert "magic" in items[1][1].message  # type: ignore[attr-defined]
        await bad.aclose()
        # An abrupt disconnect in the middle of a request does not hurt either.
        cut = await trio.open_tcp_stream(host, int(port))
        await cut.send_all(
            encode_frame(1, Hello("vol-a")) + encode_frame(2, Write(0, b"x" * 9))[:20]
        )
        await cut.aclose()
        assert await good.call(Read(0, 6)) == Data(b"before")
        assert backend.blocks[0] == b"before"


async def test_oversized_frame_is_refused_without_reading_it() -> None:
    prefix = struct.pack("<HHII", MAGIC, 0, 4, 1 << 30)
    replies = await raw_exchange(encode_frame(1, Hello("vol-a")) + prefix)
    assert [type(m) for _, m in replies] == [HelloOk, Error]
    assert replies[1][1].code == 3  # type: ignore[attr-defined]


async def test_server_shutdown_says_goodbye() -> None:
    backend = Backend()
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            functools.partial(serve_rpc, backend, "127.0.0.1", 0, identity=ME)
        )
        async with open_rpc_client(f"{host}:{port}", volume="vol-a") as client:
            await client.ping()
            nursery.cancel_scope.cancel()
            error = await client.wait_broken()
            assert "goodbye (server shutting down)" in str(error)


async def test_connect_refused_is_a_clear_error() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with pytest.raises(ConnectionLostError, match=f"cannot connect to tcp://127.0.0.1:{port}"):
        async with open_rpc_client(f"127.0.0.1:{port}", volume="vol-a"):
            pass


def test_pong_is_a_reply() -> None:
    assert isinstance(Pong(), Reply)
    assert isinstance(Goodbye(), Reply)


async def test_a_closed_socket_transport_never_writes_to_a_reused_descriptor() -> None:
    left, right = trio.socket.socketpair()
    number = left.fileno()
    transport = make_transport(trio.SocketStream(left))
    await transport.aclose()
    right.close()
    other, peer = socket.socketpair()
    duplicated = other.fileno() != number
    if duplicated:
        os.dup2(other.fileno(), number)  # the kernel hands the number to another socket
    try:
        with pytest.raises(trio.BrokenResourceError):
            transport.send_nowait([b"a late reply"])
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(64)  # nothing arrived on the other socket
    finally:
        if duplicated:
            os.close(number)
        other.close()
        peer.close()


async def test_a_peer_that_never_answers_the_hello_is_given_up_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def mute(stream: trio.SocketStream) -> None:  # an HTTP server waiting for a request
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, mute, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        start = trio.current_time()
        with pytest.raises(ConnectionLostError, match="did not answer the hello within 10 s"):
            async with open_rpc_client(f"127.0.0.1:{port}", volume="v"):
                pass  # pragma: no cover
        assert trio.current_time() - start == pytest.approx(HELLO_TIMEOUT)
        nursery.cancel_scope.cancel()


async def test_an_endpoint_of_another_role_is_refused_by_name() -> None:
    engine = Identity(volume="vol-a", instance="engine-vol-a", role=Role.ENGINE)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            functools.partial(serve_rpc, Backend(), "127.0.0.1", 0, identity=engine)
        )
        with pytest.raises(IdentityMismatchError, match=r"is an engine .*not a replica"):
            async with open_rpc_client(f"{host}:{port}", volume="vol-a", role=Role.REPLICA):
                pass  # pragma: no cover
        async with open_rpc_client(f"{host}:{port}", role=Role.ENGINE) as client:
            assert client.server is not None
            assert client.server.role == "engine"
        nursery.cancel_scope.cancel()
