"""The progress of a rebuild (adding a replica), as ``replica ls`` and ``replica add`` show it.

The engine's side of a rebuild is :mod:`lhtrio.engine.replica_add`; the volume keeps the current
or last one's tracker (``Volume.rebuild``), whose :meth:`RebuildTracker.record` is what the
control calls answer (:class:`~lhtrio.models.engine.RebuildProgress`). The transfer counters are
the target's (its :class:`~lhtrio.models.replica.SyncStatus`), declared once in
:class:`~lhtrio.models.replica.TransferCounters` and copied field by field from there.
"""

from __future__ import annotations

import time

import attrs
import trio

from lhtrio.models.engine import RebuildProgress, RebuildState
from lhtrio.models.replica import TransferCounters

__all__ = ["RebuildTracker"]


def _counters(value: TransferCounters) -> dict[str, int]:
    """The transfer counters of ``value`` (a target's ``SyncStatus``, say) by name."""
    return {field.name: getattr(value, field.name) for field in attrs.fields(TransferCounters)}


@attrs.define(eq=False)
class RebuildTracker:
    """One rebuild as it runs: its state and counters, when it started and ended, and what the
    engine needs to drive it (``dirty``: the away log's ranges, if it had one; ``snapshot``:
    the disk of the system snapshot taken to start, the target's old head)."""

    address: str
    source: str = ""
    state: RebuildState = RebuildState.STARTING
    counters: TransferCounters = attrs.field(factory=TransferCounters)
    error: str = ""
    started: float = attrs.field(factory=time.time)
    finished: float = 0.0
    dirty: list[tuple[int, int]] | None = None
    snapshot: str = ""
    _changed: trio.Event = attrs.field(factory=trio.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.state not in (RebuildState.DONE, RebuildState.FAILED)

    def update(
        self,
        *,
        state: RebuildState | None = None,
        source: str | None = None,
        counters: TransferCounters | None = None,
        error: str | None = None,
    ) -> None:
        """Change what is given and wake whoever waits for a change (``rebuild_status``)."""
        if state is not None:
            self.state = state
        if source is not None:
            self.source = source
        if counters is not None:
            self.counters = TransferCounters(**_counters(counters))
        if error is not None:
            self.error = error
        if not self.running:
            self.finished = time.time()
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, patience: float) -> None:
        if self.running:
            with trio.move_on_after(patience):
                await self._changed.wait()

    def record(self) -> RebuildProgress:
        """The rebuild as callers read it (``seconds`` so far, or in all once it ended)."""
        end = self.finished or time.time()
        return RebuildProgress(
            address=self.address,
            source=self.source,
            state=self.state,
            seconds=round(end - self.started, 3),
            delta=self.dirty is not None,
            error=self.error,
            **_counters(self.counters),
        )
