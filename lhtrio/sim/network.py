"""A simulated network: in-memory byte streams between named hosts, with faults per link.

It implements :class:`lhtrio.net.network.Network`, so the product's own connects and listeners
(engines' links, rebuilds, managers' calls to their node) run over it unchanged once
:data:`lhtrio.net.network.NETWORK` holds it. A task's host is :data:`HOST` (set by whoever
starts a simulated node's tasks); a listener's host is the host part of its TCP address
(``tcp://n1:10000``), or the listening task's host for a Unix address.

**What a link does** (a link is an ordered pair of hosts; a connection uses one each way):

* *Delay*: every ``send_all`` is delivered after a latency drawn from the network's seeded
  ``random.Random`` (``latency`` plus up to ``jitter``), never before what was sent earlier on
  the same connection (a byte stream keeps its order; connections overtake each other freely).
* *Loss*: TCP turns a lost segment into a retransmission, so with probability ``loss`` a send
  is delivered ``retransmit`` seconds later than otherwise, instead of never.
* *Partition* (:meth:`SimNetwork.partition`, one way or both): bytes sent stay queued and
  connects hang until :meth:`SimNetwork.heal` (as TCP retrying against a silent peer); whoever
  has a timeout gives up first.
* *Reset* (:meth:`SimNetwork.reset`): every connection between two hosts breaks at once (both
  ends see ``trio.BrokenResourceError``).
* *A host's crash* (:meth:`SimNetwork.crash`): its connections reset, connects to it refused,
  its listeners gone; :meth:`SimNetwork.revive` lets it listen again.

Everything is driven by trio's clock and the seeded generator, so one seed always gives the
same deliveries in the same order (the simulator runs on ``trio.testing.MockClock``).
"""

from __future__ import annotations

import errno
import itertools
import random
from collections import deque
from contextvars import ContextVar

import attrs
import trio

from lhtrio.errors import ConflictError
from lhtrio.net.address import Address
from lhtrio.net.network import Listener

__all__ = ["HOST", "LinkFaults", "SimNetwork", "SimStream"]

#: The simulated host the current task runs on.
HOST: ContextVar[str] = ContextVar("lhtrio_sim_host", default="client")


@attrs.frozen(kw_only=True)
class LinkFaults:
    """How a link behaves (seconds; ``loss`` a probability per send)."""

    latency: float = 0.0002
    jitter: float = 0.0003
    loss: float = 0.0
    retransmit: float = 0.2


@attrs.define(eq=False)
class _Pipe:
    """One direction of one connection: queued chunks, each with its delivery time."""

    net: SimNetwork
    link: tuple[str, str]
    chunks: deque[tuple[float, bytes]] = attrs.field(factory=deque)
    last: float = 0.0
    eof: bool = False  # the sender closed its side
    broken: bool = False  # reset
    reader_gone: bool = False
    changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)

    def put(self, data: bytes) -> None:
        faults = self.net.faults(self.link)
        rng = self.net.rng
        delay = faults.latency + rng.random() * faults.jitter
        if faults.loss and rng.random() < faults.loss:
            delay += faults.retransmit
            self.net.counters["delayed"] += 1
        self.last = max(self.last, trio.current_time() + delay)
        self.chunks.append((self.last, data))
        self.changed.unpark_all()

    async def get(self, max_bytes: int | None) -> bytes:
        while True:
            if self.broken:
                raise trio.BrokenResourceError("connection reset (simulated)")
            due = self.chunks[0][0] if self.chunks else None
            held = self.link in self.net.cut
            if due is not None and not held and due <= trio.current_time():
                at, data = self.chunks.popleft()
                if max_bytes is not None and len(data) > max_bytes:
                    self.chunks.appendleft((at, data[max_bytes:]))
                    data = data[:max_bytes]
                self.net.counters["bytes"] += len(data)
                return data
            if due is None and self.eof:
                return b""
            with trio.move_on_at(due if due is not None and not held else float("inf")):
                await self.changed.park()

    def wake(self) -> None:
        self.changed.unpark_all()


class SimStream(trio.abc.Stream):
    """One end of a simulated connection."""

    def __init__(self, out: _Pipe, into: _Pipe) -> None:
        self._out, self._in = out, into
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._out.broken or self._out.reader_gone:
            raise trio.BrokenResourceError("connection reset (simulated)")
        if data:
            self._out.put(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        data = await self._in.get(max_bytes)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.eof = True
            self._out.wake()
            self._in.reader_gone = True
            self._in.wake()
        await trio.lowlevel.checkpoint()


class SimListener(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self, net: SimNetwork, key: str, host: str) -> None:
        self.net, self.key, self.host = net, key, host
        self._in, self._out = trio.open_memory_channel[SimStream](1000)
        self.closed = False

    def offer(self, stream: SimStream) -> None:
        self._in.send_nowait(stream)

    async def accept(self) -> trio.abc.Stream:
        try:
            return await self._out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        self.closed = True
        if self.net.listeners.get(self.key) is self:
            del self.net.listeners[self.key]
        self._in.close()
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class SimNetwork:
    """The network of one simulated run (see the module's docstring)."""

    rng: random.Random
    default: LinkFaults = LinkFaults()
    links: dict[tuple[str, str], LinkFaults] = attrs.field(factory=dict)
    cut: set[tuple[str, str]] = attrs.field(factory=set)
    down: set[str] = attrs.field(factory=set)
    listeners: dict[str, SimListener] = attrs.field(factory=dict)
    pipes: dict[tuple[str, str], list[_Pipe]] = attrs.field(factory=dict)
    counters: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(("connects", "bytes", "delayed"), 0)
    )
    _ports: dict[str, itertools.count[int]] = attrs.field(factory=dict)
    _healed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)

    def faults(self, link: tuple[str, str]) -> LinkFaults:
        return self.links.get(link, self.default)

    # -- the Network protocol ----------------------------------------------------------------

    async def listen(self, address: Address) -> tuple[list[Listener], Address]:
        await trio.lowlevel.checkpoint()
        if address.is_unix:
            host, bound = HOST.get(), address
        else:
            host = address.host
            port = address.port or next(self._ports.setdefault(host, itertools.count(10000)))
            while address.port == 0 and str(Address(host=host, port=port)) in self.listeners:
                port = next(self._ports[host])
            bound = Address(host=host, port=port)
        key = str(bound)
        if key in self.listeners:
            raise ConflictError(f"address {key} is in use (simulated)")
        listener = SimListener(self, key, host)
        self.listeners[key] = listener
        return [listener], bound

    async def connect(self, address: Address) -> trio.abc.Stream:
        src = HOST.get()
        await trio.sleep(self.faults((src, "")).latency)
        while True:
            listener = self.listeners.get(str(address))
            if listener is None or src in self.down or listener.host in self.down:
                raise OSError(errno.ECONNREFUSED, f"connection refused by {address} (simulated)")
            if (src, listener.host) not in self.cut and (listener.host, src) not in self.cut:
                break
            await self._healed.park()  # (a SYN into a partition: retried until healed)
        dst = listener.host
        there, back = _Pipe(self, (src, dst)), _Pipe(self, (dst, src))
        self.pipes.setdefault((src, dst), []).append(there)
        self.pipes.setdefault((dst, src), []).append(back)
        self.counters["connects"] += 1
        listener.offer(SimStream(back, there))
        return SimStream(there, back)

    # -- faults ---------------------------------------------------------------------------------

    def partition(self, a: str, b: str, *, both: bool = True) -> None:
        self.cut.add((a, b))
        if both:
            self.cut.add((b, a))

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Heal the link between ``a`` and ``b`` (both ways), or every link."""
        if a is None:
            healed = set(self.cut)
            self.cut.clear()
        else:
            healed = {(a, b), (b, a)} & self.cut if b is not None else set()
            self.cut -= healed
        for link in healed:
            for pipe in self._live(link):
                pipe.wake()
        self._healed.unpark_all()

    def reset(self, a: str, b: str) -> None:
        for link in ((a, b), (b, a)):
            for pipe in self._live(link):
                pipe.broken = True
                pipe.wake()
            self.pipes.pop(link, None)

    def crash(self, host: str) -> None:
        """``host`` dies: its connections reset, its listeners gone, connects refused."""
        self.down.add(host)
        for link in list(self.pipes):
            if host in link:
                self.reset(*link)
        for key, listener in list(self.listeners.items()):
            if listener.host == host:  # (its accept waits forever: the process is dying)
                del self.listeners[key]

    def revive(self, host: str) -> None:
        self.down.discard(host)

    def _live(self, link: tuple[str, str]) -> list[_Pipe]:
        pipes = [p for p in self.pipes.get(link, ()) if not (p.broken or (p.eof and p.reader_gone))]
        self.pipes[link] = pipes
        return pipes
