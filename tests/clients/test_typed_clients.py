"""The typed clients against real services: every declared result shape is what the service
answers (a mismatch is a RemoteProtocolError from the client), and the values mean what the
models say."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from lhtrio.clients.engine import EngineClient
from lhtrio.clients.replica import ReplicaClient
from lhtrio.engine.server import serve_engine
from lhtrio.engine.volume import Volume
from lhtrio.models.engine import RebuildProgress, RebuildState
from lhtrio.models.replica import ActionKind, SyncState, snapshot_of
from lhtrio.models.volume import FrontendState, Health, Mode
from lhtrio.net import Address, open_rpc_client
from lhtrio.replica.server import serve_replica
from lhtrio.wire import Role

MiB = 1 << 20
SIZE = 4 * MiB


async def _no_frontend(
    volume: Volume,
    *,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started("none://")
    await shutdown.wait()


async def _replica(nursery: trio.Nursery, path: Path, name: str) -> str:
    address: str = await nursery.start(
        functools.partial(
            serve_replica,
            str(path),
            size=SIZE,
            volume="v",
            instance=name,
            listen=Address(host="127.0.0.1", port=0),
        )
    )
    return address


@asynccontextmanager
async def _volume(tmp_path: Path) -> AsyncIterator[tuple[EngineClient, list[str], str]]:
    """An engine over replicas r0 and r1; r2 is running but not in the volume."""
    async with trio.open_nursery() as nursery:
        addresses = [await _replica(nursery, tmp_path / f"r{i}", f"r{i}") for i in range(3)]
        stop = trio.Event()
        async with trio.open_nursery() as engine:
            host, port, _ = await engine.start(
                functools.partial(
                    serve_engine, "v", SIZE, addresses[:2], frontend=_no_frontend, stop=stop
                )
            )
            async with open_rpc_client(f"{host}:{port}", role=Role.ENGINE) as rpc:
                yield EngineClient(rpc), addresses[:2], addresses[2]
            stop.set()
        nursery.cancel_scope.cancel()


async def test_every_engine_call_answers_its_declared_type(tmp_path: Path) -> None:
    async with _volume(tmp_path) as (engine, members, spare):
        info = await engine.info()
        assert info.volume == "v"
        assert info.size == SIZE
        assert info.state is Health.HEALTHY
        assert [r.address for r in info.replicas] == members
        assert {r.mode for r in info.replicas} == {Mode.RW}
        assert await engine.snapshot_create("s1", {"app": "db"}) == "s1"
        generated = await engine.snapshot_create()
        snapshots = {s.name: s for s in await engine.snapshot_ls()}
        assert snapshots.keys() == {"s1", generated}
        assert snapshots["s1"].labels == {"app": "db"}
        assert snapshots[generated].parent == "s1"
        assert snapshots["s1"].in_chain
        await engine.snapshot_rm("s1")
        removed = {s.name: s.removed for s in await engine.snapshot_ls()}
        assert removed == {"s1": True, generated: False}
        await engine.snapshot_purge()  # s1 is coalesced into its child
        assert [s.name for s in await engine.snapshot_ls()] == [generated]
        stopped = await engine.frontend_stop()
        assert stopped.frontend.state is FrontendState.STOPPED
        await engine.snapshot_revert(generated)
        assert (await engine.frontend_start()).frontend.state is FrontendState.RUNNING
        assert await engine.rebuild_status() is None
        added = await engine.replica_add(spare)
        assert added.address == spare
        progress: RebuildProgress | None = added
        while progress is not None and progress.running:
            progress = await engine.rebuild_status(wait=5.0)
        assert progress is not None
        assert progress.state is RebuildState.DONE, progress
        links = await engine.replica_ls()
        assert {link.address: link.mode for link in links} == dict.fromkeys(
            [*members, spare], Mode.RW
        )
        after = await engine.replica_rm(members[0])
        assert members[0] not in [r.address for r in after.replicas]
        assert (await engine.expand(SIZE + MiB)).size == SIZE + MiB


async def test_every_replica_call_answers_its_declared_type(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        address = await _replica(nursery, tmp_path / "r0", "r0")
        async with open_rpc_client(address, volume="v", role=Role.REPLICA) as rpc:
            replica = ReplicaClient(rpc)
            info = await replica.info()
            assert info.volume == "v"
            assert info.size == SIZE
            assert await replica.allocation(0, SIZE) == [(SIZE, False)]
            info = await replica.snapshot("s1", created="2026-12-04T10:00:00Z", labels={"a": "b"})
            disk = info.snapshot("s1")
            assert disk is not None
            assert snapshot_of(disk.name) == "s1"
            assert disk.labels == {"a": "b"}
            await replica.snapshot("s2")
            file = "volume-snap-s1.img"
            checksum = await replica.checksum(file)
            assert checksum.method
            assert len(checksum.checksum) == 64
            assert (await replica.file_info(file)).size == SIZE
            assert await replica.file_map(file) == []
            assert await replica.file_diff(file, [], b"") == []
            data = await replica.file_read(file, [(0, 4096)])
            assert bytes(data.data) == bytes(4096)
            await replica.mark_removed(file)
            actions = await replica.prepare_remove(file)
            assert (actions[0].kind, actions[0].source) == (ActionKind.COALESCE, file)
            assert (await replica.purge()).purging
            status = await replica.purge_status(wait=True)
            assert not status.purging
            assert status.error == ""
            assert (await replica.info()).snapshot("s1") is None
            assert await replica.intent_regions() == []
            await replica.intent_rotate()
            assert await replica.intent_clear(everything=True) == 0
            assert (await replica.sync_status()).state is SyncState.IDLE
            assert (await replica.sync_cancel()).state is SyncState.IDLE
            assert (await replica.set_revision_counter(7)).revision_counter == 7
            assert (await replica.set_rebuilding(False)).rebuilding is False
            assert (await replica.expand(SIZE + MiB)).size == SIZE + MiB
        nursery.cancel_scope.cancel()
