"""The engine's replica-set rules and its fan-out, with in-process replicas (autojump clock)."""

from __future__ import annotations

import functools
import queue
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from lhtrio.engine import operations
from lhtrio.engine.replicaset import (
    Health,
    Member,
    Mode,
    ReplicaSet,
    choose_salvage,
    decide_start,
)
from lhtrio.engine.volume import Volume
from lhtrio.errors import OutOfRangeError, StorageError
from lhtrio.models.replica import MemberRecord, ReplicaInfo, SetMember
from lhtrio.net import parse_address, serve_rpc
from lhtrio.net.reactor import open_reactor
from lhtrio.replica.server import serve_replica
from lhtrio.wire import Call, Identity, Reply, Request, Result, Role, Write
from tests.net.polls import RecordedPolls

MiB = 1 << 20
# Virtual time jumps only after this much real idleness: replicas fsync in worker threads, which
# the clock cannot see, and must not look stalled because of it.
AUTOJUMP = 0.5


def _info(
    counter: int, *, head: int = 0, mtime: int = 0, rebuilding: bool = False, size: int = MiB
) -> ReplicaInfo:
    """A replica's ``info`` with what the start decision and salvage read."""
    return ReplicaInfo(
        path="/r",
        volume="v",
        instance="r",
        size=size,
        sector_size=512,
        head="volume-head-000.img",
        parent="",
        dirty=False,
        rebuilding=rebuilding,
        revision_counter=counter,
        persisted_revision_counter=counter,
        chain=("volume-head-000.img",),
        disks={},
        head_allocated=head,
        last_modify_time=mtime,
    )


def test_decide_start_refuses_stale_wrong_size_and_unreachable() -> None:
    info = _info(7)
    decision = decide_start(
        [
            ("a", info),
            ("b", _info(5)),
            ("c", _info(7, size=2 * MiB)),
            ("d", "connection refused"),
            ("e", info),
        ],
        size=MiB,
    )
    assert decision.modes == {
        "a": Mode.RW,
        "b": Mode.ERR,
        "c": Mode.ERR,
        "d": Mode.ERR,
        "e": Mode.RW,
    }
    assert "stale: revision counter 5 is behind 7" in decision.reasons["b"]
    assert "size" in decision.reasons["c"]
    assert decision.reasons["d"] == "connection refused"


def test_decide_start_refuses_an_unfinished_rebuild_even_with_the_newest_counter() -> None:
    decision = decide_start([("a", _info(3)), ("b", _info(9, rebuilding=True))], size=MiB)
    assert decision.modes == {"a": Mode.RW, "b": Mode.ERR}
    assert "rebuild into it did not finish" in decision.reasons["b"]


def _held(epoch: int, *names: str) -> MemberRecord:
    return MemberRecord(epoch=epoch, members=tuple(SetMember(n, f"tcp://{n}:1") for n in names))


def test_decide_start_takes_only_the_replicas_of_the_newest_record() -> None:
    """c was failed at epoch 4 (a and b recorded without it); its counter cannot say so when
    it equals theirs (its own flush came late), the record does."""
    infos: list[tuple[str, ReplicaInfo | str]] = [
        (n, attrs.evolve(_info(7), instance=n)) for n in "abc"
    ]
    records = {"a": _held(4, "a", "b"), "b": _held(4, "a", "b"), "c": _held(3, "a", "b", "c")}
    decision = decide_start(infos, size=MiB, records=records)
    assert decision.modes == {"a": Mode.RW, "b": Mode.RW, "c": Mode.ERR}
    assert (
        "not among the replicas that held every write at epoch 4 (a, b)" in (decision.reasons["c"])
    )


def test_decide_start_serves_nothing_while_a_replica_of_the_newest_record_may_be_unreachable() -> (
    None
):
    """a alone held the last writes (epoch 5); b and c answer, a does not: b's counter is the
    higher of the two, and still it must not serve."""
    infos: list[tuple[str, ReplicaInfo | str]] = [
        ("a", "connection refused"),
        ("b", attrs.evolve(_info(9), instance="b")),
        ("c", attrs.evolve(_info(6), instance="c")),
    ]
    records = {"b": _held(4, "a", "b"), "c": _held(3, "a", "b", "c")}
    decision = decide_start(infos, size=MiB, records=records)
    assert Mode.RW not in decision.modes.values()
    assert "waiting for a" in decision.reasons["b"]
    # Told to salvage, the operator accepts what b has.
    assert decide_start(infos, size=MiB, records=records, salvage=True).modes["b"] is Mode.RW
    # Every address answered: a member not given is its owner's decision (the manager's).
    answered = infos[1:]
    assert decide_start(answered, size=MiB, records=records).modes == {
        "b": Mode.RW,
        "c": Mode.ERR,
    }


def test_decide_start_does_not_take_a_replica_recreated_under_a_members_name() -> None:
    """a's directory was replaced by an empty one (same instance name, no record)."""
    infos: list[tuple[str, ReplicaInfo | str]] = [
        ("a", attrs.evolve(_info(0), instance="a")),
        ("b", attrs.evolve(_info(0), instance="b")),
    ]
    records = {"a": MemberRecord(), "b": _held(2, "a", "b")}
    decision = decide_start(infos, size=MiB, records=records)
    assert decision.modes == {"a": Mode.ERR, "b": Mode.RW}
    assert "not among" in decision.reasons["a"]


def test_decide_start_without_records_goes_by_the_counters() -> None:
    infos: list[tuple[str, ReplicaInfo | str]] = [("a", _info(3)), ("b", _info(5))]
    records = {"a": MemberRecord(), "b": MemberRecord()}
    assert decide_start(infos, size=MiB, records=records).modes == {"a": Mode.ERR, "b": Mode.RW}


def test_salvage_only_when_nothing_qualifies_and_it_picks_the_newest_data() -> None:
    healthy = decide_start([("a", _info(3)), ("b", _info(5))], size=MiB, salvage=True)
    assert healthy.modes == {"a": Mode.ERR, "b": Mode.RW}
    assert "salvaged" not in healthy.reasons.get("b", "")
    stuck: list[tuple[str, ReplicaInfo | str]] = [
        ("a", _info(3, rebuilding=True)),
        ("b", _info(5, rebuilding=True)),
        ("c", "down"),
    ]
    assert Mode.RW not in decide_start(stuck, size=MiB).modes.values()
    salvaged = decide_start(stuck, size=MiB, salvage=True)
    assert salvaged.modes == {"a": Mode.ERR, "b": Mode.RW, "c": Mode.ERR}
    assert "newest persisted revision counter 5" in salvaged.reasons["b"]
    assert "did not finish" in salvaged.reasons["b"]


def test_choose_salvage_breaks_ties_by_head_size_then_mtime() -> None:
    by_head = choose_salvage(
        [("a", _info(4, head=10, mtime=9)), ("b", _info(4, head=20, mtime=1))], size=MiB
    )
    assert by_head is not None
    assert by_head[0] == "b"
    assert "largest head (20 bytes allocated)" in by_head[1]
    by_mtime = choose_salvage(
        [("a", _info(4, head=10, mtime=9)), ("b", _info(4, head=10, mtime=1))], size=MiB
    )
    assert by_mtime is not None
    assert by_mtime[0] == "a"
    assert "newest modification" in by_mtime[1]
    finished_first = choose_salvage([("a", _info(2)), ("b", _info(8, rebuilding=True))], size=MiB)
    assert finished_first is not None
    assert finished_first[0] == "a"
    assert choose_salvage([("a", "down"), ("b", _info(1, size=2 * MiB))], size=MiB) is None


def test_health_timeouts_and_round_robin() -> None:
    members = [Member(f"r{i}", Mode.RW) for i in range(3)]
    replicas = ReplicaSet(members, short_timeout=8)
    assert replicas.health is Health.HEALTHY
    assert [m.address for m in replicas.read_order()] == ["r0", "r1", "r2"]
    assert [m.address for m in replicas.read_order()] == ["r1", "r2", "r0"]
    assert replicas.timeout(members[0]) == 8
    replicas.fail(members[0], "gone")
    replicas.fail(members[1], "gone")
    assert replicas.health is Health.DEGRADED
    assert replicas.timeout(members[2]) == 16  # the last RW replica waits twice as long
    replicas.fail(members[2], "gone")
    assert replicas.health is Health.FAULTED
    assert replicas.read_order() == []
    replicas.fail(members[2], "again")
    assert members[2].error == "gone"  # ERR is final; the first reason stays


def test_the_owner_is_told_of_every_mode_and_membership_change() -> None:
    members = [Member(f"r{i}", Mode.RW) for i in range(2)]
    replicas = ReplicaSet(members)
    seen: list[dict[str, Mode]] = []
    replicas.on_change = lambda: seen.append({m.address: m.mode for m in replicas.members})
    replicas.fail(members[0], "gone")
    replicas.fail(members[0], "again")  # no change: not told
    spare = Member("r2", Mode.WO)
    replicas.add(spare)
    replicas.promote(spare)
    replicas.remove(members[0])
    assert seen == [
        {"r0": Mode.ERR, "r1": Mode.RW},
        {"r0": Mode.ERR, "r1": Mode.RW, "r2": Mode.WO},
        {"r0": Mode.ERR, "r1": Mode.RW, "r2": Mode.RW},
        {"r1": Mode.RW, "r2": Mode.RW},
    ]


def _stalling(request: Request) -> Reply | Awaitable[Reply]:
    """A replica that answers ``info`` but never finishes any I/O."""
    if isinstance(request, Call) and request.name == "info":
        return Result({"size": 4 * MiB, "persisted_revision_counter": 0})

    async def never() -> Reply:
        await trio.sleep_forever()
        raise AssertionError

    return never()


@asynccontextmanager
async def replicas(tmp_path: Path, healthy: int, stalled: int) -> AsyncIterator[list[str]]:
    async with trio.open_nursery() as nursery:
        addresses = []
        for n in range(healthy):
            address = await nursery.start(
                functools.partial(
                    serve_replica,
                    str(tmp_path / f"r{n}"),
                    size=4 * MiB,
                    volume="v",
                    instance=f"r{n}",
                    listen=parse_address(f"unix:{tmp_path}/r{n}.sock" if n % 2 else "127.0.0.1:0"),
                )
            )
            addresses.append(address)
        for _ in range(stalled):
            host, port = await nursery.start(
                functools.partial(
                    serve_rpc,
                    _stalling,
                    "127.0.0.1",
                    0,
                    identity=Identity(volume="v", role=Role.REPLICA),
                )
            )
            addresses.append(f"tcp://{host}:{port}")
        yield addresses
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def volume(
    addresses: list[str], *, linger: float = 0.0, spin: float = 0.0
) -> AsyncIterator[Volume]:
    async with open_reactor() as reactor, trio.open_nursery() as nursery:
        members = [Member(a, Mode.RW, synced=True) for a in addresses]
        vol = Volume("v", 4 * MiB, ReplicaSet(members), nursery, reactor, linger=linger, spin=spin)
        try:
            for member in members:
                await nursery.start(vol.links.connect, member)
            yield vol
        finally:
            vol.links.close()  # also when the test failed: its links would hold the nursery open


@pytest.mark.slow
async def test_a_stalled_replica_is_failed_after_8_seconds(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=1, stalled=1) as addresses, volume(addresses) as vol:
        start = trio.current_time()
        await vol.write_batch([(0, b"x" * 4096, False)])
        assert 8 <= trio.current_time() - start < 16
        assert [m.mode for m in vol.replicas.members] == [Mode.RW, Mode.ERR]
        assert "stalled: no answer within 8 s" in vol.replicas.members[1].error
        assert vol.replicas.health is Health.DEGRADED
        assert await vol.read_batch([(0, 4096)]) == [b"x" * 4096]


@pytest.mark.slow
async def test_the_last_replica_gets_16_seconds_then_the_volume_faults(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=0, stalled=1) as addresses, volume(addresses) as vol:
        start = trio.current_time()
        with pytest.raises(StorageError, match="faulted"):
            await vol.write_batch([(0, b"x" * 4096, False)])
        assert 16 <= trio.current_time() - start < 24
        assert vol.replicas.health is Health.FAULTED


async def _cuttable(
    target: str, cut: trio.Event, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """A TCP relay to ``target`` that, once ``cut`` is set, silently drops everything (a network
    partition without a reset: only a ping can tell)."""
    address = parse_address(target)

    async def relay(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        while data := await source.receive_some(65536):
            if not cut.is_set():
                await sink.send_all(data)

    async def serve(client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream(address.host, address.port)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(relay, client, upstream)
            nursery.start_soon(relay, upstream, client)

    async with trio.open_nursery() as nursery:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, serve, [listener])
        task_status.started(f"tcp://127.0.0.1:{listener.socket.getsockname()[1]}")


@pytest.mark.slow
async def test_an_idle_replica_that_stops_answering_pings_is_failed(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    cut = trio.Event()
    async with (
        replicas(tmp_path, healthy=2, stalled=0) as (tcp, unix),
        trio.open_nursery() as relays,
    ):
        relayed = await relays.start(_cuttable, tcp, cut)
        async with open_reactor() as reactor, trio.open_nursery() as nursery:
            members = [Member(a, Mode.RW, synced=True) for a in (unix, relayed)]
            vol = Volume("v", 4 * MiB, ReplicaSet(members), nursery, reactor, local=False)
            try:
                for member in members:
                    await nursery.start(vol.links.connect, member)
                await trio.sleep(3)  # idle: pinged, and answering
                assert [m.mode for m in members] == [Mode.RW, Mode.RW]
                failed = trio.Event()

                def changed() -> None:
                    if members[1].mode is Mode.ERR:
                        failed.set()

                vol.replicas.on_change = changed
                cut.set()
                start = trio.current_time()
                await failed.wait()
                # its ping, sent within 2 s of the cut, went unanswered for 8 s
                assert 8 <= trio.current_time() - start < 10.5
                assert members[1].error == "did not answer a ping in time"
                assert members[0].mode is Mode.RW
            finally:
                vol.links.close()
        relays.cancel_scope.cancel()


async def test_writes_reach_every_replica_and_reads_fail_over(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=3, stalled=0) as addresses, volume(addresses) as vol:
        await vol.write_batch([(0, b"a" * 4096, False), (8192, b"b" * 100, True)])
        for _ in range(3):  # round robin over every replica
            assert await vol.read_batch([(0, 4096), (8192, 100)]) == [b"a" * 4096, b"b" * 100]
        vol.links.fail(vol.replicas.members[0], "test")
        assert await vol.read_batch([(8192, 100)]) == [b"b" * 100]
        infos = [await vol.links.client(m).call_control("info") for m in vol.replicas.members[1:]]  # type: ignore[union-attr]
        assert {i["revision_counter"] for i in infos} == {2}


async def test_snapshot_reaches_every_replica_with_the_same_name(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses, volume(addresses) as vol:
        await vol.write_batch([(0, b"s" * 4096, False)])
        await operations.snapshot(vol, "s1", labels={"k": "v"}, user_created=True)
        for n in range(2):
            assert (tmp_path / f"r{n}" / "volume-snap-s1.img").exists()


async def test_a_replica_of_another_volume_is_refused(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            functools.partial(
                serve_replica, str(tmp_path / "other"), size=4 * MiB, volume="w", instance="w-r"
            )
        )
        async with volume([address]) as vol:
            (member,) = vol.replicas.members
            assert member.mode is Mode.ERR
            assert "serves volume 'w'" in member.error
            with pytest.raises(StorageError, match="faulted"):
                await vol.write_batch([(0, b"x" * 4096, False)])
        nursery.cancel_scope.cancel()
    # Nothing reached the other volume's replica.
    assert (tmp_path / "other" / "volume-head-000.img").stat().st_blocks == 0


@contextmanager
def replicas_in_a_thread(tmp_path: Path, count: int) -> Iterator[list[str]]:
    """Replicas on an event loop of their own: a volume that lingers blocks its own loop."""
    ready: queue.Queue[tuple[trio.lowlevel.TrioToken, trio.Event, list[str]]] = queue.Queue()

    async def serve() -> None:
        stop = trio.Event()
        async with replicas(tmp_path, healthy=count, stalled=0) as addresses:
            ready.put((trio.lowlevel.current_trio_token(), stop, addresses))
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(serve,))
    thread.start()
    token, stop, addresses = ready.get(timeout=30)
    try:
        yield addresses
    finally:
        token.run_sync_soon(stop.set)
        thread.join()


@contextmanager
def _socketpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


class _Outcomes:
    """Collects what ``start_writes`` / ``start_reads`` report, for awaiting in a test."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.event = trio.Event()

    def __call__(self, outcome: Any) -> None:
        self.items.append(outcome)
        self.event.set()

    async def next(self) -> Any:
        while not self.items:
            await self.event.wait()
            self.event = trio.Event()
        return self.items.pop(0)


async def test_started_writes_and_reads_complete_by_callback(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses, volume(addresses) as vol:
        outcomes = _Outcomes()
        assert vol.start_writes([(0, b"w" * 4096, False), (4096, b"v" * 512, True)], outcomes)
        assert await outcomes.next() is None
        for _ in range(2):  # one read from each replica, round robin
            assert vol.start_reads([(0, 4096), (4096, 512)], outcomes)
            assert await outcomes.next() == [b"w" * 4096, b"v" * 512]
        for member in vol.replicas.members:
            info = await vol.links.client(member).call_control("info")  # type: ignore[union-attr]
            assert info["revision_counter"] == 2


@pytest.mark.slow
async def test_a_started_write_survives_a_stalled_replica(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=1, stalled=1) as addresses, volume(addresses) as vol:
        outcomes = _Outcomes()
        start = trio.current_time()
        assert vol.start_writes([(0, b"x" * 4096, False)], outcomes)
        assert await outcomes.next() is None
        assert 8 <= trio.current_time() - start < 16
        healthy, stalled = vol.replicas.members
        assert (healthy.mode, stalled.mode) == (Mode.RW, Mode.ERR)
        assert "stalled: no answer within 8 s" in stalled.error
        # The survivor was flushed before the write was answered: its counter is persisted.
        info = await vol.links.client(healthy).call_control("info")  # type: ignore[union-attr]
        assert info["persisted_revision_counter"] == info["revision_counter"] == 1


@pytest.mark.slow
async def test_a_started_read_fails_over_from_a_stalled_replica(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=1, stalled=1) as addresses, volume(addresses) as vol:
        healthy, stalled = vol.replicas.members
        await vol.links.client(healthy).call_many([Write(0, b"r" * 4096)])  # type: ignore[union-attr]
        outcomes = _Outcomes()
        start = trio.current_time()
        for _ in range(2):  # round robin: one of the two reads asks the stalled one first
            assert vol.start_reads([(0, 4096)], outcomes)
            assert await outcomes.next() == [b"r" * 4096]
        assert 8 <= trio.current_time() - start < 16
        assert stalled.mode is Mode.ERR
        assert "stalled: no answer within 8 s" in stalled.error


async def test_a_lingering_volume_answers_its_lone_batch_in_the_calling_task(
    tmp_path: Path,
) -> None:
    with replicas_in_a_thread(tmp_path, 2) as addresses, _socketpair() as (client, peer):
        async with volume(addresses, linger=0.2) as vol:
            await vol.flush()  # (starts the stall watchdog: a new task would end a linger)
            outcomes = _Outcomes()
            assert vol.start_writes([(0, b"l" * 4096, False)], outcomes)
            # The client sends nothing more: the answers, then the budget, end the wait.
            assert not vol.linger(client.fileno())
            assert outcomes.items == [None]  # (the reactor's task has had no chance to run)
            assert vol.start_reads([(0, 4096)], outcomes)
            assert not vol.linger(client.fileno())
            assert outcomes.items == [None, [b"l" * 4096]]
            # The client's next request ends it at once, unread.
            outcomes = _Outcomes()
            peer.send(b"next")
            assert vol.start_writes([(0, b"m" * 4096, False)], outcomes)
            assert vol.linger(client.fileno())
            assert client.recv(10) == b"next"
            assert await outcomes.next() is None
            # Two batches in flight: not a lone one, left to the reactor's task.
            assert vol.start_writes([(0, b"m" * 4096, False)], outcomes)
            assert vol.start_writes([(4096, b"n" * 4096, False)], outcomes)
            assert not vol.linger(client.fileno())
            assert outcomes.items == []
            assert [await outcomes.next(), await outcomes.next()] == [None, None]
        async with volume(addresses) as vol:  # no budget: linger() does nothing
            assert vol.start_reads([(0, 8192)], outcomes)
            assert not vol.linger(client.fileno())
            assert outcomes.items == []
            assert await outcomes.next() == [b"m" * 4096 + b"n" * 4096]


async def test_a_lingering_volume_busy_polls_for_a_lone_request_never_for_a_batch(
    tmp_path: Path,
) -> None:
    with replicas_in_a_thread(tmp_path, 2) as addresses, _socketpair() as (client, _):
        async with volume(addresses, linger=0.2, spin=0.01) as vol:
            await vol.flush()  # (starts the stall watchdog: a new task would end a linger)
            for writes, spins_while_out in [
                ([(0, b"s" * 4096, False)], True),  # one request: queue depth 1
                ([(0, b"s" * 4096, False), (8192, b"t" * 4096, False)], False),
            ]:
                outcomes = _Outcomes()
                polls = RecordedPolls(vol.reactor, note=functools.partial(len, outcomes.items))
                assert vol.start_writes(writes, outcomes)
                assert not vol.linger(client.fileno())  # the client sends nothing: budget ends it
                assert outcomes.items == [None]
                polls.restore()
                polled = list(zip(polls.timeouts, polls.notes, strict=True))
                while_out = [t for t, done in polled if not done]
                after = [t for t, done in polled if done]
                assert while_out
                assert (0 in while_out) is spins_while_out
                assert after.count(0) >= 1  # polled for the next request ...
                assert after[-1] > 0  # ... for the spin budget, then slept out the linger budget


async def test_start_refuses_while_paused_and_out_of_range(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as addresses, volume(addresses) as vol:
        outcomes = _Outcomes()
        with pytest.raises(OutOfRangeError):
            vol.start_writes([(4 * MiB - 4096, b"x" * 8192, False)], outcomes)
        with pytest.raises(OutOfRangeError):
            vol.start_reads([(4 * MiB, 1)], outcomes)
        async with vol.quiesced():
            assert not vol.start_writes([(0, b"x" * 4096, False)], outcomes)
            assert not vol.start_reads([(0, 4096)], outcomes)
        assert outcomes.items == []
        # Nothing was written by any of them.
        assert await vol.read_batch([(0, 4096)]) == [bytes(4096)]


async def test_started_io_on_a_faulted_volume_fails_at_once(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as addresses, volume(addresses) as vol:
        vol.links.fail(vol.replicas.members[0], "test")
        outcomes = _Outcomes()
        assert vol.start_writes([(0, b"x" * 4096, False)], outcomes)
        assert isinstance(outcomes.items.pop(), StorageError)
        assert vol.start_reads([(0, 4096)], outcomes)
        assert isinstance(outcomes.items.pop(), StorageError)
