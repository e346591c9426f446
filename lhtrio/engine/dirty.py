"""Away logs: which parts of the volume a failed replica may lack (pure logic, no trio, no I/O).

A replica that fails and comes back (restarted after a crash, a network cut healed) holds most of
the volume already. A rebuild that compares every block of its files costs as much as copying
them (both ends hash everything); knowing *where* it can differ makes a delta rebuild cost what
changed. The engine sees every write, so it keeps, per failed replica, a bitmap of 2 MiB regions
(:data:`REGION`) that the replica may lack:

* regions written or unmapped since the last flush that completed before the failure — a crashed
  replica may have lost those (its page cache died with it), including the failing batch itself;
* every region written or unmapped while it is away.

Everything else the returning replica holds is what the others hold: snapshot files never change
after they are taken except through purge (coalesce), revert and expansion, and those discard
every away log (:meth:`DirtyTracker.forget`), as do salvage and an engine restart (the logs live in
memory). A rebuild into a replica with a log compares only the logged regions of the files it
already has (:mod:`lhtrio.engine.rebuild`); without one it compares everything, as before.

Cost on the data path: one set insertion per write and one byte store per write per away log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from lhtrio.wire import Flush, Request, Unmap, Write

__all__ = ["REGION", "DirtyTracker"]

REGION_SHIFT: Final = 21
REGION: Final = 1 << REGION_SHIFT
MAX_RUNS: Final = 50_000  # a log more fragmented than this is not worth sending: compare all


class DirtyTracker:
    """Unflushed regions of the volume and the away logs of failed replicas."""

    def __init__(self, size: int) -> None:
        self._regions = (size + REGION - 1) >> REGION_SHIFT
        self._unflushed: set[int] = set()
        self._flushing: list[set[int]] = []
        self._away: dict[str, bytearray] = {}

    def note(self, requests: Sequence[Request]) -> set[int] | None:
        """Record a batch about to be sent; a token if it flushes (give it to :meth:`flushed`)."""
        token = None
        unflushed = self._unflushed
        logs = self._away.values()
        for request in requests:
            cls = request.__class__
            if cls is Write:
                start = request.offset  # type: ignore[attr-defined]
                length = len(request.data)  # type: ignore[attr-defined]
            elif cls is Unmap:
                start = request.offset  # type: ignore[attr-defined]
                length = request.length  # type: ignore[attr-defined]
            elif cls is Flush:
                token = self._unflushed
                self._flushing.append(token)
                unflushed = self._unflushed = set()
                continue
            else:
                continue
            if length <= 0:
                continue
            first = start >> REGION_SHIFT
            last = (start + length - 1) >> REGION_SHIFT
            for region in range(first, last + 1):
                unflushed.add(region)
                for bits in logs:
                    bits[region] = 1
        return token

    def flushed(self, token: set[int]) -> None:
        """The flush of :meth:`note`'s ``token`` was answered by every replica still writing."""
        for i, pending in enumerate(self._flushing):
            if pending is token:
                del self._flushing[i]
                return

    def away(self, address: str) -> None:
        """The replica at ``address`` failed: start its log with what it may not have flushed."""
        bits = bytearray(self._regions)
        for regions in (self._unflushed, *self._flushing):
            for region in regions:
                bits[region] = 1
        self._away[address] = bits

    def take(self, address: str) -> list[tuple[int, int]] | None:
        """Remove ``address``'s log; its regions as byte ranges ``(offset, length)``, or None
        (no log, or too fragmented to be worth it)."""
        bits = self._away.pop(address, None)
        if bits is None:
            return None
        runs: list[tuple[int, int]] = []
        pos = bits.find(1)
        while pos >= 0:
            end = bits.find(0, pos)
            if end < 0:
                end = len(bits)
            runs.append((pos << REGION_SHIFT, (end - pos) << REGION_SHIFT))
            if len(runs) > MAX_RUNS:
                return None
            pos = bits.find(1, end)
        return runs

    def has(self, address: str) -> bool:
        return address in self._away

    def forget(self, address: str | None = None) -> None:
        """Drop ``address``'s log, or every log (the files changed in ways no log records)."""
        if address is None:
            self._away.clear()
        else:
            self._away.pop(address, None)

    def resize(self, size: int) -> None:
        """The volume grew: every log is dropped (expansion rewrites the chain)."""
        self._away.clear()
        self._regions = (size + REGION - 1) >> REGION_SHIFT
