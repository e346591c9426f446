"""Away logs: which parts of the volume a failed replica may lack (pure logic, no trio, no I/O).

A replica that fails and comes back (restarted after a crash, a network cut healed) holds most of
the volume already. A rebuild that compares every block of its files costs as much as copying
them (both ends hash everything); knowing *where* it can differ makes a delta rebuild cost what
changed. The engine sees every write, so it keeps, per failed replica, a bitmap of the 4 KiB
blocks (one bit each: 32 KiB per GiB of volume, only while a replica is away) that it may lack:

* what was written, unmapped or zeroed since the last flush that completed before the failure —
  a crashed replica may have lost that (its page cache died with it), including the failing
  batch; tracked in 64 KiB units (:data:`UNIT`), a set that every completed flush empties;
* every block written, unmapped or zeroed while it is away.

Everything else the returning replica holds is what the others hold: snapshot files never change
after they are taken except through purge (coalesce), revert and expansion, and those discard
every away log (:meth:`DirtyTracker.forget`), as do salvage and an engine restart (the logs live in
memory). Where the replica's data sits does not matter: every write it missed or may have lost
went to its head, which the rebuild's system snapshot turns into a snapshot file; a rebuild with a
log reads the logged blocks of that file outright, and takes its other files as they are (holes
the source has are still punched); without a log it compares everything.

Cost on the data path: a set insertion per write (per 64 KiB written) and, while a replica is
away, a few bit operations per write and away replica.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from lhtrio.wire import Flush, Request, Unmap, Write
from lhtrio.wire.messages import Zero

__all__ = ["BLOCK", "UNIT", "DirtyTracker"]

BLOCK_SHIFT: Final = 12
BLOCK: Final = 1 << BLOCK_SHIFT
UNIT_SHIFT: Final = 16
UNIT: Final = 1 << UNIT_SHIFT
_PER_UNIT: Final = UNIT // BLOCK // 8  # bytes of an away bitmap per unit
MAX_RUNS: Final = 50_000  # a log more fragmented than this is not worth sending: compare all
_NONZERO = re.compile(rb"[^\x00]+")


def _mark(bits: bytearray, first: int, last: int) -> None:
    """Set the bits of blocks ``first..last``."""
    lo, hi = first >> 3, last >> 3
    if lo == hi:
        bits[lo] |= (0xFF << (first & 7)) & (0xFF >> (7 - (last & 7)))
        return
    bits[lo] |= (0xFF << (first & 7)) & 0xFF
    bits[lo + 1 : hi] = b"\xff" * (hi - lo - 1)
    bits[hi] |= 0xFF >> (7 - (last & 7))


def _runs(bits: bytes | bytearray) -> list[tuple[int, int]] | None:
    """The set bits as ``(first block, count)`` runs, in order; None beyond MAX_RUNS."""
    runs: list[tuple[int, int]] = []
    for match in _NONZERO.finditer(bits):
        base = match.start() << 3
        for i, byte in enumerate(match.group()):
            for bit in range(8):
                if byte >> bit & 1:
                    block = base + (i << 3) + bit
                    if runs and runs[-1][0] + runs[-1][1] == block:
                        runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                    else:
                        if len(runs) == MAX_RUNS:
                            return None
                        runs.append((block, 1))
    return runs


class DirtyTracker:
    """Unflushed units of the volume and the away logs of failed replicas."""

    def __init__(self, size: int) -> None:
        self._blocks = (size + BLOCK - 1) >> BLOCK_SHIFT
        self._unflushed: set[int] = set()
        self._flushing: list[set[int]] = []
        self._away: dict[str, bytearray] = {}

    def note(self, requests: Sequence[Request]) -> set[int] | None:
        """Record a batch about to be sent; a token if it flushes (give it to :meth:`flushed`)."""
        token = None
        add = self._unflushed.add
        logs = self._away.values()
        for request in requests:
            cls = request.__class__
            if cls is Write:
                start = request.offset  # type: ignore[attr-defined]
                end = start + len(request.data) - 1  # type: ignore[attr-defined]
            elif cls is Unmap or cls is Zero:  # (a Zero refused by a fast mode: noted all the same)
                start = request.offset  # type: ignore[attr-defined]
                end = start + request.length - 1  # type: ignore[attr-defined]
            elif cls is Flush:
                token = self._unflushed
                self._flushing.append(token)
                self._unflushed = set()
                add = self._unflushed.add
                continue
            else:
                continue
            if end < start:
                continue
            first, last = start >> UNIT_SHIFT, end >> UNIT_SHIFT
            if first == last:
                add(first)  # the common case: no range object per write
            else:
                self._unflushed.update(range(first, last + 1))
            if logs:
                for bits in logs:
                    _mark(bits, start >> BLOCK_SHIFT, end >> BLOCK_SHIFT)
        return token

    def flushed(self, token: set[int]) -> None:
        """The flush of :meth:`note`'s ``token`` was answered by every replica still writing."""
        for i, pending in enumerate(self._flushing):
            if pending is token:
                del self._flushing[i]
                return

    def away(self, address: str) -> None:
        """The replica at ``address`` failed: start its log with what it may not have flushed."""
        bits = bytearray((self._blocks + 7) >> 3)
        for units in (self._unflushed, *self._flushing):
            for unit in units:
                bits[unit * _PER_UNIT : (unit + 1) * _PER_UNIT] = b"\xff" * _PER_UNIT
        del bits[(self._blocks + 7) >> 3 :]
        self._away[address] = bits

    def take(self, address: str) -> list[tuple[int, int]] | None:
        """Remove ``address``'s log; its blocks as byte ranges ``(offset, length)``, or None
        (no log, or too fragmented to be worth it)."""
        bits = self._away.pop(address, None)
        if bits is None:
            return None
        runs = _runs(bits)
        if runs is None:
            return None
        return [(block << BLOCK_SHIFT, count << BLOCK_SHIFT) for block, count in runs]

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
        self._blocks = (size + BLOCK - 1) >> BLOCK_SHIFT
