"""The replica service's data path and gate: data requests beside exclusive control operations.

What runs where (see the store's concurrency contract in :mod:`lhtrio.replica.datapath`):

* **Data path inline.** Read, Write and Unmap are page-cache syscalls of a few KiB: they return
  their reply at once, so the RPC layer answers a whole receive's batch of requests with one send.
  ``lhtrio replica`` serves each connection from a thread of its own (:mod:`lhtrio.net.threaded`),
  so they run in that thread, one at a time under the *data lock* (the store's data path is
  single-threaded). The gate (below) is checked inside the lock, and a control operation takes
  the lock once after setting the gate: a data request already running finishes first, later
  ones wait. Called on the event loop (a test, a stream that is not a socket) it works the same.
* **Flush and FUA in a worker thread.** ``fdatasync`` can take milliseconds; it runs under
  ``trio.to_thread.run_sync`` with a capacity limiter while writes keep flowing (the store allows
  ``flush()`` to overlap the data path).
* **A rebuild fences off older connections.** A failed replica may still hold requests of the
  engine's dropped connection (in its socket buffers, or still in flight in TCP after a
  partition heals) and would run them whenever they arrive: a write that lands after the rebuild
  copied the newer data of its blocks leaves the replica with an older value (found by the
  chaos schedules, docs/reliability.md). Each connection has its own handler
  (:meth:`Gate.for_connection`, the *epoch* it was opened in); ``set_rebuilding`` raises the
  replica's fence and moves the asking connection past it, under the data lock, before the
  call runs; from then on writes, unmaps and zeroes of older connections are refused
  (``CONFLICT``) and change nothing. Reads and flushes are harmless and still answered.
* **Control operations are exclusive.** Snapshot, revert, expand, removal steps and the other
  state changes run one at a time, in a worker thread (they fsync metadata), while the service
  holds its *gate*: data requests (and flushes) that arrive meanwhile wait for the gate instead
  of running inline. This is Longhorn's exclusive replica lock; the fast path pays one
  uncontended lock.
* **Waiting requests keep their order.** What arrives while the gate is held joins one queue,
  in arrival order (taken under the data lock, whichever thread it arrives on), and the gate's
  holder runs the whole queue in that order, under the data lock, as it opens the gate; a
  request arriving while others wait joins the queue too. Two overlapping writes the engine sent
  one after the other therefore land in that order on every replica. (Before, each waiting
  request woke on its own: trio runs a batch of woken tasks in a random order, and a request
  arriving just after the gate opened ran before those still waking, so replicas could apply
  the same two writes in different orders and disagree for good — found by the chaos
  schedules, docs/reliability.md.) The queue runs whether or not its requests' connections
  still wait for the answers: it never stalls on a connection that went away.
  A purge runs step by step: its coalesce steps (which may copy gigabytes) run beside the data
  path; only its short steps (marking, replace, prune, remove) hold the gate.

:class:`Gate` is the base of :class:`~lhtrio.replica.service.ReplicaService`: it answers data
requests and ``Flush`` itself and hands every ``Call`` to :meth:`Gate._call`, which the service
answers from its table of control calls; control calls run their operation inside
:meth:`Gate._exclusive` (or, for a purge's steps, :meth:`Gate._gate_held`).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import trio

from lhtrio.errors import ConflictError, InvalidArgumentError, UnknownCallError
from lhtrio.replica.store import Replica
from lhtrio.wire import Call, Data, Done, Flush, Read, Reply, Request, Unmap, Write
from lhtrio.wire.messages import Zero, ZeroMode

__all__ = ["Gate"]

logger = logging.getLogger(__name__)

_DATA = (Write, Read, Unmap, Zero)
_CHANGING = (Write, Unmap, Zero)
_FENCING_CALL = "set_rebuilding"


class _Connection:
    """One connection's handler: its epoch, and the gate's answer to each of its requests."""

    __slots__ = ("epoch", "gate")

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.epoch = gate._fence

    def __call__(self, request: Request) -> Reply | Awaitable[Reply]:
        return self.gate._handle(request, self)


class _Waiting:
    """A request that arrived while the gate was held: run by the gate's holder, in order."""

    __slots__ = ("conn", "done", "error", "request", "result")

    def __init__(self, request: Request, conn: _Connection | None) -> None:
        self.request = request
        self.conn = conn
        self.done = trio.Event()
        self.result: Reply | Awaitable[Reply] | None = None
        self.error: BaseException | None = None

    async def answer(self) -> Reply:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        result = self.result
        assert result is not None
        return result if isinstance(result, Reply) else await result


class Gate:
    """``handler(request)`` for :func:`lhtrio.net.serve_rpc`: the data path of one open replica
    and the gate of its control operations (see the module docstring)."""

    def __init__(self, replica: Replica, *, limiter: trio.CapacityLimiter | None = None) -> None:
        self.replica = replica
        self._limiter = limiter or trio.CapacityLimiter(4)
        self._gate: trio.Event | None = None
        self._data_lock = threading.Lock()
        self._control = trio.Lock()
        self._fence = 0  # raised by each set_rebuilding (see the module docstring)
        self._waiting: collections.deque[_Waiting] = collections.deque()  # data lock held

    def for_connection(self) -> _Connection:
        """The handler of one new connection (:func:`lhtrio.net.serve_rpc` asks for it)."""
        return _Connection(self)

    def __call__(self, request: Request) -> Reply | Awaitable[Reply]:
        return self._handle(request, None)

    def _fenced(self, conn: _Connection | None, request: Request) -> None:
        """Raise if ``request`` changes data and ``conn`` is older than the fence (data lock
        held)."""
        if conn is not None and conn.epoch != self._fence and request.__class__ in _CHANGING:
            raise ConflictError(
                f"replica {self.replica.instance}: a rebuild into it started on a newer "
                f"connection; this one's {type(request).__name__} is refused and changed nothing"
            )

    def _handle(self, request: Request, conn: _Connection | None) -> Reply | Awaitable[Reply]:
        cls = request.__class__
        if cls in _DATA:
            # Possibly called from a connection's own thread (lhtrio.net.threaded): data requests
            # run one at a time under the data lock, and the gate is checked inside it, so a
            # control operation that set the gate and then took the lock once runs alone.
            lock = self._data_lock
            lock.acquire()  # cheaper than ``with`` on this path
            try:
                if self._gate is None and not self._waiting:
                    self._fenced(conn, request)
                    return self._data(request)  # type: ignore[arg-type]
                return self._wait(request, conn)
            finally:
                lock.release()
        if conn is not None and isinstance(request, Call) and request.name == _FENCING_CALL:
            with self._data_lock:  # no older connection's write runs past this point
                self._fence += 1
                conn.epoch = self._fence
        if cls is Flush:
            with self._data_lock:  # after the writes that wait before it, never before them
                if self._gate is not None or self._waiting:
                    return self._wait(request, conn)
                return self._flush(Done(0), self.replica.capture())
        if isinstance(request, Call):
            return self._call(request)
        raise UnknownCallError(
            f"replica {self.replica.instance} does not handle {type(request).__name__}"
        )

    def _call(self, call: Call) -> Reply | Awaitable[Reply]:
        """Answer a control call (the service's table)."""
        raise UnknownCallError(f"replica {self.replica.instance} has no control calls")

    def _data(self, request: Write | Read | Unmap | Zero) -> Reply | Awaitable[Reply]:
        replica = self.replica
        if request.__class__ is Write:
            replica.write(request.offset, request.data)
            done = Done(len(request.data))
            return self._flush(done, replica.capture()) if request.fua else done
        if request.__class__ is Read:
            buf = bytearray(request.length)
            replica.read_into(request.offset, memoryview(buf))
            return Data(buf)
        if request.__class__ is Zero:
            return Done(self._zero(request))
        return Done(replica.unmap(request.offset, request.length))

    def _zero(self, request: Zero) -> int:
        try:
            mode = ZeroMode(request.mode)
        except ValueError:
            raise InvalidArgumentError(
                f"replica {self.replica.instance} does not know Zero mode {request.mode} "
                f"(it knows {', '.join(f'{m.value} ({m.name})' for m in ZeroMode)})"
            ) from None
        return self.replica.zero(
            request.offset,
            request.length,
            punch=mode is not ZeroMode.ALLOCATE,
            fast=mode is ZeroMode.FAST,
        )

    def _wait(self, request: Request, conn: _Connection | None) -> Awaitable[Reply]:
        """Queue ``request`` behind the gate (data lock held); its answer once it ran."""
        waiting = _Waiting(request, conn)
        self._waiting.append(waiting)
        return waiting.answer()

    def _run_waiting(self) -> None:
        """Run what waited for the gate, in arrival order (data lock held, gate still set)."""
        while self._waiting:
            waiting = self._waiting.popleft()
            request = waiting.request
            try:
                if request.__class__ is Flush:
                    waiting.result = self._flush(Done(0), self.replica.capture())
                else:
                    self._fenced(waiting.conn, request)
                    waiting.result = self._data(request)  # type: ignore[arg-type]
            except Exception as exc:  # answered to its own request, as inline
                waiting.error = exc
            waiting.done.set()

    async def _lock_data(self) -> None:
        """Take the data lock without blocking the loop (a connection's thread may hold it for
        the length of one data request)."""
        if not self._data_lock.acquire(blocking=False):
            await trio.to_thread.run_sync(self._data_lock.acquire, limiter=self._limiter)

    async def _flush(self, reply: Reply, token: int) -> Reply:
        """Flush what was captured as ``token`` (in a worker thread, beside the data path: see
        :meth:`Replica.capture` for why the capture is made on arrival), then answer ``reply``."""
        await trio.to_thread.run_sync(self.replica.flush, token, limiter=self._limiter)
        return reply

    @asynccontextmanager
    async def _exclusive(self, what: str) -> AsyncIterator[None]:
        """One control operation at a time, with the gate held (no data request runs)."""
        if self._control.locked():
            logger.debug(
                "replica %s: %s waits for another control operation", self.replica.instance, what
            )
        async with self._control, self._gate_held():
            yield

    @asynccontextmanager
    async def _gate_held(self) -> AsyncIterator[None]:
        """Data requests that arrive inside wait for the end of the block."""
        gate = self._gate = trio.Event()
        try:
            await self._lock_data()  # a data request running in a connection's thread finished
            self._data_lock.release()
            yield
        finally:
            with trio.CancelScope(shield=True):
                await self._lock_data()
            try:
                self._run_waiting()  # in arrival order, before anything that arrives later
                self._gate = None
            finally:
                self._data_lock.release()
            gate.set()
