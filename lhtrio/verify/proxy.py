"""A userspace TCP proxy that makes a link slow, stalled or cut (this kernel has no netem).

``LinkProxy`` listens on one port (of 127.0.0.1 by default) for as long as it lives and
forwards each connection to its current target (which may change: a restarted replica listens
on a new port).
Faults: :meth:`~LinkProxy.slow` delays every chunk forwarded, in both directions;
:meth:`~LinkProxy.stall` forwards nothing until :meth:`~LinkProxy.heal` (bytes wait in the
proxy and in the socket buffers; the peers see a silent link, not a closed one);
:meth:`~LinkProxy.cut` closes every connection and refuses new ones until healed.

Resource handling: every connection's tasks run in the nursery given to :func:`open_link_proxy`;
leaving it closes the listener and every connection.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["LinkProxy", "open_link_proxy"]


class LinkProxy:
    """See the module docstring; ``connections`` counts the connections forwarded."""

    def __init__(self, nursery: trio.Nursery, listener: trio.SocketListener, host: str) -> None:
        self._nursery = nursery
        self._listener = listener
        self.host = host
        self.target: tuple[str, int] | None = None
        self.port: int = listener.socket.getsockname()[1]
        self.connections = 0
        self._delay = 0.0
        self._open = trio.Event()
        self._open.set()
        self._refusing = False
        self._cuts: set[trio.CancelScope] = set()

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def slow(self, delay: float) -> None:
        self._delay = delay

    def stall(self) -> None:
        if self._open.is_set():
            self._open = trio.Event()

    def cut(self) -> None:
        self._refusing = True
        for scope in list(self._cuts):
            scope.cancel()

    def heal(self) -> None:
        self._delay = 0.0
        self._refusing = False
        self._open.set()

    async def _accept(self) -> None:
        async with self._listener:
            while True:
                client = await self._listener.accept()
                if self._refusing or self.target is None:
                    await client.aclose()
                    continue
                self.connections += 1
                self._nursery.start_soon(self._forward, client, self.target)

    async def _forward(self, client: trio.SocketStream, target: tuple[str, int]) -> None:
        with trio.CancelScope() as cut:
            self._cuts.add(cut)
            try:
                try:
                    upstream = await trio.open_tcp_stream(*target)
                except OSError:
                    return  # the target is away: the client sees its connection close
                async with upstream, trio.open_nursery() as pair:
                    pair.start_soon(functools.partial(self._pipe, client, upstream, pair))
                    pair.start_soon(functools.partial(self._pipe, upstream, client, pair))
            finally:
                self._cuts.discard(cut)
                with trio.CancelScope(shield=True):
                    await client.aclose()

    async def _pipe(
        self, source: trio.SocketStream, sink: trio.SocketStream, pair: trio.Nursery
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                await self._open.wait()
                if self._delay:
                    await trio.sleep(self._delay)
                await self._open.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pair.cancel_scope.cancel()


@asynccontextmanager
async def open_link_proxy(host: str = "127.0.0.1") -> AsyncIterator[LinkProxy]:
    """A proxy on a free port of ``host`` with no target yet (it refuses until one is set)."""
    listeners = await trio.open_tcp_listeners(0, host=host)
    async with trio.open_nursery() as nursery:
        proxy = LinkProxy(nursery, listeners[0], host)
        nursery.start_soon(proxy._accept)
        yield proxy
        nursery.cancel_scope.cancel()
