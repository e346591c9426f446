"""How an engine starts, refuses, and stops (issue 16: items 2, 10, 11, 12, 15, 16, 17).

In-process replicas and engines under the autojump clock: graceful stops through the ``stop``
event, refusals before anything is served, requests that are the caller's fault never failing a
replica, and long operations that never stay "busy" after a failure.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from lhtrio.engine import frontend as frontendlib
from lhtrio.engine.replica_add import add_replica
from lhtrio.engine.replicaset import Health, Member, Mode, ReplicaSet
from lhtrio.engine.server import serve_engine
from lhtrio.engine.volume import Volume
from lhtrio.errors import (
    AlreadyExistsError,
    IdentityMismatchError,
    InvalidArgumentError,
    LhtrioError,
    NoSpaceError,
    NotFoundError,
    StorageError,
)
from lhtrio.models.volume import VolumeOperation
from lhtrio.net import open_rpc_client, serve_rpc
from lhtrio.wire import Call, Identity, Reply, Request, Result, Role
from tests.engine.test_volume import AUTOJUMP, MiB, replicas, volume


def test_a_volume_with_fewer_rw_replicas_than_it_should_have_is_degraded() -> None:
    members = [Member(f"r{i}", Mode.RW) for i in range(3)]
    replicas = ReplicaSet(members)
    assert replicas.health is Health.HEALTHY
    replicas.fail(members[1], "gone")
    replicas.remove(members[1])
    replicas.fail(members[2], "gone")
    replicas.remove(members[2])
    # One RW replica left, and it is the only member: still one of the three it should have.
    assert replicas.health is Health.DEGRADED
    for n in (1, 2):
        replicas.add(Member(f"new{n}", Mode.WO))
    assert replicas.health is Health.DEGRADED  # rebuilding
    for member in replicas.members[1:]:
        replicas.promote(member)
    assert replicas.health is Health.HEALTHY


def _refusing(error: LhtrioError) -> Any:
    """A replica that answers ``info`` and refuses every other call with ``error``."""

    def handler(request: Request) -> Reply | Awaitable[Reply]:
        if isinstance(request, Call) and request.name == "info":
            return Result({"size": 4 * MiB, "persisted_revision_counter": 0})
        raise error

    return handler


async def _fake_replicas(nursery: trio.Nursery, handlers: list[Any]) -> list[str]:
    addresses = []
    for handler in handlers:
        host, port = await nursery.start(
            functools.partial(
                serve_rpc,
                handler,
                "127.0.0.1",
                0,
                identity=Identity(volume="v", role=Role.REPLICA),
            )
        )
        addresses.append(f"tcp://{host}:{port}")
    return addresses


async def test_an_error_every_replica_answers_is_the_requests_and_fails_none() -> None:
    async with trio.open_nursery() as nursery:
        full = NoSpaceError("no space for the snapshot's metadata")
        addresses = await _fake_replicas(nursery, [_refusing(full), _refusing(full)])
        async with volume(addresses) as vol:
            with pytest.raises(NoSpaceError, match=r"^volume v: no space"):
                await vol.control.all("snapshot", lambda replica: replica.snapshot("s1"))
            assert [m.mode for m in vol.replicas.members] == [Mode.RW, Mode.RW]
        nursery.cancel_scope.cancel()


async def test_a_replica_that_alone_fails_a_control_call_is_failed(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        broken = await _fake_replicas(nursery, [_refusing(StorageError("disk gone"))])
        async with replicas(tmp_path, healthy=1, stalled=0) as good, volume(good + broken) as vol:
            await vol.control.all("snapshot", lambda replica: replica.snapshot("s1"))
            assert [m.mode for m in vol.replicas.members] == [Mode.RW, Mode.ERR]
            assert "disk gone" in vol.replicas.members[1].error
        nursery.cancel_scope.cancel()


async def test_adding_something_that_is_not_a_replica_is_refused_and_leaves_the_volume_free(
    tmp_path: Path,
) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as addresses, trio.open_nursery() as n:
        host, port, _ = await n.start(functools.partial(serve_engine, "v", 4 * MiB, addresses))
        async with volume(addresses[:1]) as vol:
            # The engine's own control endpoint answers to volume "v" too, but it is an engine.
            with pytest.raises(LhtrioError, match=r"is an engine.*not a replica"):
                await add_replica(vol, f"tcp://{host}:{port}")
            assert vol.operation.state is VolumeOperation.NONE
            assert vol.replicas.health is Health.HEALTHY
        n.cancel_scope.cancel()


async def test_a_replica_refuses_a_client_that_does_not_name_the_volume(tmp_path: Path) -> None:
    async with replicas(tmp_path, healthy=1, stalled=0) as (address,):
        with pytest.raises(IdentityMismatchError, match="only clients that name the volume"):
            async with open_rpc_client(address, client="nameless engine"):
                pass  # pragma: no cover
        with pytest.raises(IdentityMismatchError, match="malformed hello"):
            async with open_rpc_client(address, volume="../x"):
                pass  # pragma: no cover


async def test_an_engine_refuses_an_empty_or_malformed_volume_name() -> None:
    for name in ("", "../x", "a" * 64, "v/1"):
        with pytest.raises(InvalidArgumentError, match="invalid volume name"):
            await serve_engine(name, 4 * MiB, ["tcp://127.0.0.1:1"])


async def test_an_engine_whose_replicas_all_have_another_size_refuses_to_start(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses:
        with pytest.raises(BaseExceptionGroup) as refused:
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve_engine, "v", 1000 * 4096, addresses))
        assert refused.group_contains(
            InvalidArgumentError,
            match=r"given 4096000 bytes.* is 4Mi \(4194304 bytes\)",
            depth=None,
        )


async def test_an_engine_whose_control_address_is_taken_fails_at_once(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with replicas(tmp_path, healthy=1, stalled=0) as addresses:
            start = trio.current_time()
            with pytest.raises(BaseExceptionGroup) as failed:
                async with trio.open_nursery() as nursery:
                    await nursery.start(
                        functools.partial(serve_engine, "v", 4 * MiB, addresses, port=port)
                    )
            assert failed.group_contains(LhtrioError, match="in use", depth=None)
            # Its replica links (shielded, for the final flush) did not keep it alive.
            assert trio.current_time() - start < 1


async def test_a_graceful_stop_lets_the_frontend_finish_what_it_took_then_flushes(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    seen: list[str] = []

    async def frontend(
        volume: Volume,
        *,
        shutdown: trio.Event,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started("fake://front")
        await shutdown.wait()
        seen.append("shutdown")
        # A request that was in flight when the stop came: it must still reach the replicas.
        await volume.write_batch([(0, b"d" * 4096, False)])
        seen.append("answered")

    stop = trio.Event()
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses:
        async with trio.open_nursery() as nursery:
            _, _, front = await nursery.start(
                functools.partial(
                    serve_engine, "v", 4 * MiB, addresses, frontend=frontend, stop=stop
                )
            )
            assert front == "fake://front"
            stop.set()
        assert seen == ["shutdown", "answered"]  # serve_engine returned after the drain
        for address in addresses:
            async with open_rpc_client(address, volume="v", role=Role.REPLICA) as client:
                info = await client.call_control("info")
                # Flushed: the write's count reached the persisted revision counter.
                assert info["persisted_revision_counter"] == info["revision_counter"] >= 1


@pytest.mark.slow
async def test_a_frontend_that_ignores_its_stop_is_cancelled_at_the_drain_deadline(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP

    async def stubborn(
        volume: Volume,
        *,
        shutdown: trio.Event,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started("fake://stubborn")
        await trio.sleep_forever()

    stop = trio.Event()
    async with replicas(tmp_path, healthy=1, stalled=0) as addresses:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_engine, "v", 4 * MiB, addresses, frontend=stubborn, stop=stop
                )
            )
            stop.set()
            start = trio.current_time()
        took = trio.current_time() - start
        assert frontendlib.DRAIN_DEADLINE <= took < frontendlib.DRAIN_DEADLINE + 5


async def test_a_snapshot_error_names_the_volume_and_is_found_before_io_pauses(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = AUTOJUMP
    async with replicas(tmp_path, healthy=2, stalled=0) as addresses, trio.open_nursery() as n:
        host, port, _ = await n.start(functools.partial(serve_engine, "v", 4 * MiB, addresses))
        async with open_rpc_client(f"{host}:{port}", role=Role.ENGINE) as client:
            await client.call_control("snapshot_create", name="s1")
            with pytest.raises(AlreadyExistsError, match=r"^volume v has a snapshot 's1'"):
                await client.call_control("snapshot_create", name="s1")
            with pytest.raises(NotFoundError, match=r"^volume v has no snapshot 'nope'"):
                await client.call_control("snapshot_rm", name="nope")
            info = await client.call_control("info")
        assert [r["mode"] for r in info["replicas"]] == ["RW", "RW"]
        n.cancel_scope.cancel()
