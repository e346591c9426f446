"""The revision counter guarantee (see ``lhtrio.replica.store``).

The persisted counter never exceeds the number of writes that are durable, so a replica that missed
an acknowledged and flushed write always has a lower persisted counter than one that did not.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lhtrio.errors import StorageError
from lhtrio.replica import meta as metalib
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, fill, open_replica


def persisted(rdir: Path) -> int:
    return metalib.decode_counter((rdir / "revision.counter").read_bytes(), where="test")


def test_counter_is_in_memory_until_flush(replica: Replica, rdir: Path) -> None:
    for i in range(5):
        replica.write(i * BLOCK, fill(i, BLOCK))
    replica.unmap(0, BLOCK)
    assert replica.revision_counter == 6
    assert persisted(rdir) == 0
    replica.flush()
    assert persisted(rdir) == 6
    assert replica.persisted_revision_counter == 6
    replica.write(0, b"x")
    assert persisted(rdir) == 6


def test_idle_flush_does_not_rewrite_the_counter(replica: Replica, rdir: Path) -> None:
    replica.write(0, b"x")
    replica.flush()
    before = os.stat(rdir / "revision.counter")
    replica.flush()
    after = os.stat(rdir / "revision.counter")
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_kill_loses_only_unflushed_counts(rdir: Path) -> None:
    r = Replica.create(str(rdir), size=16 * BLOCK, volume=VOLUME, instance=INSTANCE)
    for i in range(3):
        r.write(i * BLOCK, fill(i, BLOCK))
    r.flush()
    r.write(5 * BLOCK, fill(5, BLOCK))  # acknowledged but never flushed
    r.abandon()
    with open_replica(rdir) as again:
        assert again.revision_counter == 3  # a lower bound: the data happens to survive
        assert again.read(5 * BLOCK, BLOCK) == fill(5, BLOCK)
        again.write(0, b"y")
    with open_replica(rdir) as again:
        assert again.revision_counter == 4  # clean close persists everything


_ops = st.lists(st.sampled_from(["write", "write", "write", "flush"]), min_size=1, max_size=30)


def _pair(tmp: str) -> tuple[list[Path], Replica, Replica]:
    dirs = [Path(tmp) / "a", Path(tmp) / "b"]
    a, b = (Replica.create(str(d), size=32 * BLOCK, volume=VOLUME, instance=INSTANCE) for d in dirs)
    return dirs, a, b


@settings(max_examples=40, deadline=None)
@given(
    before=_ops,
    after=_ops,
    b_flushes_after=st.booleans(),
    kill_a_mid_flush=st.booleans(),
)
def test_a_replica_cut_off_at_a_flushed_write_has_a_lower_counter(
    before: list[str], after: list[str], b_flushes_after: bool, kill_a_mid_flush: bool
) -> None:
    """B stops receiving writes at write k; A acknowledges k, flushes, goes on; both are killed.

    Whatever A and B did afterwards (B may even keep flushing; A may die inside a later flush,
    after its fdatasync but before it persisted the counter), A's persisted counter is higher.
    """
    with tempfile.TemporaryDirectory() as tmp:
        dirs, a, b = _pair(tmp)
        n = 0

        def run(ops: list[str], *, to_b: bool) -> None:
            nonlocal n
            for op in ops:
                if op == "flush":
                    a.flush()
                    if to_b or b_flushes_after:
                        b.flush()
                    continue
                a.write((n % 32) * BLOCK, fill(n, BLOCK))
                if to_b:
                    b.write((n % 32) * BLOCK, fill(n, BLOCK))
                n += 1

        run(before, to_b=True)
        a.write((n % 32) * BLOCK, fill(n, BLOCK))  # write k: acknowledged by A only
        n += 1
        a.flush()
        run(after, to_b=False)
        if kill_a_mid_flush:
            a.write(0, b"late")
            with pytest.MonkeyPatch.context() as mp:

                def die(*args: object) -> None:
                    raise KeyboardInterrupt  # the process dies before persisting

                mp.setattr(metalib, "store_counter", die)
                with pytest.raises(KeyboardInterrupt):
                    a.flush()
        a.abandon()
        b.abandon()
        assert persisted(dirs[0]) > persisted(dirs[1])
        with open_replica(dirs[0]) as ra, open_replica(dirs[1]) as rb:
            assert ra.revision_counter > rb.revision_counter


@settings(max_examples=40, deadline=None)
@given(ops=_ops, missed=st.sets(st.integers(0, 29), min_size=1), tail=_ops)
def test_same_flushes_a_replica_that_missed_a_flushed_write_is_lower(
    ops: list[str], missed: set[int], tail: list[str]
) -> None:
    """Both get the same flushes; B misses some writes that a flush covered; both are killed."""
    writes = [i for i, op in enumerate(ops) if op == "write"]
    if not writes:
        return
    missed_at = {writes[m % len(writes)] for m in missed}
    ops = [*ops, "flush", *tail]
    with tempfile.TemporaryDirectory() as tmp:
        dirs, a, b = _pair(tmp)
        n = 0
        for i, op in enumerate(ops):
            if op == "flush":
                a.flush()
                b.flush()
                continue
            a.write((n % 32) * BLOCK, fill(n, BLOCK))
            if i not in missed_at:
                b.write((n % 32) * BLOCK, fill(n, BLOCK))
            n += 1
        a.abandon()
        b.abandon()
        assert persisted(dirs[0]) > persisted(dirs[1])


def test_concurrent_flush_never_persists_more_than_is_durable(
    rdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flush in a worker thread while the main thread keeps writing.

    Every fdatasync records what the file held when it was called (a lower bound of what it made
    durable). Whenever the counter is persisted, the first C writes must all be in that durable
    image. Write i puts a unique pattern in block i.
    """
    writes = 1000
    r = Replica.create(str(rdir), size=writes * BLOCK, volume=VOLUME, instance=INSTANCE)
    durable: dict[int, bytes] = {}
    violations: list[str] = []
    persisted_values: list[int] = []
    real_fdatasync = os.fdatasync
    real_store_counter = metalib.store_counter
    head = str(rdir / "volume-head-000.img")

    head_inode = os.stat(head).st_ino

    def recording_fdatasync(fd: int) -> None:
        image = os.pread(fd, writes * BLOCK, 0)
        real_fdatasync(fd)
        if os.fstat(fd).st_ino == head_inode:  # (the write-intent map is synced too)
            durable[fd] = image

    def checking_store_counter(dir_fd: int, name: str, value: int) -> None:
        image = b"".join(durable.values())  # one file: the head
        for i in range(value):
            if image[i * BLOCK : (i + 1) * BLOCK] != fill(i, BLOCK):
                violations.append(f"counter {value} persisted but write {i} is not durable")
                break
        persisted_values.append(value)
        real_store_counter(dir_fd, name, value)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    monkeypatch.setattr(metalib, "store_counter", checking_store_counter)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            r.flush()

    thread = threading.Thread(target=flusher)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads as much as possible
    thread.start()
    try:
        for i in range(writes):
            r.write(i * BLOCK, fill(i, BLOCK))
            if i % 4 == 0:
                time.sleep(0.0002)  # hand the GIL to the flusher now and then; waits for nothing
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
    r.flush()
    assert not violations
    assert len(persisted_values) > 3  # the flusher really interleaved with the writes
    assert persisted_values == sorted(persisted_values)
    assert persisted_values[-1] == writes
    assert os.path.exists(head)
    r.close()


def test_counter_survives_structural_operations(replica: Replica, rdir: Path) -> None:
    replica.write(0, b"a")
    replica.snapshot("s")  # flushes
    assert persisted(rdir) == 1
    replica.write(0, b"b")
    replica.revert("s")  # flushes; the write is discarded but stays counted
    assert persisted(rdir) == 2
    replica.write(0, b"c")
    replica.expand(2 * replica.size)
    assert persisted(rdir) == 3
    replica.unmap(0, 10)  # ignored (under 4 KiB) but counted, like on every other replica
    replica.purge()
    assert persisted(rdir) == 4


def test_a_failed_flush_is_sticky(rdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After fdatasync failed, nothing proves what is durable: no counter is persisted again."""
    r = Replica.create(str(rdir), size=16 * BLOCK, volume=VOLUME, instance=INSTANCE)
    r.write(0, b"a")
    r.flush()

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    r.write(0, b"b")
    with monkeypatch.context() as mp:
        mp.setattr(os, "fdatasync", broken)
        with pytest.raises(StorageError, match="Input/output error"):
            r.flush()
    r.write(0, b"c")
    with pytest.raises(StorageError, match="must be rebuilt"):
        r.flush()
    with pytest.raises(StorageError, match="must be rebuilt"):
        r.snapshot("s")
    with pytest.raises(StorageError, match="must be rebuilt"):
        r.close()
    assert r.closed
    assert persisted(rdir) == 1
    with open_replica(rdir) as again:
        assert again.revision_counter == 1


def test_an_io_error_persisting_the_counter_is_sticky_too(
    rdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data's fdatasync succeeded, the counter's did not (EIO): Linux reports a lost write
    once, to whichever fsync asks first (a disk's failed cache flush too), so the data this
    flush vouched for may be what was lost. Found by the chaos runs' failing disks: the replica
    went on, its next flush succeeded, and a rebuild trusted data its disk had dropped."""
    r = Replica.create(str(rdir), size=16 * BLOCK, volume=VOLUME, instance=INSTANCE)
    r.write(0, b"a")
    r.flush()

    def broken(dir_fd: int, name: str, value: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    r.write(0, b"b")
    with monkeypatch.context() as mp:
        mp.setattr(metalib, "store_counter", broken)
        with pytest.raises(StorageError, match="Input/output error"):
            r.flush()
    assert "must be rebuilt" in r.failed
    r.write(0, b"c")
    with pytest.raises(StorageError, match="must be rebuilt"):
        r.flush()  # the disk works again: the replica does not
    with pytest.raises(StorageError, match="must be rebuilt"):
        r.close()
    assert persisted(rdir) == 1


def test_a_flush_persists_the_counter_of_its_capture_not_of_later_writes(rdir: Path) -> None:
    # Replicas that complete the same flush must persist the same counter, whatever writes
    # arrived while the fdatasync ran (else after a crash all but one would look stale).
    r = Replica.create(str(rdir), size=16 * BLOCK, volume=VOLUME, instance=INSTANCE)
    r.write(0, fill(1, BLOCK))
    first = r.capture()
    r.write(BLOCK, fill(2, BLOCK))  # arrived after the Flush request
    second = r.capture()
    r.write(2 * BLOCK, fill(3, BLOCK))
    r.flush(first)
    assert r.persisted_revision_counter == 1
    r.flush(second)
    assert r.persisted_revision_counter == 2
    r.flush(first)  # covered already: nothing goes backwards
    assert r.persisted_revision_counter == 2
    r.flush()
    assert r.persisted_revision_counter == 3
    r.close()
