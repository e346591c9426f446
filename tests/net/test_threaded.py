"""Connections served by their own thread (``threaded=True``), over real socket pairs."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from lhtrio.errors import ConnectionLostError, InternalError, OutOfRangeError
from lhtrio.net import RpcClient, connect_rpc, serve_rpc_connection
from lhtrio.net._nursery import open_connection_nursery
from lhtrio.wire import (
    NEED_DATA,
    Data,
    Decoder,
    Done,
    Error,
    Flush,
    Hello,
    HelloOk,
    Message,
    Read,
    Reply,
    Request,
    Unmap,
    Write,
    encode_frame,
)
from tests.net.test_rpc import ME, Backend


class ThreadBackend(Backend):
    """Records which thread ran each kind of request; an Unmap is a bug in the handler."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, set[int]] = {}
        self.read_seen = threading.Event()

    def __call__(self, request: Request) -> Reply | Awaitable[Reply]:
        self.threads.setdefault(type(request).__name__, set()).add(threading.get_ident())
        if isinstance(request, Read):
            self.read_seen.set()
        if isinstance(request, Unmap):
            raise KeyError("a bug in the handler")
        if isinstance(request, Flush):
            return self.flushed()
        return super().__call__(request)

    async def flushed(self) -> Reply:
        self.threads.setdefault("Flush awaited", set()).add(threading.get_ident())
        await trio.lowlevel.checkpoint()
        return Done(0)


async def running(backend: Backend, count: int) -> None:
    """Wait until ``count`` handed-over ``wait`` calls run (they start on the loop)."""
    with trio.fail_after(10):
        while backend.running < count:
            await backend.more_running.wait()


@asynccontextmanager
async def served(
    backend: Backend, *, max_concurrency: int = 64
) -> AsyncIterator[tuple[RpcClient, trio.CancelScope]]:
    """A client connected over a Unix socket pair to a threaded server connection."""
    left, right = trio.socket.socketpair()
    async with open_connection_nursery() as nursery:
        scope = trio.CancelScope()

        async def server() -> None:
            with scope:
                await serve_rpc_connection(
                    trio.SocketStream(right),
                    backend,
                    identity=ME,
                    max_concurrency=max_concurrency,
                    threaded=True,
                )

        nursery.start_soon(server)
        async with connect_rpc(trio.SocketStream(left), volume="vol-a") as client:
            yield client, scope
        scope.cancel()  # the server's thread ends with the connection (or the test hangs)


async def test_data_requests_run_in_the_connection_thread_and_the_rest_on_the_loop() -> None:
    backend = ThreadBackend()
    loop = threading.get_ident()
    async with served(backend) as (client, _):
        payload = bytes(range(256)) * 512  # the direct-receive path
        assert await client.call(Write(0, payload)) == Done(len(payload))
        assert await client.call(Read(0, len(payload))) == Data(payload)
        assert await client.call(Flush()) == Done(0)
        assert await client.call_control("echo", x=1) == {"x": 1}
        await client.ping()
        with pytest.raises(OutOfRangeError, match="past the end"):
            await client.call(Read(1 << 30, 1))
        with pytest.raises(InternalError, match="internal error handling Unmap"):
            await client.call(Unmap(0, 4096))
        assert await client.call(Read(0, 3)) == Data(payload[:3])  # still serving
    (writer,) = backend.threads["Write"]
    assert writer != loop
    assert backend.threads["Read"] == {writer}
    # A Flush is handed to the handler in the thread, in the order of the requests (a replica
    # notes there what it must make durable); the waiting it returns runs on the loop.
    assert backend.threads["Flush"] == {writer}
    assert backend.threads["Flush awaited"] == {loop}
    assert backend.threads["Call"] == {loop}


async def test_inline_and_loop_replies_never_interleave() -> None:
    """Frames from the thread and from loop tasks share one socket; each arrives whole."""
    backend = ThreadBackend()
    big = bytes(range(251)) * 4177  # ~1 MiB: sends the kernel takes in parts
    async with served(backend) as (client, _):
        await client.call(Write(0, big))
        results: list[bool] = []

        async def reader() -> None:
            for _ in range(10):
                reply = await client.call(Read(0, len(big)))
                results.append(reply == Data(big))

        async def controller(i: int) -> None:
            for j in range(50):
                results.append(await client.call_control("echo", i=i, j=j) == {"i": i, "j": j})
                results.append(await client.call(Flush()) == Done(0))

        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(reader)
                nursery.start_soon(controller, i)
    assert len(results) == 4 * 10 + 4 * 100
    assert all(results)


async def test_data_flows_while_a_handed_over_request_waits() -> None:
    backend = ThreadBackend()
    async with served(backend) as (client, _):
        async with trio.open_nursery() as nursery:
            waited: list[object] = []

            async def wait() -> None:
                waited.append(await client.call_control("wait", gate="g"))

            nursery.start_soon(wait)
            for i in range(20):
                assert await client.call(Write(i * 4096, b"%d" % i)) == Done(len(b"%d" % i))
            assert backend.running == 1
            assert not waited
            backend.gates["g"].set()
        assert waited == ["g"]
        assert await client.call(Read(19 * 4096, 2)) == Data(b"19")


async def test_handed_over_requests_are_bounded_and_the_thread_stops_reading() -> None:
    backend = ThreadBackend()
    async with served(backend, max_concurrency=2) as (client, _):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(functools.partial(client.call_control, "wait", gate="g"))
            await running(backend, 2)
            # The third waits for a slot; the thread waits with it and reads nothing more.
            late = trio.Event()

            async def read_late() -> None:
                await client.call(Read(0, 1))
                late.set()

            nursery.start_soon(read_late)
            await trio.testing.wait_all_tasks_blocked()
            assert backend.running == 2
            assert not late.is_set()
            backend.gates["g"].set()
        assert late.is_set()
        assert backend.max_running == 2


async def test_cancelling_the_server_says_goodbye_and_ends_the_thread() -> None:
    backend = ThreadBackend()
    async with served(backend) as (client, scope):
        async with trio.open_nursery() as nursery:
            failures: list[BaseException] = []

            async def pending() -> None:
                try:
                    await client.call_control("wait", gate="never")
                except ConnectionLostError as exc:
                    failures.append(exc)

            for _ in range(3):
                nursery.start_soon(pending)
            await running(backend, 3)
            scope.cancel()
        assert len(failures) == 3
        assert all("goodbye (server shutting down)" in str(exc) for exc in failures)


async def test_a_peer_that_stops_reading_cannot_hold_up_shutdown() -> None:
    """The thread blocks in a send nobody reads; cancelling still ends it (write side shut)."""
    backend = ThreadBackend()
    backend.blocks[0] = bytes(4 << 20)
    left, right = trio.socket.socketpair()
    left_stream = trio.SocketStream(left)
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def server() -> None:
            with scope:
                await serve_rpc_connection(
                    trio.SocketStream(right), backend, identity=ME, threaded=True
                )

        nursery.start_soon(server)
        await left_stream.send_all(encode_frame(1, Hello("vol-a")))
        # 32 reads of 4 MiB: far more than the socket buffers hold, and we never read them.
        await left_stream.send_all(
            b"".join(encode_frame(i, Read(0, 4 << 20)) for i in range(2, 34))
        )
        # The thread is serving the reads (and blocks sending them).
        assert await trio.to_thread.run_sync(backend.read_seen.wait, 10)
        scope.cancel()  # ends within the grace period, or the test hangs
    await left_stream.aclose()


@pytest.mark.parametrize("threaded", [True, False])
async def test_a_malformed_frame_after_a_good_one_gets_an_error_then_the_connection_closes(
    threaded: bool,
) -> None:
    """The bad bytes arrive with a good frame, and nothing follows: answered all the same."""
    left, right = trio.socket.socketpair()
    client = trio.SocketStream(left)
    replies: list[tuple[int, Message]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                serve_rpc_connection,
                trio.SocketStream(right),
                Backend(),
                identity=ME,
                threaded=True,
            )
        )
        await client.send_all(
            encode_frame(1, Hello("vol-a")) + encode_frame(2, Write(0, b"ok")) + b"\xff" * 64
        )
        decoder = Decoder()
        with trio.fail_after(10):
            while data := await client.receive_some():
                decoder.receive_data(data)
                while (item := decoder.next_message()) is not NEED_DATA:
                    replies.append(item)
    assert [(seq, type(m)) for seq, m in replies] == [(1, HelloOk), (2, Done), (0, Error)]
    assert "magic" in replies[2][1].message  # type: ignore[attr-defined]
    await client.aclose()
