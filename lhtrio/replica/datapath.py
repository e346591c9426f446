"""The replica's data path: read, write, unmap, zero, flush and the revision counter.

:class:`DataPath`, the base of :class:`~lhtrio.replica.store.Replica`, does no networking and
knows nothing of trio: the service decides which calls run on the event loop (the data path:
page-cache ``pread``/``pwrite`` of a few KiB) and which in a worker thread (``flush``, snapshots,
purge, checksums). It reads and writes a :class:`~lhtrio.replica.layers.Layers`, keeping direct
references to its descriptor list, read index and lock and caching the head's descriptor, the
size and the unmap depth (:meth:`DataPath._refresh`): no more lookups per I/O than before.

Data path
    4 KiB blocks. An aligned write is one ``os.pwrite`` of the caller's buffer into the head; an
    unaligned write reads the partial first/last blocks through the chain, patches them and writes
    ``[first block, middle of the caller's buffer, last block]`` with one ``os.pwritev`` — the head
    only ever holds whole blocks. A read groups blocks by the layer that holds them
    (:class:`~lhtrio.replica.index.ReadIndex`) and ``os.preadv``\\ s each run straight into the
    caller's buffer; blocks no layer holds read as zeros (a hole of the oldest layer, or past the
    end of a layer that predates an expansion). Unmap follows Longhorn (``longhorn-facts.md`` §2.6):
    the range shrinks inwards to 4 KiB alignment, requests under 4 KiB are ignored, holes are
    punched in the head and in every *removed* ancestor directly below it that has no other child.
    Trimmed blocks then read as whatever the chain below the trimmed layers holds.

Revision counter — the guarantee
    The counter lives in memory: +1 for every write and every unmap, counted once the data is in
    the page cache. ``flush()`` — also run by ``close()`` and first thing by every snapshot-type
    operation — does, serialised against other flushes:

    1. under the data-path lock, capture ``C`` = the counter and ``F`` = the files written since
       the previous flush (the data path starts a new set);
    2. ``fdatasync`` every file in ``F``;
    3. persist ``C`` in ``revision.counter`` (temp file, fsync, rename, directory fsync).

    **Guarantee: the persisted counter never exceeds the number of writes and unmaps that are
    durable.** A write counted in ``C`` finished its ``pwrite`` before step 1 and put its file in
    ``F`` (or in an earlier set, synced by an earlier flush that completed before this one
    started), so step 2 made it durable before step 3 wrote ``C``.

    Consequences, for replicas A and B that started with equal counters:

    - if B stopped receiving writes at write *k* (it failed it, or was cut off: the engine sends
      nothing more to a replica that failed a write) and A acknowledged write *k* and then
      completed a flush, A's persisted counter is higher than B's from then on, whatever else
      happens to either, kills included: B never counted write *k*, A persisted it;
    - if both completed the same flushes and B missed any write that one of those flushes covered,
      B's persisted counter is lower.

    A replica killed between flushes loses the counts since its last flush (the counter is a lower
    bound): it may be judged stale although its data survived, and is rebuilt — safe. It never
    gains counts for data it does not have. This costs nothing per write, where Longhorn's
    synchronous per-write counter update halves write IOPS.

    A failed ``fdatasync`` makes the replica failed for good: every later flush, snapshot-type
    operation and close raises StorageError and the counter is never persisted again (after such
    an error Linux may drop the dirty pages, and a retry would report success for lost data).

Concurrency contract
    ``read_into``/``read``/``write``/``unmap`` are called from one thread at a time (the service
    runs them under its data lock, in a connection's thread or on the event loop).
    ``flush()`` may run in another thread at the same time, and so may ``coalesce`` (it only
    copies blocks into a removed snapshot that its child shadows, so no read sees the change, and
    touches no in-memory structure of the data path, only the disk's recorded size, under the
    flush lock; an unmap racing it leaves zeros or old data in a trimmed range, both allowed).
    ``prune`` may not: it punches the parent where the head has data, and must see only head
    data that its own flush made durable. Every other operation
    (snapshot, revert, expand, replace, remove_disk, purge, close) must not overlap with
    data-path calls — the caller holds the equivalent of Longhorn's exclusive engine lock — but
    it may be called from any one thread; it serialises itself against ``flush()``. ``checksum()``
    reads a snapshot file and may overlap with the data path.

No global state, no I/O in ``__init__``: ``Replica.create`` and ``Replica.open`` do the I/O.
"""

from __future__ import annotations

import os
import threading
from typing import NoReturn

import attrs

from lhtrio.errors import (
    InvalidArgumentError,
    NotSupportedError,
    OutOfRangeError,
    ShuttingDownError,
    StorageError,
)
from lhtrio.replica import fs
from lhtrio.replica import meta as metalib
from lhtrio.replica.index import BLOCK_SHIFT, BLOCK_SIZE, ReadIndex
from lhtrio.replica.intent import REGION_SHIFT, WriteIntent
from lhtrio.replica.layers import Layers
from lhtrio.replica.names import REVISION_COUNTER
from lhtrio.replica.zeroing import older_data, zero_blocks

__all__ = ["DataPath"]

_MASK = BLOCK_SIZE - 1


@attrs.define(eq=False)
class DataPath:
    """The data path and the flush of one open replica (see the module docstring).

    Built by :class:`~lhtrio.replica.store.Replica`'s ``create``/``open``; ``layers`` and
    ``intent`` are owned from then on (``close`` releases them).
    """

    path: str
    volume: str
    instance: str
    _layers: Layers = attrs.field(alias="layers")
    _counter: int = attrs.field(alias="counter")
    _intent: WriteIntent = attrs.field(alias="intent")
    _recent: bytearray = attrs.field(init=False, repr=False)  # the intent's fast-path view
    _persisted: int = attrs.field(init=False)
    _fds: list[int] = attrs.field(init=False, repr=False)  # the layers' (shared, changed in place)
    _index: ReadIndex = attrs.field(init=False, repr=False)  # the layers' (shared)
    _loc: bytearray = attrs.field(init=False, repr=False)
    _head_fd: int = attrs.field(init=False)
    _limit: int = attrs.field(init=False)  # volume size while open, -1 once closed
    _dirty_fds: set[int] = attrs.field(init=False, factory=set)
    # (token, counter, files) a flush must make durable, in the order they were captured
    _captures: list[tuple[int, int, set[int]]] = attrs.field(init=False, factory=list)
    _tokens: int = attrs.field(init=False, default=0)
    _unmap_layers: int = attrs.field(init=False, default=1)
    _head_layer: int = attrs.field(init=False, default=1)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)
    _flush_lock: threading.RLock = attrs.field(init=False, repr=False)  # the layers' lock
    _scratch: memoryview = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        layers = self._layers
        self._persisted = self._counter
        self._fds = layers.fds
        self._index = layers.index
        self._loc = self._index.loc
        self._flush_lock = layers.lock
        self._scratch = memoryview(bytearray(2 * BLOCK_SIZE))
        self._recent = self._intent.recent
        layers.set_flush(self._flush_locked)
        self._refresh()

    def _refresh(self) -> None:
        """Re-read what is cached from the layers (after a structural change, data path quiet);
        forget closed descriptors (none: every structural operation flushes first)."""
        layers = self._layers
        if layers.closed:
            return
        layers.check()
        self._head_fd = self._fds[-1]
        self._head_layer = self._index.layers
        self._limit = layers.size
        self._unmap_layers = layers.unmap_layers()
        with self._lock:
            self._dirty_fds.intersection_update(self._fds)
            for _, _, files in self._captures:
                files.intersection_update(self._fds)

    # -- lifetime ---------------------------------------------------------------------------------

    def _release(self) -> None:
        """Close every file (under the flush lock): the replica is closed from now on."""
        self._limit = -1
        self._dirty_fds.clear()
        self._captures.clear()
        self._intent.close()
        self._layers.close()

    @property
    def closed(self) -> bool:
        return self._layers.closed

    # -- data path --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._layers.size

    def read_into(self, offset: int, buf: memoryview) -> None:
        """Fill ``buf`` (a writable byte memoryview) with the volume's bytes at ``offset``."""
        n = buf.nbytes
        end = offset + n
        if offset < 0 or end > self._limit:
            self._range_error("read", offset, n)
        if n == 0:
            return
        first = offset >> BLOCK_SHIFT
        last = (end - 1) >> BLOCK_SHIFT
        fds = self._fds
        try:
            if first == last:
                fd = fds[self._loc[first] or self._index.lookup(first)]
                got = os.preadv(fd, [buf], offset)
                if got != n:
                    fs.read_rest(fd, buf, offset, got)
                return
            for layer, block, count in self._index.runs(first, last - first + 1):
                lo = block << BLOCK_SHIFT
                lo = max(lo, offset)
                hi = min((block + count) << BLOCK_SHIFT, end)
                part = buf[lo - offset : hi - offset]
                fd = fds[layer]
                got = os.preadv(fd, [part], lo)
                if got != hi - lo:
                    fs.read_rest(fd, part, lo, got)
        except OSError as exc:
            raise fs.os_error(
                exc, f"read of {n} bytes at {offset} in replica {self.path}"
            ) from None

    def read(self, offset: int, length: int) -> bytes:
        """The volume's ``length`` bytes at ``offset`` (a copy; prefer :meth:`read_into`)."""
        if length < 0:
            self._range_error("read", offset, length)
        buf = bytearray(length)
        self.read_into(offset, memoryview(buf))
        return bytes(buf)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` (a contiguous byte buffer) at ``offset`` into the head."""
        n = len(data)
        if offset < 0 or offset + n > self._limit:
            self._range_error("write", offset, n)
        if n == 0:
            return
        if (
            self._recent.find(0, offset >> REGION_SHIFT, ((offset + n - 1) >> REGION_SHIFT) + 1)
            >= 0
        ):
            self._intent.note(offset, n)  # not written in this generation: mark it durably first
        fd = self._head_fd
        try:
            if not (offset | n) & _MASK:
                done = os.pwrite(fd, data, offset)
                if done != n:
                    fs.write_rest(fd, memoryview(data), offset, done)
                if n == BLOCK_SIZE:
                    self._loc[offset >> BLOCK_SHIFT] = self._head_layer
                else:
                    self._index.mark_written(offset >> BLOCK_SHIFT, n >> BLOCK_SHIFT)
            else:
                self._write_unaligned(fd, offset, memoryview(data))
        except OSError as exc:
            # The head may hold part of the data now: let those blocks be looked up again.
            first = offset >> BLOCK_SHIFT
            self._index.forget(first, ((offset + n - 1) >> BLOCK_SHIFT) - first + 1)
            raise fs.os_error(
                exc, f"write of {n} bytes at {offset} in replica {self.path}"
            ) from None
        lock = self._lock
        lock.acquire()  # cheaper than ``with`` on this path
        try:
            self._counter += 1
            self._dirty_fds.add(fd)
        finally:
            lock.release()

    def _write_unaligned(self, fd: int, offset: int, view: memoryview) -> None:
        n = len(view)
        end = offset + n
        first = offset >> BLOCK_SHIFT
        last = (end - 1) >> BLOCK_SHIFT
        start = first << BLOCK_SHIFT
        head_cut = offset - start
        if first == last:
            block = self._scratch[:BLOCK_SIZE]
            self.read_into(start, block)
            block[head_cut : head_cut + n] = view
            iov = [block]
        else:
            iov = []
            mid_from = 0
            mid_to = n
            if head_cut:
                block = self._scratch[:BLOCK_SIZE]
                self.read_into(start, block)
                mid_from = BLOCK_SIZE - head_cut
                block[head_cut:] = view[:mid_from]
                iov.append(block)
            tail_len = end & _MASK
            if tail_len:
                mid_to = n - tail_len
            if mid_to > mid_from:
                iov.append(view[mid_from:mid_to])
            if tail_len:
                tail = self._scratch[BLOCK_SIZE:]
                self.read_into(last << BLOCK_SHIFT, tail)
                tail[:tail_len] = view[mid_to:]
                iov.append(tail)
        total = (last - first + 1) << BLOCK_SHIFT
        done = os.pwritev(fd, iov, start)
        if done != total:
            fs.write_rest(fd, memoryview(b"".join(iov)), start, done)
        self._index.mark_written(first, last - first + 1)

    def unmap(self, offset: int, length: int) -> int:
        """Trim ``[offset, offset+length)``; return the number of bytes of disk space freed."""
        if offset < 0 or length < 0 or offset + length > self._limit:
            self._range_error("unmap", offset, length)
        start = (offset + _MASK) & ~_MASK
        stop = (offset + length) & ~_MASK
        freed = 0
        fds = self._fds[len(self._fds) - self._unmap_layers :]
        if length >= BLOCK_SIZE and stop > start:
            self._intent.note(start, stop - start)
            try:
                for fd in fds:
                    before = fs.allocated_bytes(fd)
                    fs.punch_hole(fd, start, stop - start)
                    freed += before - fs.allocated_bytes(fd)
            except OSError as exc:
                raise fs.os_error(exc, f"unmap at {offset} in replica {self.path}") from None
            finally:
                self._index.forget(start >> BLOCK_SHIFT, (stop - start) >> BLOCK_SHIFT)
        with self._lock:
            self._counter += 1
            self._dirty_fds.update(fds)
        return freed

    def zero(self, offset: int, length: int, *, punch: bool = True, fast: bool = False) -> int:
        """Make ``[offset, offset+length)`` read as zeros; return ``length``.

        Whole 4 KiB blocks: where no older layer holds data (``SEEK_DATA`` on each), a hole is
        punched in the head, which then reads as zeros; where one does, zeros are written into
        the head, over that data's blocks only. ``punch=False`` writes zeros over every block
        (the range stays allocated: NBD's ``NO_HOLE``). ``fast=True`` only punches: if an
        older layer holds data in the range, NotSupportedError, and nothing is changed. The
        partial blocks at either end are written as zeros (read-modify-write) in every mode.
        Never ``fallocate(ZERO_RANGE)``: such ranges look like holes to ``SEEK_DATA``, and the
        read index would then read the layer below.

        Counts once for the revision counter, refused or not: replicas that receive the same
        requests keep equal counters whatever their older layers hold.
        """
        end = offset + length
        if offset < 0 or length < 0 or end > self._limit:
            self._range_error("zero", offset, length)
        if length == 0:
            return 0
        start = (offset + _MASK) & ~_MASK
        stop = end & ~_MASK
        fd = self._head_fd
        try:
            older = older_data(self._fds[1:-1], start, stop) if start < stop and punch else []
            if fast and older:
                with self._lock:
                    self._counter += 1
                raise NotSupportedError(
                    f"cannot zero {length} bytes at offset {offset} of volume {self.volume} "
                    f"fast: older snapshots of replica {self.path} hold data there; zero "
                    "without the fast flag"
                )
            self._intent.note(offset, length)
            if start < stop:
                zero_blocks(fd, self._index, start, stop, older if punch else [(start, stop)])
            edges = [(offset, end)] if start > stop else [(offset, start), (stop, end)]
            for lo, hi in edges:
                if lo < hi:
                    self._write_unaligned(fd, lo, memoryview(bytes(hi - lo)))
        except OSError as exc:
            # Part of the range may be zeroed: let its blocks be looked up again.
            first = offset >> BLOCK_SHIFT
            self._index.forget(first, ((end - 1) >> BLOCK_SHIFT) - first + 1)
            raise fs.os_error(
                exc, f"zeroing {length} bytes at {offset} in replica {self.path}"
            ) from None
        with self._lock:
            self._counter += 1
            self._dirty_fds.add(fd)
        return length

    def _range_error(self, op: str, offset: int, length: int) -> NoReturn:
        if self._layers.closed:
            raise ShuttingDownError(f"replica {self.path} is closed")
        raise OutOfRangeError(
            f"{op} of {length} bytes at offset {offset} is outside volume {self.volume} "
            f"({self._layers.size} bytes)"
        )

    def allocation(self, offset: int, length: int) -> list[tuple[int, bool]]:
        """``(length, allocated)`` extents covering ``[offset, offset+length)`` in order.

        A range is allocated when any layer of the live chain holds data there (found with
        SEEK_DATA/SEEK_HOLE on every layer); everything else reads as zeros. Feeds NBD
        ``base:allocation`` block status.
        """
        end = offset + length
        if offset < 0 or length < 0 or end > self._limit:
            self._range_error("map", offset, length)
        return self._layers.allocation(offset, end)

    # -- flush and revision counter ---------------------------------------------------------------

    def capture(self) -> int:
        """Take note of what a flush must make durable, *now*: the counter and the files written
        since the previous capture; returns a token for :meth:`flush`.

        The service captures when a Flush request arrives, in the order of the connection's
        requests (the data path is synchronous): every replica of a volume receives the same
        requests in the same order from its engine, so every replica that completes the same
        flush persists the same counter, whatever writes arrived while the ``fdatasync`` ran.
        Captured later (when the flush starts running), the counter would count those too, on
        one replica and not another, and after a crash the others would look stale."""
        with self._lock:
            self._tokens += 1
            self._captures.append((self._tokens, self._counter, self._dirty_fds))
            self._dirty_fds = set()
            return self._tokens

    def flush(self, token: int | None = None) -> None:
        """Make every write and unmap so far (with ``token``: up to that :meth:`capture`)
        durable, then persist the counter. Thread-safe."""
        with self._flush_lock:
            self._check_open()
            self._flush_locked(token)

    def _flush_locked(self, token: int | None = None) -> None:
        if self.failed:
            raise StorageError(self.failed)
        if token is None:
            token = self.capture()
        with self._lock:  # this capture and every earlier one not flushed yet, in order
            done = 0
            while done < len(self._captures) and self._captures[done][0] <= token:
                done += 1
            if not done:
                return  # an earlier flush that covered it completed (we waited for its lock)
            counter = self._captures[done - 1][1]
            fds = set().union(*(files for _, _, files in self._captures[:done]))
            del self._captures[:done]
        try:
            for fd in fds:
                os.fdatasync(fd)
        except OSError as exc:
            # After a failed fdatasync the kernel may have dropped the dirty pages and a retry
            # would "succeed": the replica can no longer prove what is durable. Sticky failure.
            error = fs.os_error(exc, f"flush of replica {self.path} failed")
            self._layers.fail(f"{error.message}; the replica must be rebuilt")
            raise error from None
        if counter != self._persisted:
            try:
                metalib.store_counter(self._layers.dir_fd, REVISION_COUNTER, counter)
            except OSError as exc:  # (EIO: the replica fails for good, as for its data)
                raise self._layers.error(exc, f"cannot persist {REVISION_COUNTER}") from None
            self._persisted = counter

    @property
    def revision_counter(self) -> int:
        """Writes and unmaps counted so far (in memory)."""
        return self._counter

    @property
    def persisted_revision_counter(self) -> int:
        """The value ``revision.counter`` holds (never more than the durable writes)."""
        return self._persisted

    def set_revision_counter(self, value: int) -> None:
        """Flush, then set and persist the counter (the engine does this during a rebuild)."""
        if type(value) is not int or not 0 <= value <= metalib.MAX_COUNTER:
            raise InvalidArgumentError(
                f"revision counter must be an integer from 0 to {metalib.MAX_COUNTER}, "
                f"got {value!r}"
            )
        with self._flush_lock:
            self._check_usable()
            self._flush_locked()
            with self._lock:
                self._counter = value
            self._flush_locked()

    def _check_open(self) -> None:
        self._layers.check_open()

    def _check_usable(self) -> None:
        self._check_open()
        if self.failed:
            raise StorageError(self.failed)

    @property
    def failed(self) -> str:
        """Why the replica failed for good (a flush, a commit or a write intent that may not be
        durable), or ""."""
        return self._layers.failed or self._intent.failed
