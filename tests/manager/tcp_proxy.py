"""A TCP proxy for tests that lose their store: a store reaches etcd through it, and the test
takes it down (every connection cut, new ones refused: the port is closed) and up again (the same
port listens again)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["Proxy", "open_proxy", "pipe"]


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`down` and :meth:`up` (see the module
    docstring). ``connections`` counts the connections it forwarded."""

    def __init__(self, nursery: trio.Nursery, target: tuple[str, int]) -> None:
        self._nursery = nursery
        self._target = target
        self._cuts: set[trio.CancelScope] = set()
        self._listening: trio.CancelScope | None = None
        self._downs = 0  # how often it went down: a connection accepted before is cut too
        self.port = 0
        self.connections = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def up(self) -> None:
        """Listen (again, on the same port)."""
        assert self._listening is None, "the proxy is up already"
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        listener = trio.SocketListener(sock)
        self._listening = await self._nursery.start(self._listen, listener)

    def down(self) -> None:
        """Cut every connection and close the port (new connections are refused)."""
        assert self._listening is not None, "the proxy is down already"
        self._listening.cancel()
        self._listening = None
        self._downs += 1
        for scope in self._cuts:
            scope.cancel()

    async def _listen(
        self, listener: trio.SocketListener, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            async with listener:
                while True:
                    client = await listener.accept()
                    self.connections += 1
                    self._nursery.start_soon(self._forward, client, self._downs)

    async def _forward(self, client: trio.SocketStream, downs: int) -> None:
        with trio.CancelScope() as cut:
            if downs != self._downs:  # down since it was accepted, before this task ran
                cut.cancel()
            self._cuts.add(cut)
            try:
                try:
                    upstream = await trio.open_tcp_stream(*self._target)
                except OSError:
                    return  # the target is away: the client sees its connection close
                async with client, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(functools.partial(pipe, client, upstream, nursery))
                    nursery.start_soon(functools.partial(pipe, upstream, client, nursery))
            finally:
                self._cuts.discard(cut)
                with trio.CancelScope(shield=True):
                    await client.aclose()


async def pipe(source: trio.SocketStream, sink: trio.SocketStream, pair: trio.Nursery) -> None:
    """Copy ``source`` to ``sink`` until either ends; then end the pair."""
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    pair.cancel_scope.cancel()


@asynccontextmanager
async def open_proxy(target: tuple[str, int]) -> AsyncIterator[Proxy]:
    """A proxy to ``target``, up, until the block ends."""
    async with trio.open_nursery() as nursery:
        proxy = Proxy(nursery, target)
        await proxy.up()
        yield proxy
        nursery.cancel_scope.cancel()
