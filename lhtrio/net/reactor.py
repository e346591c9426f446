"""A :class:`Reactor`: one task reads many sockets, and a task may wait for answers in place.

**Why.** An engine's 4 KiB write at queue depth 1 wakes the engine once for the client's request
and once for each replica's answer, and the answers rarely arrive together (3 replicas on 2
cores: 0.24 of the writes had two in one wake-up). Each wake-up through trio's scheduler is a
task step: ``epoll_wait``, re-arming the socket's registration, switching into the task, and
about 65 Python calls of trio's machinery, with caches gone cold since the last request. A
trivial echo server measured 38 µs of user CPU per message on trio and 10 µs on a bare
``epoll`` loop, on this project's 2-core VMs. So a volume's replica links share one reactor:

* **A private epoll.** Each link registers its socket and a synchronous callback that reads and
  delivers whatever arrived (:meth:`Reactor.add`). The reactor's own task (:meth:`Reactor.run`)
  waits in trio for the private epoll's descriptor, which is readable while any of its sockets
  is, and runs the callbacks of every ready socket in one task step.
* **Waiting in place** (:meth:`Reactor.wait`). A task that has just sent a lone request and has
  nothing else to do (the NBD frontend after starting the one write its client has in flight)
  waits for the answers right there: ``epoll_wait`` on the private epoll, then the callbacks.
  It can also wait for one more descriptor the reactor does not watch (``wake``: the client's
  connection), so that the client's next request ends the wait and is taken by the same task:
  at queue depth 1 an engine then goes through trio's scheduler once every 16 requests or so
  (the frontend's own bound) instead of four times per request. The wake-ups for the answers
  cost a system call and our own code, not a scheduler round each. This runs *inside* one task
  step, so it is bounded: it stops when the client sends, when its budget (a millisecond or two) is
  spent, before trio's next deadline, and at once if another task is ready to run; anything left
  over is delivered by the reactor's task as usual. Work that arrives meanwhile on other sockets
  of the process waits that long at most, which is why only a process with one volume on it
  (``lhtrio engine``) lingers; an engine inside a node does not (:mod:`lhtrio.engine.volume`).

**Busy polling** (``wait(spin=...)``). Sleeping in ``epoll_wait`` and being woken costs both
sides: the sender's ``send`` runs the wake-up of the sleeper, and the sleeper waits for a CPU to
be given back to it (on these VMs, a halted virtual CPU). A waiter that expects its event within
a few hundred microseconds polls instead (``epoll_wait`` with a zero timeout, and
``sched_yield`` between polls so that any other thread that can run on this CPU does), then
sleeps. The engine decides when (``may_spin``, :meth:`lhtrio.engine.volume.Volume._may_spin`):
for its client's next request, and for the answers to a lone single request (queue depth 1),
never while the replicas work through a batch of several: a polling engine would take a CPU
they need (measured in alternating fio runs with 3 replicas on 2 cores: polling then cost about a
fifth of the 4 KiB QD32 rate). Polling for the next request saved about 90 µs per 4 KiB write at
queue depth 1; polling for a lone request's answers too, another 25-85 µs.

Callbacks run on the event loop in whichever task dispatches them; they must not block and must
not raise (a link turns its own failures into a broken connection).
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import trio

__all__ = ["Reactor", "open_reactor"]


def _always() -> bool:
    return True


class Reactor:
    """Readiness of many sockets, dispatched to callbacks. Get one from :func:`open_reactor`."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}

    def add(self, fd: int, readable: Callable[[], None]) -> None:
        """Call ``readable()`` whenever ``fd`` has data (or EOF, or an error) to read."""
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = readable

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed: the number may be reused)."""
        if self._callbacks.pop(fd, None) is not None:
            with contextlib.suppress(OSError):  # closed already: the kernel dropped it
                self._epoll.unregister(fd)

    def _dispatch(self, events: list[tuple[int, int]], wake: int = -1) -> bool:
        """Run the callbacks of ``events``; True if ``wake`` is among them."""
        callbacks, woken = self._callbacks, False
        for fd, _ in events:
            if fd == wake:
                woken = True
            elif (readable := callbacks.get(fd)) is not None:  # (None: removed meanwhile)
                readable()
        return woken

    async def run(self) -> NoReturn:
        """Dispatch readiness until cancelled: the reactor's own task."""
        epoll = self._epoll
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            self._dispatch(epoll.poll(0))

    def wait(
        self,
        budget: float,
        *,
        wake: int = -1,
        spin: float = 0.0,
        may_spin: Callable[[], bool] = _always,
    ) -> bool:
        """Dispatch readiness in the calling task for at most ``budget`` seconds (see the module
        docstring), or until descriptor ``wake`` (one the reactor does not watch: a client's
        connection) is readable; True in that case (``wake`` is not read).

        ``spin``: poll without sleeping for up to that many seconds, from entry and again from
        each event on, as long as ``may_spin()`` says so (asked then), giving the CPU to any
        other runnable thread between polls (``sched_yield``); only then sleep in
        ``epoll_wait`` for the rest of the budget (see "Busy polling" in the module docstring).

        Waits only if no other task is ready to run, and never past trio's next deadline; both
        are checked once, on entry (a task that a callback makes runnable waits for the budget
        at most). Returns early rather than late; never raises for lack of time.
        """
        statistics = trio.lowlevel.current_statistics()
        if statistics.tasks_runnable:
            return False
        timeout = min(budget, statistics.seconds_to_next_deadline)
        if timeout <= 0:
            return False
        monotonic, epoll = time.monotonic, self._epoll
        end = monotonic() + timeout
        spin_until = min(monotonic() + spin, end) if spin and may_spin() else 0.0
        if wake >= 0:
            epoll.register(wake, select.EPOLLIN)
        try:
            while True:
                now = monotonic()
                if now < spin_until:
                    if not (events := epoll.poll(0)):
                        os.sched_yield()
                        continue
                elif now >= end or not (events := epoll.poll(end - now)):
                    return False
                if self._dispatch(events, wake):
                    return True
                spin_until = min(monotonic() + spin, end) if spin and may_spin() else 0.0
        finally:
            if wake >= 0:
                epoll.unregister(wake)

    @property
    def watching(self) -> int:
        """How many descriptors are watched."""
        return len(self._callbacks)

    def close(self) -> None:
        fd = self._epoll.fileno()
        if fd >= 0:
            trio.lowlevel.notify_closing(fd)
            self._epoll.close()


@contextlib.asynccontextmanager
async def open_reactor() -> AsyncIterator[Reactor]:
    """A reactor with its task running until the block ends.

    The task is shielded from cancellation around it, like the replica links it serves: an
    engine being cancelled still flushes through them. Open it *outside* the nursery of the
    connections that use it; they remove their sockets when they close, before the reactor goes.
    """
    reactor = Reactor()
    running = trio.CancelScope(shield=True)

    async def run() -> None:
        with running:
            await reactor.run()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            try:
                yield reactor
            finally:
                running.cancel()
    finally:
        reactor.close()
