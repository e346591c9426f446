"""Zeroing whole blocks of a head over a chain of layers (the data path's ``zero``).

A block of the head reads as zeros once it is a hole *and* no older layer holds data there (the
read index then reads it from below); where an older layer does hold data, zeros must be written
into the head. Never ``fallocate(ZERO_RANGE)``: such ranges look like holes to ``SEEK_DATA``, and
the read index would then read the layer below.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lhtrio.replica import fs
from lhtrio.replica.index import BLOCK_SHIFT, BLOCK_SIZE, ReadIndex

__all__ = ["older_data", "zero_blocks"]

_MASK = BLOCK_SIZE - 1
#: Zeros written at a time.
_CHUNK = 1 << 20


def older_data(layers: Sequence[int], start: int, stop: int) -> list[tuple[int, int]]:
    """The whole blocks of ``[start, stop)`` (block-aligned) that any of ``layers`` holds data
    in (``SEEK_DATA``), as sorted ``(begin, end)`` ranges, possibly overlapping."""
    return sorted(
        (data & ~_MASK, min((data + n + _MASK) & ~_MASK, stop))
        for layer in layers
        for data, n in fs.data_extents(layer, start, stop)
    )


def zero_blocks(
    fd: int, index: ReadIndex, start: int, stop: int, written: Sequence[tuple[int, int]]
) -> None:
    """Make blocks ``[start, stop)`` of head ``fd`` read as zeros: zeros written over the sorted
    ranges ``written``, holes punched everywhere else; ``index`` learns which blocks the head
    now holds."""
    pos = start
    for data, hi in written:
        if hi <= pos:
            continue
        at = max(data, pos)
        fs.punch_hole(fd, pos, at - pos)
        index.forget(pos >> BLOCK_SHIFT, (at - pos) >> BLOCK_SHIFT)
        zeros = memoryview(bytes(min(hi - at, _CHUNK)))
        while at < hi:
            n = min(hi - at, len(zeros))
            done = os.pwrite(fd, zeros[:n], at)
            if done != n:
                fs.write_rest(fd, zeros[:n], at, done)
            index.mark_written(at >> BLOCK_SHIFT, n >> BLOCK_SHIFT)
            at += n
        pos = hi
    fs.punch_hole(fd, pos, stop - pos)
    index.forget(pos >> BLOCK_SHIFT, (stop - pos) >> BLOCK_SHIFT)
