"""The engine's frontend, as the engine sees it: a task it starts, and stops gracefully.

The engine does not know which frontend it serves (NBD today): the composition root passes a
:class:`Frontend`, a callable that serves a :class:`~lhtrio.engine.volume.Volume` and reports
where through ``task_status``. :class:`FrontendControl` starts and stops it.

**Stopping is graceful, not a cancellation.** Cancelling the frontend's task would end its
connections with requests in flight: the client gets EIO for writes that may well have landed
(or worse, that did). So :meth:`FrontendControl.stop` sets the frontend's ``shutdown`` event and
lets the frontend drain on its own terms (no new requests, the ones in flight finished and
answered, then close: :func:`lhtrio.frontend.nbd.server.serve_nbd`), waits for it to return,
and only then flushes the volume. A frontend that outlives :data:`DRAIN_DEADLINE` is cancelled,
the backstop for one that ignores its ``shutdown``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from lhtrio.models.volume import FrontendState

if TYPE_CHECKING:
    from lhtrio.engine.volume import Volume

__all__ = ["DRAIN_DEADLINE", "Frontend", "FrontendControl", "FrontendState"]

#: The longest a frontend may take to drain once asked to stop: the last RW replica's stall
#: timeout (16 s) plus room to answer.
DRAIN_DEADLINE: Final = 25.0


class Frontend(Protocol):
    def __call__(
        self, volume: Volume, *, shutdown: trio.Event, task_status: trio.TaskStatus[str] = ...
    ) -> Awaitable[None]:
        """Serve ``volume`` until cancelled or until ``shutdown`` is set; then stop taking
        requests, finish and answer those in flight, and return."""


@attrs.define(eq=False)
class FrontendControl:
    """Starts and stops the frontend task; ``address`` is where it serves while running."""

    frontend: Frontend | None
    volume: Volume
    nursery: trio.Nursery
    address: str = ""
    _scope: trio.CancelScope | None = None
    _shutdown: trio.Event = attrs.field(factory=trio.Event)
    _ended: trio.Event = attrs.field(factory=trio.Event)

    @property
    def running(self) -> bool:
        return self._scope is not None

    @property
    def state(self) -> FrontendState:
        if self._scope is None:
            return FrontendState.STOPPED
        return FrontendState.STOPPING if self._shutdown.is_set() else FrontendState.RUNNING

    async def start(self) -> None:
        if self.frontend is None or self._scope is not None:
            return
        self._shutdown, self._ended = trio.Event(), trio.Event()
        self.address = await self.nursery.start(self._run, self._shutdown, self._ended)

    async def _run(
        self, shutdown: trio.Event, ended: trio.Event, task_status: trio.TaskStatus[str]
    ) -> None:
        assert self.frontend is not None
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await self.frontend(self.volume, shutdown=shutdown, task_status=task_status)
        finally:
            self._scope = None
            self.address = ""
            ended.set()

    async def stop(self) -> None:
        """Stop serving: no new requests, those in flight finished and answered (bounded by
        :data:`DRAIN_DEADLINE`), then flush every replica. Idempotent; concurrent callers all
        return once the frontend has ended."""
        scope, ended = self._scope, self._ended
        if scope is None:
            return
        self._shutdown.set()
        with trio.move_on_after(DRAIN_DEADLINE):
            await ended.wait()
        scope.cancel()  # (the frontend ignored its deadline: end it)
        await ended.wait()
        await self.volume.flush()
