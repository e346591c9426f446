"""The progress of a rebuild (adding a replica), as ``replica ls`` and ``replica add`` show it.

The engine's side of a rebuild is :mod:`lhtrio.engine.replica_add`; the volume keeps the current
or last one's progress (``Volume.rebuild``) for the control calls to show.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import trio

__all__ = ["COUNTERS", "RebuildProgress"]

#: The target's transfer counters (``sync_status``) that a rebuild's progress mirrors.
COUNTERS = (
    "files",
    "files_done",
    "skipped_files",
    "total_bytes",
    "done_bytes",
    "sent_bytes",
    "compared_bytes",  # found equal by comparing digests
    "known_bytes",  # known equal from the away log (a delta rebuild)
    "skipped_bytes",  # in files whose recorded checksum matched
)


@attrs.define(eq=False)
class RebuildProgress:
    """The progress of one rebuild, as ``replica ls`` and ``replica add`` show it."""

    address: str
    source: str = ""
    state: str = "starting"  # starting, syncing, verifying, done, failed
    files: int = 0
    files_done: int = 0
    skipped_files: int = 0
    total_bytes: int = 0
    done_bytes: int = 0
    sent_bytes: int = 0
    compared_bytes: int = 0
    known_bytes: int = 0
    skipped_bytes: int = 0
    error: str = ""
    started: float = attrs.field(factory=time.time)
    finished: float = 0.0
    dirty: list[tuple[int, int]] | None = None  # the away log's ranges, if it had one
    snapshot: str = ""  # the system snapshot (file) taken to start: the target's old head
    _changed: trio.Event = attrs.field(factory=trio.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.state not in ("done", "failed")

    def update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        if not self.running:
            self.finished = time.time()
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, patience: float) -> None:
        if self.running:
            with trio.move_on_after(patience):
                await self._changed.wait()

    def as_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "address": self.address,
            "source": self.source,
            "state": self.state,
            **{key: getattr(self, key) for key in COUNTERS},
            "seconds": round(end - self.started, 3),
            "delta": self.dirty is not None,
            "error": self.error,
        }
