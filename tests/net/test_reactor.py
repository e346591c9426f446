"""The reactor: callbacks from its own task, waiting in place, and RPC clients read by it."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from lhtrio.errors import ConnectionLostError
from lhtrio.net import serve_rpc
from lhtrio.net.client import connect_rpc
from lhtrio.net.reactor import Reactor, open_reactor
from lhtrio.wire import Identity, Ping, Pong, Reply, Request
from tests.net.polls import RecordedPolls


@contextmanager
def _pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextmanager
def _bare_reactor() -> Iterator[Reactor]:
    """A reactor without its task: only ``wait()`` dispatches."""
    reactor = Reactor()
    try:
        yield reactor
    finally:
        reactor.close()


class _Reads:
    """A callback that reads its socket and notes which task it ran in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""
        self.tasks: list[trio.lowlevel.Task] = []
        self.arrived = trio.Event()

    def __call__(self) -> None:
        self.data += self.sock.recv(1 << 16)
        self.tasks.append(trio.lowlevel.current_task())
        self.arrived.set()


async def test_callbacks_run_in_the_reactors_task_until_removed() -> None:
    with _pair() as (a, b):
        async with open_reactor() as reactor:
            reads = _Reads(a)
            reactor.add(a.fileno(), reads)
            assert reactor.watching == 1
            b.send(b"one")
            await reads.arrived.wait()
            assert reads.data == b"one"
            assert reads.tasks[0] is not trio.lowlevel.current_task()
            reactor.remove(a.fileno())
            reactor.remove(a.fileno())  # (twice is harmless)
            assert reactor.watching == 0
            b.send(b"two")
            await trio.testing.wait_all_tasks_blocked()
            assert reads.data == b"one"  # nobody read it


async def test_the_reactor_serves_on_when_its_surroundings_are_cancelled() -> None:
    # (an engine being cancelled flushes through its replica links, shielded, before it ends)
    with _pair() as (a, b), trio.CancelScope() as outer:
        async with open_reactor() as reactor:
            reads = _Reads(a)
            reactor.add(a.fileno(), reads)
            outer.cancel()
            with trio.CancelScope(shield=True):
                b.send(b"bye")
                with trio.fail_after(30):
                    await reads.arrived.wait()
    assert reads.data == b"bye"


async def test_wait_dispatches_in_the_calling_task_until_its_budget_is_spent() -> None:
    with _pair() as (a, b), _bare_reactor() as reactor:
        reads = _Reads(a)
        reactor.add(a.fileno(), reads)
        b.send(b"x")
        assert not reactor.wait(0.05)  # no wake descriptor: only the budget ends it
        assert reads.data == b"x"
        assert reads.tasks == [trio.lowlevel.current_task()]


async def test_wait_ends_when_the_wake_descriptor_is_readable_and_leaves_it_unread() -> None:
    with _pair() as (a, b), _pair() as (c, d), _bare_reactor() as reactor:
        reads = _Reads(a)
        reactor.add(a.fileno(), reads)
        b.send(b"answer")
        d.send(b"next")
        assert reactor.wait(30, wake=c.fileno())
        assert reads.data == b"answer"  # dispatched on the way
        assert c.recv(10) == b"next"  # left for its owner
        assert not reactor.wait(0.01, wake=c.fileno())  # nothing more: the budget ends it
        assert reactor.watching == 1


async def test_wait_does_not_wait_while_another_task_is_ready_nor_past_a_deadline() -> None:
    with _pair() as (a, b), _pair() as (c, d), _bare_reactor() as reactor:
        reads = _Reads(a)
        reactor.add(a.fileno(), reads)
        b.send(b"x")  # ready to dispatch, but waiting is not allowed now:
        d.send(b"wake")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0)  # runnable until this task yields
            assert not reactor.wait(30, wake=c.fileno())
        assert reads.data == b""
        assert reactor.wait(30, wake=c.fileno())
        assert reads.data == b"x"
        c.recv(10)
        # Nothing arrives: trio's next deadline, not the budget, ends the wait.
        start = trio.current_time()
        with trio.move_on_after(0.05):  # (only its deadline matters here)
            assert not reactor.wait(600, wake=c.fileno())
            await trio.lowlevel.checkpoint()
        assert trio.current_time() - start < 60


class _Yields:
    """Stands in for ``os.sched_yield``: counts the yields, sends ``data`` at given counts."""

    def __init__(self, sends: dict[int, tuple[socket.socket, bytes]]) -> None:
        self.sends = sends
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        if (send := self.sends.get(self.count)) is not None:
            send[0].send(send[1])


async def test_a_spinning_wait_polls_without_sleeping_and_yields_between_polls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _pair() as (a, b), _pair() as (c, d), _bare_reactor() as reactor:
        reads = _Reads(a)
        reactor.add(a.fileno(), reads)
        polls = RecordedPolls(reactor)
        # An answer arrives at the third yield, the client's next request at the sixth.
        yields = _Yields({3: (b, b"answer"), 6: (d, b"next")})
        monkeypatch.setattr(os, "sched_yield", yields)
        assert reactor.wait(30, wake=c.fileno(), spin=30)
        assert reads.data == b"answer"
        assert yields.count == 6
        # Never slept: 3 polls in vain, the answer, 3 in vain, the request.
        assert polls.timeouts == [0] * 8
        # The budget bounds the spin: nothing arrives, the wait ends without sleeping.
        assert c.recv(10) == b"next"
        polls.timeouts.clear()
        assert not reactor.wait(0.02, wake=c.fileno(), spin=30)
        assert yields.count > 6
        assert set(polls.timeouts) == {0}


async def test_a_wait_spins_only_while_may_spin_says_so_asked_after_each_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _pair() as (a, b), _pair() as (c, d), _bare_reactor() as reactor:
        idle = False

        def answered() -> None:  # like the last answer of a batch: nothing is in flight now
            nonlocal idle
            a.recv(10)
            idle = True

        reactor.add(a.fileno(), answered)
        polls = RecordedPolls(reactor)
        yields = _Yields({2: (d, b"next")})
        monkeypatch.setattr(os, "sched_yield", yields)
        b.send(b"answer")
        assert reactor.wait(30, wake=c.fileno(), spin=30, may_spin=lambda: idle)
        first, *spun = polls.timeouts
        assert first > 0  # slept (woken at once: the answer was there)
        assert spun == [0, 0, 0]  # then polled: twice in vain, then the client's request
        # Without a spin budget it sleeps, whatever may_spin says.
        polls.timeouts.clear()
        c.recv(10)
        assert not reactor.wait(0.01, wake=c.fileno(), may_spin=lambda: True)
        assert polls.timeouts
        assert all(t > 0 for t in polls.timeouts)
        assert yields.count == 2


_ID = Identity(volume="v")


def _echo(request: Request) -> Reply:
    assert isinstance(request, Ping)
    return Pong()


async def test_an_rpc_client_read_by_a_reactor_and_its_end() -> None:
    async with trio.open_nursery() as nursery, open_reactor() as reactor:
        host, port = await nursery.start(
            functools.partial(serve_rpc, _echo, "127.0.0.1", 0, identity=_ID)
        )
        stream = await trio.open_tcp_stream(host, port)
        async with connect_rpc(stream, reactor=reactor) as client:
            assert reactor.watching == 1
            for _ in range(3):
                await client.ping()
            assert client.statistics().replies_received == 3
        assert reactor.watching == 0  # removed before the socket closed

        # The server goes away: pending and later calls fail, the socket is no longer watched.
        server = trio.CancelScope()

        async def serve_once(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
            with server:
                await serve_rpc(_echo, "127.0.0.1", 0, identity=_ID, task_status=task_status)

        host, port = await nursery.start(serve_once)
        stream = await trio.open_tcp_stream(host, port)
        async with connect_rpc(stream, reactor=reactor) as client:
            await client.ping()
            server.cancel()
            error = await client.wait_broken()
            assert "lost" in str(error)
            assert reactor.watching == 0
            with pytest.raises(ConnectionLostError):
                await client.ping()
        nursery.cancel_scope.cancel()
