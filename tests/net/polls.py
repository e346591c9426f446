"""Record what a reactor's waits do: each ``epoll.poll`` timeout (0: a poll that did not sleep)."""

from __future__ import annotations

from collections.abc import Callable

from lhtrio.net.reactor import Reactor


class RecordedPolls:
    """Stands in for ``reactor``'s epoll and records each ``poll`` timeout, and beside it what
    ``note()`` says at that moment (a test's view of the state: batches answered, say)."""

    def __init__(self, reactor: Reactor, note: Callable[[], object] = lambda: None) -> None:
        self.reactor = reactor
        self.inner = reactor._epoll
        self.note = note
        self.timeouts: list[float] = []
        self.notes: list[object] = []
        reactor._epoll = self  # type: ignore[assignment]

    def restore(self) -> None:
        """Give the reactor its own epoll back (recording stops)."""
        self.reactor._epoll = self.inner

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        self.timeouts.append(timeout)
        self.notes.append(self.note())
        return self.inner.poll(timeout)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)
