"""Simulated processes: a task tree on a simulated host that can be killed and started again,
and the trace every simulated run keeps of what happened to it, in order."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from lhtrio.sim.network import HOST, SimNetwork

__all__ = ["SimProcess", "Trace"]

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class Trace:
    """What a run did, one line per event, stamped with simulated time; its hash says whether
    two runs of one seed did exactly the same."""

    lines: list[str] = attrs.field(factory=list)
    keep: bool = True

    def add(self, what: str) -> None:
        self.lines.append(f"{trio.current_time():.6f} {what}")

    def digest(self) -> str:
        h = hashlib.sha256()
        for line in self.lines:
            h.update(line.encode())
            h.update(b"\n")
        return h.hexdigest()


@attrs.define(eq=False)
class SimProcess:
    """One process (a replica, an engine, a node) on ``host``: :meth:`start` runs ``target`` in a
    cancel scope of its own in ``nursery``; :meth:`kill` is SIGKILL as the network sees it (every
    connection of the host reset at once, then the tasks cancelled); :meth:`start` again is a
    restart. A process that ends with an error records it and stays down."""

    name: str
    host: str
    net: SimNetwork
    trace: Trace
    target: Callable[..., Awaitable[Any]]
    scope: trio.CancelScope | None = None
    ended: trio.Event = attrs.field(factory=trio.Event)
    error: str = ""
    started: Any = None

    @property
    def running(self) -> bool:
        return self.scope is not None

    async def start(self, nursery: trio.Nursery) -> Any:
        """Start it (the host comes back up); returns what ``target`` reported as started, or
        None if it failed to start (the error is in :attr:`error` and the trace)."""
        assert self.scope is None, f"{self.name} is running"
        self.net.revive(self.host)
        self.ended, self.error = trio.Event(), ""
        try:
            self.started = await nursery.start(self._run)
        except Exception as exc:  # (expected failures: a replica that cannot open, ...)
            self.error = f"{type(exc).__name__}: {exc}"
            self.trace.add(f"{self.name} failed to start: {self.error}")
            return None
        self.trace.add(f"{self.name} started")
        return self.started

    async def _run(self, *, task_status: trio.TaskStatus[Any]) -> None:
        HOST.set(self.host)
        status = _Status(task_status)
        with trio.CancelScope() as scope:
            self.scope = scope
            try:
                await self.target(task_status=status)
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                if not status.done:
                    raise
                self.trace.add(f"{self.name} ended: {self.error}")
                logger.info("%s ended: %s", self.name, self.error)
            finally:
                self.scope = None
                self.ended.set()

    async def kill(self) -> None:
        """Kill it (if running) and wait until its tasks are gone."""
        if self.scope is None:
            return
        self.net.crash(self.host)
        self.scope.cancel()
        await self.ended.wait()
        self.trace.add(f"{self.name} killed")


class _Status(trio.TaskStatus[Any]):
    """A task status that remembers whether ``started`` was called."""

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self.inner, self.done = inner, False

    def started(self, value: Any = None) -> None:
        self.done = True
        self.inner.started(value)
