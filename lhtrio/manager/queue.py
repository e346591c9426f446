"""The reconcilers' work queue, sans-I/O: which object to reconcile next, and when.

The rules (client-go's workqueue, which Kubernetes controllers and kopf share in spirit):

* **Level-triggered and coalescing.** Adding a name that is already waiting does nothing: many
  changes of one object become one reconcile of its latest state.
* **Never twice at once.** A name being reconciled is not handed out again; if it is added
  meanwhile it is marked *dirty* and waits until :meth:`WorkQueue.done`, then runs once more.
* **Backoff.** :meth:`WorkQueue.failed` puts the name back after a delay that doubles with each
  consecutive failure of that name (from :data:`BACKOFF_MIN` up to :data:`BACKOFF_MAX`);
  :meth:`WorkQueue.done` forgets its failures.

Time is given by the caller (``now``, seconds): the queue keeps no clock and does no I/O, so the
runner (:mod:`lhtrio.manager.runner`) drives it with trio's clock and tests drive it by hand.
"""

from __future__ import annotations

import heapq
from typing import Final

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "WorkQueue"]

BACKOFF_MIN: Final = 0.5
BACKOFF_MAX: Final = 60.0


class WorkQueue:
    def __init__(self, *, backoff_min: float = BACKOFF_MIN, backoff_max: float = BACKOFF_MAX):
        self._ready: list[str] = []  # FIFO of names to hand out now
        self._waiting: set[str] = set()  # in _ready, or scheduled in _later
        self._later: list[tuple[float, int, str]] = []  # (when, seq, name) heap
        self._delayed: dict[str, int] = {}  # name -> seq of its live entry in _later
        self._seq = 0
        self._running: set[str] = set()
        self._dirty: set[str] = set()  # added while running: once more when done
        self._failures: dict[str, int] = {}
        self._min, self._max = backoff_min, backoff_max

    def add(self, name: str) -> None:
        """Reconcile ``name`` (soon, once): now, also if it was scheduled for later."""
        if name in self._running:
            self._dirty.add(name)
        elif name in self._delayed:
            del self._delayed[name]  # its entry in _later is dead now
            self._ready.append(name)
        elif name not in self._waiting:
            self._waiting.add(name)
            self._ready.append(name)

    def add_after(self, name: str, when: float) -> None:
        """Reconcile ``name`` at time ``when`` (unless it is added sooner)."""
        if name in self._running:
            self._dirty.add(name)
        elif name not in self._waiting:
            self._waiting.add(name)
            self._seq += 1
            self._delayed[name] = self._seq
            heapq.heappush(self._later, (when, self._seq, name))

    def get(self, now: float) -> str | None:
        """The next name to reconcile now (it is then running), or None."""
        while self._later and self._later[0][0] <= now:
            _, seq, name = heapq.heappop(self._later)
            if self._delayed.get(name) == seq:
                del self._delayed[name]
                self._ready.append(name)
        while self._ready:
            name = self._ready.pop(0)
            if name in self._waiting:
                self._waiting.discard(name)
                self._running.add(name)
                return name
        return None

    def next_time(self) -> float | None:
        """When the earliest delayed name is due (None: nothing delayed)."""
        while self._later and self._delayed.get(self._later[0][2]) != self._later[0][1]:
            heapq.heappop(self._later)  # brought forward by an add meanwhile
        return self._later[0][0] if self._later else None

    def done(self, name: str) -> None:
        """``name`` was reconciled: its failures are forgotten; again if it was added meanwhile."""
        self._running.discard(name)
        self._failures.pop(name, None)
        if name in self._dirty:
            self._dirty.discard(name)
            self.add(name)

    def failed(self, name: str, now: float) -> float:
        """``name``'s reconcile failed: retry after the backoff (returned, in seconds)."""
        self._running.discard(name)
        count = self._failures.get(name, 0)
        self._failures[name] = count + 1
        delay: float = min(self._max, self._min * 2.0**count)
        if name in self._dirty:  # changed meanwhile: its new state may not fail
            self._dirty.discard(name)
            self.add(name)
        else:
            self.add_after(name, now + delay)
        return delay

    def forget(self, name: str) -> None:
        """``name`` is gone: drop its failures (a running reconcile still ends with done)."""
        self._failures.pop(name, None)

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    def __len__(self) -> int:
        return len(self._waiting)
