"""Zeroing without sending zeros, and requests of every length (issue 16 #18-#20).

The ``Zero`` request from the replica store (punch where nothing older shows through, write
zeros where something does, never ZERO_RANGE) through the replica service to the engine's
``write_zeroes`` (batches, FAST_ZERO refusals that never fail a replica, the fallbacks), and the
fan-out of an empty batch, with replicas in this process.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from lhtrio.engine.dirty import BLOCK, DirtyTracker
from lhtrio.engine.replicaset import Member, Mode, ReplicaSet
from lhtrio.engine.volume import MAX_IO, ZERO_BATCH, Volume, _chunks
from lhtrio.errors import InvalidArgumentError, NotSupportedError
from lhtrio.net import serve_rpc
from lhtrio.net.reactor import open_reactor
from lhtrio.replica import fs
from lhtrio.replica.service import ReplicaService
from lhtrio.replica.store import Replica
from lhtrio.wire import Done, Identity, Role
from lhtrio.wire.messages import ZERO, Zero, ZeroMode

MiB = 1 << 20
SIZE = 8 * MiB
# Virtual time jumps only after this much real idleness (replicas fsync in worker threads).
AUTOJUMP = 0.5


def _head_data(replica: Replica) -> list[tuple[int, int]]:
    """The allocated extents of the replica's head file."""
    head = next(p for p in sorted(os.listdir(replica.path)) if p.startswith("volume-head-"))
    fd = os.open(os.path.join(replica.path, head), os.O_RDONLY)
    try:
        return list(fs.data_extents(fd))
    finally:
        os.close(fd)


@pytest.fixture
def store(tmp_path: Path) -> Replica:
    return Replica.create(str(tmp_path / "r"), size=SIZE, volume="v", instance="r")


# --- the replica store -------------------------------------------------------------------------


def test_zero_punches_a_head_with_nothing_below(store: Replica) -> None:
    store.write(0, b"a" * (2 * MiB))
    counter = store.revision_counter
    assert store.zero(4096, MiB, punch=True) == MiB
    assert store.read(0, 2 * MiB) == b"a" * 4096 + bytes(MiB) + b"a" * (MiB - 4096)
    assert _head_data(store) == [(0, 4096), (MiB + 4096, MiB - 4096)]  # punched, not written
    assert store.revision_counter == counter + 1
    store.flush()  # (the head is dirty for the flush)
    assert store.persisted_revision_counter == counter + 1
    store.close()


def test_zero_writes_zeros_only_where_an_older_snapshot_holds_data(store: Replica) -> None:
    store.write(MiB, b"s" * 8192)  # will be in the snapshot
    store.snapshot("s1")
    store.write(0, b"h" * (4 * MiB))  # the new head
    store.zero(0, 4 * MiB)
    assert store.read(0, 4 * MiB) == bytes(4 * MiB)
    assert _head_data(store) == [(MiB, 8192)]  # zeros hide the snapshot's data, nothing more
    store.close()


def test_unaligned_edges_are_zeroed_in_place_and_their_neighbours_kept(store: Replica) -> None:
    store.write(0, b"x" * 20000)
    store.zero(100, 10000)  # partial first block, one whole block, partial last block
    assert store.read(0, 20000) == b"x" * 100 + bytes(10000) + b"x" * 9900
    store.zero(12000, 10)  # inside one block
    assert store.read(11990, 30) == b"x" * 10 + bytes(10) + b"x" * 10
    store.close()


def test_fast_zero_refuses_over_older_data_and_changes_nothing(store: Replica) -> None:
    store.write(0, b"s" * 4096)
    store.snapshot("s1")
    store.write(0, b"h" * 8192)
    counter = store.revision_counter
    with pytest.raises(NotSupportedError, match=r"older snapshots of replica .* hold data there"):
        store.zero(0, 8192, fast=True)
    assert store.read(0, 8192) == b"h" * 8192
    # Counted all the same: every replica sent the same requests keeps the same counter.
    assert store.revision_counter == counter + 1
    store.zero(4096, 4096, fast=True)  # nothing older there: punched
    assert store.read(0, 8192) == b"h" * 4096 + bytes(4096)
    store.close()


def test_allocate_mode_writes_zeros_and_never_punches(store: Replica) -> None:
    store.zero(0, MiB, punch=False)
    assert store.read(0, MiB) == bytes(MiB)
    assert _head_data(store) == [(0, MiB)]
    store.close()


def test_zero_of_nothing_changes_nothing(store: Replica) -> None:
    counter = store.revision_counter
    assert store.zero(SIZE, 0) == 0
    assert store.revision_counter == counter
    store.close()


async def test_the_replica_service_maps_zero_modes(store: Replica) -> None:
    async with trio.open_nursery() as nursery:
        service = ReplicaService(store, nursery)
        store.write(0, b"d" * 8192)
        assert service(Zero(0, 4096)) == Done(4096)
        assert service(Zero(4096, 4096, ZeroMode.ALLOCATE)) == Done(4096)
        assert store.read(0, 8192) == bytes(8192)
        assert _head_data(store) == [(4096, 4096)]
        with pytest.raises(InvalidArgumentError, match="does not know Zero mode 9"):
            service(Zero(0, 4096, 9))
        nursery.cancel_scope.cancel()
    store.close()


def test_the_away_logs_count_zero_as_a_write() -> None:
    dirty = DirtyTracker(64 * MiB)
    dirty.away("b")
    dirty.note([Zero(MiB, 3 * BLOCK, ZeroMode.FAST)])
    assert dirty.take("b") == [(MiB, 3 * BLOCK)]


# --- the engine ---------------------------------------------------------------------------------


@asynccontextmanager
async def replicas(
    tmp_path: Path,
    count: int,
    *,
    features: tuple[str, ...] = (ZERO,),
    prepare: Callable[[int, Replica], None] | None = None,
) -> AsyncIterator[tuple[list[str], list[Replica]]]:
    """Replica servers in this process (as ``lhtrio replica`` serves, announcing ``features``)."""
    stores: list[Replica] = []
    try:
        async with trio.open_nursery() as nursery:
            addresses = []
            for n in range(count):
                replica = Replica.create(
                    str(tmp_path / f"r{n}"), size=SIZE, volume="v", instance=f"r{n}"
                )
                stores.append(replica)
                if prepare is not None:
                    prepare(n, replica)
                identity = Identity(
                    volume="v",
                    instance=f"r{n}",
                    role=Role.REPLICA,
                    unnamed=False,
                    features=features,
                )
                host, port = await nursery.start(
                    functools.partial(
                        serve_rpc,
                        ReplicaService(replica, nursery),
                        "127.0.0.1",
                        0,
                        identity=identity,
                    )
                )
                addresses.append(f"tcp://{host}:{port}")
            yield addresses, stores
            nursery.cancel_scope.cancel()
    finally:
        for replica in stores:
            replica.close()


@asynccontextmanager
async def volume(addresses: Sequence[str], *, modes: Sequence[Mode] = ()) -> AsyncIterator[Volume]:
    async with open_reactor() as reactor, trio.open_nursery() as nursery:
        members = [
            Member(a, modes[i] if i < len(modes) else Mode.RW, synced=True)
            for i, a in enumerate(addresses)
        ]
        vol = Volume("v", SIZE, ReplicaSet(members), nursery, reactor)
        try:
            for member in members:
                await nursery.start(vol.links.connect, member)
            yield vol
        finally:
            vol.links.close()


def _counters(stores: list[Replica]) -> set[int]:
    return {s.revision_counter for s in stores}


def _modes(vol: Volume) -> list[Mode]:
    return [m.mode for m in vol.replicas.members]


def test_large_ranges_go_out_in_bounded_batches() -> None:
    batches = list(_chunks(100, 20 * MAX_IO + 5))
    assert [len(b) for b in batches] == [ZERO_BATCH, ZERO_BATCH, 5]
    pieces = [piece for batch in batches for piece in batch]
    assert pieces[0] == (100, MAX_IO)
    assert pieces[-1] == (100 + 20 * MAX_IO, 5)
    assert sum(n for _, n in pieces) == 20 * MAX_IO + 5
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(pieces))
    assert list(_chunks(4096, 0)) == []


async def test_zero_length_trim_and_zeroing_are_answered_at_once(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """issue 16 #18: the fan-out of no request never completed: 16 s, then every replica ERR."""
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, 2) as (addresses, _), volume(addresses) as vol:
        start = trio.current_time()
        await vol.trim(4096, 0)
        await vol.write_zeroes(4096, 0, fua=True)
        await vol.write_zeroes(4096, 0, fua=False, fast=True)
        await vol.write_batch([])  # (an empty batch settles at once too)
        assert trio.current_time() - start < 1
        assert _modes(vol) == [Mode.RW, Mode.RW]
        assert await vol.read_batch([(4096, 0)]) == [b""]


async def test_write_zeroes_punches_every_replica_without_sending_zeros(tmp_path: Path) -> None:
    async with replicas(tmp_path, 2) as (addresses, stores), volume(addresses) as vol:
        await vol.write_batch([(0, b"z" * (2 * MiB), False)])
        await vol.write_zeroes(4096, 2 * MiB - 8192, fua=True)
        assert await vol.read_batch([(0, 2 * MiB)]) == [
            b"z" * 4096 + bytes(2 * MiB - 8192) + b"z" * 4096
        ]
        for store in stores:
            assert _head_data(store) == [(0, 4096), (2 * MiB - 4096, 4096)]
            assert store.persisted_revision_counter == store.revision_counter  # (FUA: flushed)
        assert _modes(vol) == [Mode.RW, Mode.RW]
        assert len(_counters(stores)) == 1


async def test_zeroing_and_trim_longer_than_the_wire_allows_are_split(tmp_path: Path) -> None:
    """issue 16 #19: the engine splits what the wire caps at 32 MiB (MAX_IO here, for speed)."""
    async with replicas(tmp_path, 2) as (addresses, stores), volume(addresses) as vol:
        await vol.write_batch([(0, b"q" * SIZE, False)])
        await vol.write_zeroes(0, SIZE, fua=False, punch=False)
        assert await vol.read_batch([(0, SIZE)]) == [bytes(SIZE)]
        await vol.trim(0, SIZE)
        for store in stores:
            assert _head_data(store) == []
        assert _modes(vol) == [Mode.RW, Mode.RW]


def _snapshot_with_data_in(which: set[int]) -> Callable[[int, Replica], None]:
    def prepare(n: int, replica: Replica) -> None:
        if n in which:
            replica.write(0, b"old" * 1000)
        replica.snapshot("s1")

    return prepare


async def test_fast_zero_where_no_replica_can_is_not_supported_and_changes_nothing(
    tmp_path: Path,
) -> None:
    prepare = _snapshot_with_data_in({0, 1})
    async with (
        replicas(tmp_path, 2, prepare=prepare) as (addresses, stores),
        volume(addresses) as vol,
    ):
        before = [store.revision_counter for store in stores]
        with pytest.raises(NotSupportedError, match="fast: older snapshots hold data there"):
            await vol.write_zeroes(0, MiB, fua=False, fast=True)
        assert (await vol.read_batch([(0, 3000)]))[0] == b"old" * 1000
        assert _modes(vol) == [Mode.RW, Mode.RW]  # a refusal never fails a replica
        assert [s.revision_counter - b for s, b in zip(stores, before, strict=True)] == [1, 1]
        await vol.write_zeroes(0, MiB, fua=False)  # without the flag it works
        for store in stores:
            assert store.read(0, 3000) == bytes(3000)


async def test_replicas_that_disagree_on_a_fast_zero_are_brought_level(tmp_path: Path) -> None:
    prepare = _snapshot_with_data_in({1})  # only r1's snapshot holds data there
    async with (
        replicas(tmp_path, 2, prepare=prepare) as (addresses, stores),
        volume(addresses) as vol,
    ):
        before = [store.revision_counter for store in stores]
        await vol.write_zeroes(0, MiB, fua=False, fast=True)
        for store in stores:
            assert store.read(0, MiB) == bytes(MiB)
        assert _modes(vol) == [Mode.RW, Mode.RW]
        # Every replica counted every request (r1's refusal too): their counters stay in step.
        assert [s.revision_counter - b for s, b in zip(stores, before, strict=True)] == [2, 2]


async def test_fast_zero_that_must_stay_allocated_is_not_supported(tmp_path: Path) -> None:
    async with replicas(tmp_path, 1) as (addresses, _), volume(addresses) as vol:
        await vol.write_batch([(0, b"k" * 4096, False)])
        with pytest.raises(NotSupportedError, match="NO_HOLE"):
            await vol.write_zeroes(0, 4096, fua=False, fast=True, punch=False)
        assert await vol.read_batch([(0, 4096)]) == [b"k" * 4096]


async def test_replicas_without_the_zero_feature_get_zeros_written(tmp_path: Path) -> None:
    async with (
        replicas(tmp_path, 2, features=()) as (addresses, stores),
        volume(addresses) as vol,
    ):
        await vol.write_batch([(0, b"w" * MiB, False)])
        with pytest.raises(NotSupportedError, match="does not speak zero"):
            await vol.write_zeroes(0, MiB, fua=False, fast=True)
        await vol.write_zeroes(0, MiB, fua=False)
        for store in stores:
            assert store.read(0, MiB) == bytes(MiB)
            assert _head_data(store) == [(0, MiB)]  # written, not punched
        assert _modes(vol) == [Mode.RW, Mode.RW]


async def test_a_rebuilding_replica_gets_zeros_written_never_punched(tmp_path: Path) -> None:
    async with (
        replicas(tmp_path, 2) as (addresses, stores),
        volume(addresses, modes=[Mode.RW, Mode.WO]) as vol,
    ):
        assert vol.replicas.rebuilding
        with pytest.raises(NotSupportedError, match="is being rebuilt"):
            await vol.write_zeroes(0, 8192, fua=False, fast=True)
        await vol.write_zeroes(100, 8000, fua=False)  # (unaligned: completed from RW data)
        for store in stores:
            assert store.read(0, 8192) == bytes(8192)
            assert _head_data(store) == [(0, 8192)]
        assert _modes(vol) == [Mode.RW, Mode.WO]
