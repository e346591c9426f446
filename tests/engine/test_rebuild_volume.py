"""Rebuild and salvage at the engine's volume, with in-process replicas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from lhtrio.engine import operations
from lhtrio.engine.replica_add import add_replica
from lhtrio.engine.replicaset import Health, Member, Mode
from lhtrio.engine.volume import Volume
from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from lhtrio.models.engine import RebuildState
from lhtrio.models.volume import VolumeOperation
from lhtrio.net import open_rpc_client
from lhtrio.wire import Data, Read
from tests.engine.test_volume import replicas, volume

MiB = 1 << 20


async def _read_replica(address: str, offset: int, length: int) -> bytes:
    """The replica's own view (its chain), bypassing the engine."""
    async with open_rpc_client(address, volume="v") as client:
        reply = await client.call(Read(offset, length))
    assert isinstance(reply, Data)
    return bytes(reply.data)


async def _learn_identities(vol: Volume) -> None:
    """What the engine learns of each replica at start: which replica lives at its address."""
    for member in vol.replicas.members:
        async with open_rpc_client(member.address, volume="v") as client:
            info = await client.call_control("info")
        member.identity = (info["instance"], info["path"])


async def _add_wo(vol: Volume, address: str) -> Member:
    """A WO member, as a rebuild adds it, without transferring anything."""
    member = Member(address, Mode.WO)
    await vol.links.attach(member)
    vol.replicas.add(member)
    return member


async def _until_rebuilt(vol: Volume) -> None:
    assert vol.rebuild is not None
    with trio.fail_after(30):
        while vol.rebuild.running:
            await vol.rebuild.wait_changed(1.0)


async def test_unaligned_writes_reach_a_rebuilding_replica_as_whole_blocks_from_rw_data(
    tmp_path: Path,
) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (rw, wo), volume([rw]) as vol:
        old = os.urandom(16 * 4096)
        await vol.write_batch([(0, old, False)])
        await _add_wo(vol, wo)
        await vol.write_batch(
            [
                (100, b"\x22" * 5000, False),
                (3 * 4096 + 10, b"\x33" * 10, True),
                (8192, b"\x44" * 4096, False),
            ]
        )
        await vol.write_zeroes(9 * 4096 + 1, 2, fua=False)
        expected = bytearray(old)
        expected[100:5100] = b"\x22" * 5000
        expected[3 * 4096 + 10 : 3 * 4096 + 20] = b"\x33" * 10
        expected[8192:12288] = b"\x44" * 4096
        expected[9 * 4096 + 1 : 9 * 4096 + 3] = b"\0\0"
        assert await _read_replica(rw, 0, 16 * 4096) == expected
        # The rebuilding replica got whole blocks: exactly the RW bytes of every block touched.
        target = await _read_replica(wo, 0, 16 * 4096)
        for block in (0, 1, 2, 3, 9):
            span = slice(block * 4096, (block + 1) * 4096)
            assert target[span] == expected[span], block
        assert target[4 * 4096 : 9 * 4096] == bytes(5 * 4096)  # untouched: not sent


async def test_unmap_is_suspended_while_a_replica_rebuilds(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (rw, wo), volume([rw]) as vol:
        await vol.write_batch([(0, b"\x55" * MiB, False)])
        await _add_wo(vol, wo)
        await vol.trim(0, MiB)
        assert await vol.read_batch([(0, MiB)]) == [b"\x55" * MiB]


async def test_add_replica_copies_the_chain_and_switches_it_to_rw(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (rw, target), volume([rw]) as vol:
        first = os.urandom(MiB)
        await vol.write_batch([(0, first, False)])
        await operations.snapshot(vol, "s1", labels={}, user_created=True)
        await vol.write_batch([(2 * MiB, b"\x66" * 4096, False)])
        progress = await add_replica(vol, target)
        assert [m.mode for m in vol.replicas.members] == [Mode.RW, Mode.WO]
        await vol.write_batch([(3 * MiB, b"\x77" * 4096, False)])  # during the rebuild
        await _until_rebuilt(vol)
        assert progress.state is RebuildState.DONE, progress.error
        assert [m.mode for m in vol.replicas.members] == [Mode.RW, Mode.RW]
        assert progress.counters.sent_bytes == progress.counters.total_bytes >= MiB + 4096
        whole = await _read_replica(rw, 0, 4 * MiB)
        assert await _read_replica(target, 0, 4 * MiB) == whole
        assert whole[:MiB] == first
        assert whole[3 * MiB : 3 * MiB + 4096] == b"\x77" * 4096
        async with open_rpc_client(rw, volume="v") as a, open_rpc_client(target, volume="v") as b:
            source_info = await a.call_control("info")
            target_info = await b.call_control("info")
        assert target_info["rebuilding"] is False
        assert target_info["revision_counter"] == source_info["revision_counter"]
        graph = {
            k: d["parent"] for k, d in source_info["disks"].items() if k != source_info["head"]
        }
        assert len(graph) == 2  # s1 and the rebuild's system snapshot
        assert graph == {
            k: d["parent"] for k, d in target_info["disks"].items() if k != target_info["head"]
        }


async def test_one_rebuild_at_a_time_and_no_purge_revert_or_expand_beside_it(
    tmp_path: Path,
) -> None:
    async with replicas(tmp_path, healthy=3, stalled=0) as (rw, wo, other), volume([rw]) as vol:
        with pytest.raises(AlreadyExistsError):
            await add_replica(vol, rw)
        with pytest.raises(InvalidArgumentError):
            await add_replica(vol, "nonsense://x")
        vol.operation.state = VolumeOperation.PURGE
        with pytest.raises(ConflictError, match="busy \\(purge\\)"):
            await add_replica(vol, wo)
        vol.operation.state = VolumeOperation.NONE
        await _add_wo(vol, wo)
        with pytest.raises(ConflictError, match="rebuilding a replica already"):
            await add_replica(vol, other)
        with pytest.raises(ConflictError, match="revert refused"):
            await operations.revert(vol, "s1")
        with pytest.raises(ConflictError, match="expansion refused"):
            await operations.expand(vol, 8 * MiB)
        assert [m.address for m in vol.replicas.members] == [rw, wo]


async def test_a_rebuild_that_cannot_start_leaves_the_volume_as_it_was(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as (rw,), volume([rw]) as vol:
        with pytest.raises(NotFoundError, match=r"cannot use replica.*is a replica of volume v"):
            await add_replica(vol, f"unix:{tmp_path}/nobody.sock")
        assert [(m.address, m.mode) for m in vol.replicas.members] == [(rw, Mode.RW)]
        assert vol.operation.state is VolumeOperation.NONE
        await vol.write_batch([(0, b"x" * 4096, False)])


async def test_salvage_serves_a_faulted_volume_from_the_newest_replica(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (a, b), volume([a, b]) as vol:
        with pytest.raises(ConflictError, match="not faulted"):
            await operations.salvage(vol)
        await vol.write_batch([(0, b"\x01" * 4096, False)])
        await vol.flush()
        vol.links.fail(vol.replicas.members[0], "gone")  # a misses the next writes
        await vol.write_batch([(0, b"\x02" * 4096, False)])
        await vol.flush()
        vol.links.fail(vol.replicas.members[1], "gone")
        assert vol.replicas.health is Health.FAULTED
        address, why = await operations.salvage(vol)
        assert address == b
        assert "newest persisted revision counter" in why
        assert [m.mode for m in vol.replicas.members] == [Mode.ERR, Mode.RW]
        assert await vol.read_batch([(0, 4096)]) == [b"\x02" * 4096]


async def test_salvage_waits_its_turn_behind_another_long_operation(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as (a,), volume([a]) as vol:
        vol.links.fail(vol.replicas.members[0], "gone")
        await vol.operation.begin(VolumeOperation.PURGE)
        with pytest.raises(ConflictError, match=r"busy \(purge\): salvage refused"):
            await operations.salvage(vol)
        assert vol.replicas.health is Health.FAULTED  # nothing changed
        vol.operation.end()
        address, _ = await operations.salvage(vol)
        assert address == a
        assert vol.operation.state is VolumeOperation.NONE
        assert await vol.read_batch([(0, 4096)]) == [bytes(4096)]


async def test_a_returning_replica_is_compared_only_where_its_away_log_says(
    tmp_path: Path,
) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (a, b), volume([a, b]) as vol:
        await _learn_identities(vol)
        await vol.write_batch([(0, os.urandom(4 * MiB), False)])
        await vol.flush()
        vol.links.fail(vol.replicas.members[1], "cut off")  # b's process lives on: it comes back
        changed = os.urandom(8192)
        await vol.write_batch([(3 * MiB, changed, False)])  # while b is away
        progress = await add_replica(vol, b)
        assert progress.dirty == [(3 * MiB, 8192)]
        await _until_rebuilt(vol)
        assert progress.state is RebuildState.DONE, progress.error
        assert progress.record().delta is True
        assert progress.counters.sent_bytes == len(changed)  # the rest was not even compared
        assert await _read_replica(b, 0, 4 * MiB) == await _read_replica(a, 0, 4 * MiB)


async def test_without_a_trustworthy_log_everything_held_is_compared(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (a, b), volume([a, b]) as vol:
        await vol.write_batch([(0, os.urandom(4 * MiB), False)])
        await vol.flush()
        vol.links.fail(vol.replicas.members[1], "cut off")
        await vol.write_batch([(3 * MiB, os.urandom(8192), False)])
        # The engine never learnt which replica lives at b (no identity): no delta.
        progress = await add_replica(vol, b)
        assert progress.dirty is None
        await _until_rebuilt(vol)
        assert progress.state is RebuildState.DONE, progress.error
        assert progress.counters.sent_bytes == 8192  # found by comparing every held block
        assert await _read_replica(b, 0, 4 * MiB) == await _read_replica(a, 0, 4 * MiB)


async def test_a_second_return_sends_only_what_changed_since_the_first(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (a, b), volume([a, b]) as vol:
        await _learn_identities(vol)
        await vol.write_batch([(0, os.urandom(4 * MiB), False)])
        await vol.flush()
        for offset in (MiB, 2 * MiB):  # two departures, two returns
            vol.links.fail(vol.replicas.by_address(b), "cut off")  # type: ignore[arg-type]
            await vol.write_batch([(offset, os.urandom(4096), False)])
            progress = await add_replica(vol, b)
            await _until_rebuilt(vol)
            assert progress.state is RebuildState.DONE, progress.error
            # Only this departure's block: the first one's is in an older snapshot now.
            assert progress.counters.sent_bytes == 4096
            assert await _read_replica(b, 0, 4 * MiB) == await _read_replica(a, 0, 4 * MiB)


async def test_a_replica_its_disk_failed_is_compared_everywhere_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b's flush fails with EIO: its disk may have dropped what it acknowledged, wherever that
    was, so no away log vouches for the rest of its files: its rebuild compares everything."""
    real = os.fdatasync

    def failing_under_r1(fd: int) -> None:
        if "/r1/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        real(fd)

    modes, logged = [], []

    async def scenario() -> None:
        async with replicas(tmp_path, healthy=2, stalled=0) as (a, b), volume([a, b]) as vol:
            await _learn_identities(vol)
            await vol.write_batch([(0, os.urandom(4 * MiB), False)])
            await vol.flush()
            monkeypatch.setattr("lhtrio.replica.datapath.os.fdatasync", failing_under_r1)
            await vol.write_batch([(MiB, os.urandom(4096), False)])
            await vol.flush()  # a took it: the volume goes on, b failed
            modes.append(vol.replicas.members[1].mode)
            logged.append(vol.dirty.has(b))

    with pytest.raises(BaseExceptionGroup):  # (b's close says it must be rebuilt)
        await scenario()
    assert modes == [Mode.ERR]
    assert logged == [False]


async def test_a_replica_that_was_behind_when_it_failed_gets_no_away_log(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as (a, b), volume([a, b]) as vol:
        behind = vol.replicas.members[1]
        behind.synced = False  # as a replica set ERR at start (stale, unreachable) would be
        vol.links.fail(behind, "stale")
        assert not vol.dirty.has(b)  # it may lack more than this engine ever saw
        vol.links.fail(vol.replicas.members[0], "gone")
        assert vol.dirty.has(a)


async def test_a_replica_back_under_a_new_link_keeps_it_when_the_old_link_ends(
    tmp_path: Path,
) -> None:
    """The old link's task may end after the new link registered: it must leave that alone
    (it used to drop the new link by address, so the volume lost its client and, at shutdown,
    the link that links.close() should have ended)."""
    async with replicas(tmp_path, healthy=2, stalled=0) as (_, b), volume([_, b]) as vol:
        for _round in range(10):
            old = vol.replicas.by_address(b)
            assert old is not None
            vol.links.fail(old, "cut off")
            vol.replicas.remove(old)
            new = await _add_wo(vol, b)
            await trio.testing.wait_all_tasks_blocked()  # the old link's task has ended
            assert vol.links.client(new) is not None
            await vol.write_batch([(0, b"x" * 4096, False)])
            assert new.mode is Mode.WO


async def test_system_snapshots_of_rebuilds_do_not_pile_up(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=3, stalled=0) as (rw, a, b), volume([rw]) as vol:
        await vol.write_batch([(0, b"\x11" * MiB, False)])
        for target in (a, b):
            await add_replica(vol, target)
            await _until_rebuilt(vol)
            await vol.write_batch([(MiB, b"\x12" * 4096, False)])
            # An operator's operation waits for the purge the engine runs after a rebuild.
            await vol.operation.begin(VolumeOperation.EXPANSION)
            vol.operation.end()
        info = await vol.control.info_of_one()
        system = [
            name for name, disk in info.disks.items() if name != info.head and not disk.user_created
        ]
        # The first rebuild's snapshot was coalesced away; the second's is marked removed and
        # pruned (its child is the head), and goes with the next purge.
        assert len(system) == 1
        assert info.disks[system[0]].removed
        assert await _read_replica(b, 0, MiB) == b"\x11" * MiB
