"""Kill a structural operation at every step: the replica reopens, reads the same, and is clean.

A *crash* is simulated by raising a BaseException from the k-th file-system step of the operation
(rollback disabled, as a dead process runs none) and abandoning the replica without closing it.
The page cache survives, as after a process kill. For every k until the operation completes:
reopening succeeds, the volume reads what it read before, the structure is either the old one or
the new one, no leftover remains, and repeating the operation reaches the same final state.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lhtrio.replica import fs
from lhtrio.replica.layers import Layers
from lhtrio.replica.store import Replica

from .replica_helpers import BLOCK, INSTANCE, VOLUME, assert_clean, fill, open_replica

SIZE = 16 * BLOCK


class Crash(BaseException):
    pass


def inject(mp: pytest.MonkeyPatch, crash_at: int) -> None:
    """Raise Crash before the ``crash_at``-th durable step."""
    steps = [0]

    def wrap(module: Any, name: str) -> None:
        real = getattr(module, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            steps[0] += 1
            if steps[0] - 1 == crash_at:
                raise Crash(f"{name} #{crash_at}")
            return real(*args, **kwargs)

        mp.setattr(module, name, step)

    for name in ("write_atomic", "unlink_if_exists", "fsync_dir", "copy_range", "punch_hole"):
        wrap(fs, name)
    for name in ("link", "rename", "ftruncate", "fdatasync"):
        wrap(os, name)
    mp.setattr(Layers, "rollback", lambda *args: None)


def structure(r: Replica) -> tuple[tuple[str, ...], tuple[tuple[str, str, bool], ...]]:
    info = r.info()
    disks = tuple(
        sorted(
            (n if not n.startswith("volume-head-") else "HEAD", d.parent, d.removed)
            for n, d in info.disks.items()
        )
    )
    chain = tuple(n if not n.startswith("volume-head-") else "HEAD" for n in info.chain)
    return chain, disks


def fresh(rdir: Path, setup: Callable[[Replica], None]) -> Replica:
    shutil.rmtree(rdir, ignore_errors=True)
    r = Replica.create(str(rdir), size=SIZE, volume=VOLUME, instance=INSTANCE)
    setup(r)
    return r


State = tuple[object, bytes]


def state(r: Replica) -> State:
    return structure(r), r.read(0, r.size)


def crash_everywhere(
    rdir: Path,
    setup: Callable[[Replica], None],
    op: Callable[[Replica], None],
    *,
    atomic: bool = True,
    view_changes: bool = False,
) -> int:
    """Run ``op`` crashing at step 0, 1, 2, ... until it completes; return the step count.

    ``op`` must finish the job when run again on the reopened replica (whatever state the crash
    left). ``atomic``: the reopened state is exactly the old or the new one.
    """
    r = fresh(rdir, setup)
    op(r)
    reference = state(r)
    r.close()
    outcomes: set[str] = set()
    for crash_at in itertools.count():
        r = fresh(rdir, setup)
        before = state(r)
        with pytest.MonkeyPatch.context() as mp:
            inject(mp, crash_at)
            try:
                op(r)
            except Crash:
                crashed = True
            else:
                crashed = False
        if not crashed:
            assert state(r) == reference
            r.close()
            if atomic:  # the crash points fell on both sides of the commit
                assert outcomes == {"old", "new"}
            return crash_at
        r.abandon()
        with open_replica(rdir) as again:
            assert_clean(rdir, again)
            reopened = state(again)
            if atomic:
                assert reopened in (before, reference), crash_at
                outcomes.add("old" if reopened == before else "new")
            if not view_changes:  # (an expansion adds zeros)
                assert reopened[1] == before[1].ljust(len(reopened[1]), b"\0"), crash_at
            op(again)
            assert state(again) == reference, crash_at
    raise AssertionError("unreachable")


def data_and_snapshots(r: Replica) -> None:
    r.write(0, fill(1, 4 * BLOCK))
    r.snapshot("a")
    r.write(BLOCK, fill(2, 2 * BLOCK))
    r.snapshot("b")
    r.write(2 * BLOCK + 7, b"head data")


def snapshot_c(r: Replica) -> None:
    if "volume-snap-c.img" not in r.info().disks:
        r.snapshot("c", created="2026-11-22T10:00:00Z")


def test_snapshot_crash_anywhere(rdir: Path) -> None:
    steps = crash_everywhere(rdir, data_and_snapshots, snapshot_c)
    assert steps >= 8


def test_expand_crash_anywhere(rdir: Path) -> None:
    def expand(r: Replica) -> None:
        if r.size == SIZE:
            r.expand(2 * SIZE)

    assert crash_everywhere(rdir, data_and_snapshots, expand) >= 8


def test_revert_crash_anywhere(rdir: Path) -> None:
    steps = crash_everywhere(rdir, data_and_snapshots, lambda r: r.revert("a"), view_changes=True)
    assert steps >= 5


def purge_setup(r: Replica) -> None:
    data_and_snapshots(r)
    r.snapshot("c", user_created=False)
    r.write(3 * BLOCK, fill(3, BLOCK))
    r.snapshot("d")
    r.write(0, fill(4, BLOCK))
    r.revert("c")  # d and its head become a branch; c has two children
    r.write(4 * BLOCK, fill(5, BLOCK))
    r.snapshot("e")
    r.write(5 * BLOCK, fill(6, BLOCK))
    for name in ("a", "b", "d", "e"):
        r.mark_removed(name)


def test_purge_crash_anywhere(rdir: Path) -> None:
    steps = crash_everywhere(rdir, purge_setup, lambda r: r.purge(), atomic=False)
    assert steps >= 15


def expanded_purge_setup(r: Replica) -> None:
    """An expansion snapshot with a child that is not the head: purge coalesces it, extending
    its file to the child's size first (sizes are checked at open, see layout)."""
    data_and_snapshots(r)
    r.expand(2 * SIZE)
    r.write(SIZE + BLOCK, fill(7, BLOCK))
    r.snapshot("c")
    r.write(0, fill(8, BLOCK))


def test_purge_after_an_expansion_crash_anywhere(rdir: Path) -> None:
    steps = crash_everywhere(rdir, expanded_purge_setup, lambda r: r.purge(), atomic=False)
    assert steps >= 6


def test_forced_remove_crash_anywhere(rdir: Path) -> None:
    def remove(r: Replica) -> None:
        if "volume-snap-b.img" in r.info().disks:
            r.remove_disk("b", force=True)

    crash_everywhere(rdir, data_and_snapshots, remove, atomic=False, view_changes=True)


def test_open_cleanup_crash_anywhere(rdir: Path) -> None:
    """Crash a snapshot at every step, then crash the open that cleans up at every step."""
    for snap_crash in itertools.count():
        r = fresh(rdir, data_and_snapshots)
        view = r.read(0, SIZE)
        with pytest.MonkeyPatch.context() as mp:
            inject(mp, snap_crash)
            try:
                snapshot_c(r)
            except Crash:
                crashed = True
            else:
                crashed = False
        if not crashed:
            r.close()
            break
        r.abandon()
        for open_crash in itertools.count():
            with pytest.MonkeyPatch.context() as mp:
                inject(mp, open_crash)
                try:
                    opened = open_replica(rdir)
                except Crash:
                    continue
            opened.abandon()
            break
        with open_replica(rdir) as again:
            assert_clean(rdir, again)
            assert again.read(0, SIZE) == view
