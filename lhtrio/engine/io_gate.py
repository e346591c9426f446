"""The volume's I/O gate: the batches in flight, and the pause that quiesces them.

Snapshots, expansion, revert and a rebuild's steps need the replicas to see no I/O while they
run: :meth:`IoGate.quiesced` pauses the gate (new batches wait, in-flight ones are finished
first), and only one such pause runs at a time. Every batch of the volume's data path
(:mod:`lhtrio.engine.volume`) goes through the gate: the awaitable methods in
:meth:`IoGate.through`, the frontend's fast path by counting itself in ``inflight`` (it declines
while ``paused``) and out with :meth:`IoGate.left` when its fan-out completes, in whichever task
that is. The data path reads and changes the counts directly, as it does
:class:`~lhtrio.engine.iostats.IoCounters`: a few attribute operations per batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["IoGate"]


class IoGate:
    """The batches of one volume let through and not done yet (``inflight``), and the pause of
    :meth:`quiesced` (``paused``, None while I/O runs)."""

    __slots__ = ("_drained", "_exclusive", "inflight", "lone", "paused")

    def __init__(self) -> None:
        self.inflight = 0
        #: the batch started last is one request (see :meth:`Volume._may_spin()
        #: <lhtrio.engine.volume.Volume>`)
        self.lone = False
        #: set when the pause ends: new batches wait for it
        self.paused: trio.Event | None = None
        self._drained = trio.Event()
        self._exclusive = trio.Lock()

    @asynccontextmanager
    async def through(self) -> AsyncIterator[None]:
        """One batch through the gate: waits while it is paused."""
        while self.paused is not None:
            await self.paused.wait()
        self.inflight += 1
        self.lone = False
        try:
            yield
        finally:
            self.left()

    def left(self) -> None:
        """A batch let through the gate is done."""
        self.inflight -= 1
        if not self.inflight and self.paused is not None:
            self._drained.set()  # quiesced() waits for it

    @asynccontextmanager
    async def quiesced(self) -> AsyncIterator[None]:
        """No I/O runs inside: new batches wait, in-flight ones are finished first."""
        async with self._exclusive:
            paused = self.paused = trio.Event()
            try:
                while self.inflight:
                    self._drained = trio.Event()
                    await self._drained.wait()
                yield
            finally:
                self.paused = None
                paused.set()
