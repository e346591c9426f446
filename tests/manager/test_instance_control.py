"""A node's manager makes its Replica and Engine objects real: one node in process, its store in
memory, objects written as the volume reconciler will write them, instances checked through the
node's instance manager."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar, cast

import attrs
import trio

from lhtrio.clients.node import NodeClient
from lhtrio.clients.replica import ReplicaClient
from lhtrio.manager.instance_control import InstanceControl, modes_by_name
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Engine, ObjectMeta, Replica
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.replica import ReplicaSpec, ReplicaStatus
from lhtrio.models.cluster.validate import ClusterObject
from lhtrio.models.instance import Instance, InstanceKind
from lhtrio.models.instance import InstanceState as InstanceModelState
from lhtrio.models.times import wall_now
from lhtrio.models.volume import Mode
from lhtrio.net import Address, open_rpc_client
from lhtrio.node.server import serve_node
from lhtrio.wire import Role
from tests.manager import waiting

MiB = 1 << 20


@attrs.frozen
class Cluster:
    store: MemoryStore
    objects: Objects
    instances: NodeClient


@asynccontextmanager
async def one_node(tmp_path: Path) -> AsyncIterator[Cluster]:
    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        control, _ = await nursery.start(
            functools.partial(
                serve_node,
                "n1",
                str(tmp_path / "data"),
                host="127.0.0.1",
                nbd=Address(host="127.0.0.1", port=0),
                port_range=(42100, 42199),
                store=store,
            )
        )
        async with open_rpc_client(control, client="test") as rpc:
            yield Cluster(store, Objects(store), NodeClient(rpc))
        nursery.cancel_scope.cancel()


T = TypeVar("T", bound=ClusterObject)


async def until(cluster: Cluster, kind: type[T], name: str, done: Callable[[T], bool]) -> T:
    """The object once ``done`` holds for it."""
    return await waiting.until(cluster.objects, kind, name, done)


def replica(name: str, desire: DesireState = DesireState.RUNNING) -> Replica:
    return Replica(
        meta=ObjectMeta(name=name),
        spec=ReplicaSpec(volume_name="v", volume_size=4 * MiB, node_id="n1", desire_state=desire),
    )


async def test_a_replica_object_runs_reports_and_stops(tmp_path: Path) -> None:
    async with one_node(tmp_path) as cluster:
        await cluster.objects.create(replica("v-r-00000001"))
        running = await until(
            cluster,
            Replica,
            "v-r-00000001",
            lambda r: r.status.current_state is InstanceState.RUNNING,
        )
        assert running.status.ip == "127.0.0.1"
        assert 42100 <= running.status.port <= 42199
        assert running.status.owner_id == "n1"
        assert (await cluster.instances.get("v-r-00000001")).address.endswith(
            f":{running.status.port}"
        )

        await cluster.objects.change(
            Replica,
            "v-r-00000001",
            lambda r: attrs.evolve(r, spec=attrs.evolve(r.spec, desire_state=DesireState.STOPPED)),
        )
        await until(
            cluster,
            Replica,
            "v-r-00000001",
            lambda r: r.status.current_state is InstanceState.STOPPED,
        )
        assert [i.name for i in await cluster.instances.instances()] == []


async def test_an_engine_object_serves_its_replicas_and_reports_their_modes(
    tmp_path: Path,
) -> None:
    async with one_node(tmp_path) as cluster:
        await cluster.objects.create(replica("v-r-00000001"))
        r = await until(
            cluster,
            Replica,
            "v-r-00000001",
            lambda r: r.status.current_state is InstanceState.RUNNING,
        )
        engine = Engine(
            meta=ObjectMeta(name="v-e-0"),
            spec=EngineSpec(
                volume_name="v",
                volume_size=4 * MiB,
                node_id="n1",
                desire_state=DesireState.RUNNING,
                replica_address_map={"v-r-00000001": f"{r.status.ip}:{r.status.port}"},
            ),
        )
        await cluster.objects.create(engine)
        served = await until(cluster, Engine, "v-e-0", lambda e: bool(e.status.replica_mode_map))
        assert served.status.current_state is InstanceState.RUNNING
        assert served.status.endpoint.startswith("nbd://127.0.0.1:")
        assert served.status.endpoint.endswith("/v")
        assert served.status.replica_mode_map == {"v-r-00000001": Mode.RW}

        await cluster.objects.delete(await cluster.objects.get(Engine, "v-e-0"))
        await until_gone(cluster.instances, "v-e-0")  # its object is gone: the engine stops


async def until_gone(instances: NodeClient, name: str) -> None:
    """Until instance ``name`` is no longer on the node (the instance manager's long poll)."""
    version = 0
    with trio.fail_after(60):
        while True:
            watched = await instances.watch(version, 5)
            if name not in [i.name for i in watched.instances]:
                return
            version = watched.version


async def running_replica(cluster: Cluster, name: str) -> str:
    """Replica ``name`` created and running; its ``host:port``."""
    await cluster.objects.create(replica(name))
    r = await until(
        cluster, Replica, name, lambda r: r.status.current_state is InstanceState.RUNNING
    )
    return f"{r.status.ip}:{r.status.port}"


def engine_of(addresses: dict[str, str], *, salvage: bool = False) -> Engine:
    return Engine(
        meta=ObjectMeta(name="v-e-0"),
        spec=EngineSpec(
            volume_name="v",
            volume_size=4 * MiB,
            node_id="n1",
            desire_state=DesireState.RUNNING,
            replica_address_map=addresses,
            salvage_requested=salvage,
        ),
    )


async def test_a_replica_the_engine_fails_reaches_the_store_without_polling(
    tmp_path: Path,
) -> None:
    async with one_node(tmp_path) as cluster:
        addresses = {n: await running_replica(cluster, n) for n in ("v-r-00000001", "v-r-00000002")}
        await cluster.objects.create(engine_of(addresses))
        await until(
            cluster,
            Engine,
            "v-e-0",
            lambda e: e.status.replica_mode_map == dict.fromkeys(addresses, Mode.RW),
        )

        await cluster.instances.delete("v-r-00000002")  # the engine loses its link: ERR
        # the engine's change is pushed: well before the 30 s resync or the 60 s monitor
        failed = await waiting.until(
            cluster.objects,
            Engine,
            "v-e-0",
            lambda e: e.status.replica_mode_map.get("v-r-00000002") is Mode.ERR,
            deadline=10,
        )
        assert failed.status.replica_mode_map["v-r-00000001"] is Mode.RW
        engine = await cluster.instances.get("v-e-0")
        assert engine.replica_modes == {
            f"tcp://{addresses['v-r-00000001']}": Mode.RW,
            f"tcp://{addresses['v-r-00000002']}": Mode.ERR,
        }
        assert engine.current_size == 4 * MiB
        # (its node starts the replica again, on another port: let it before the node stops)
        old = addresses["v-r-00000002"]
        await until(
            cluster,
            Replica,
            "v-r-00000002",
            lambda r: (
                r.status.current_state is InstanceState.RUNNING
                and f"{r.status.ip}:{r.status.port}" != old
            ),
        )


async def test_a_salvage_request_restarts_a_faulted_engine_with_salvage(tmp_path: Path) -> None:
    async with one_node(tmp_path) as cluster:
        address = await running_replica(cluster, "v-r-00000001")
        # a rebuild into it never finished: an engine starts it ERR (every replica: faulted)
        async with open_rpc_client(f"tcp://{address}", volume="v", role=Role.REPLICA) as rpc:
            await ReplicaClient(rpc).set_rebuilding(True)
        await cluster.objects.create(engine_of({"v-r-00000001": address}))
        await until(
            cluster,
            Engine,
            "v-e-0",
            lambda e: e.status.replica_mode_map == {"v-r-00000001": Mode.ERR},
        )
        faulted = await cluster.instances.get("v-e-0")
        assert faulted.health == "faulted"
        assert not faulted.salvage

        await cluster.objects.change(
            Engine,
            "v-e-0",
            lambda e: attrs.evolve(e, spec=attrs.evolve(e.spec, salvage_requested=True)),
        )
        salvaged = await until(cluster, Engine, "v-e-0", lambda e: e.status.salvage_executed)
        instance = await cluster.instances.get("v-e-0")
        assert instance.salvage
        assert instance.started > faulted.started  # a new instance
        assert instance.replica_modes == {f"tcp://{address}": Mode.RW}
        assert salvaged.status.current_state is InstanceState.RUNNING
        assert salvaged.status.replica_mode_map == {"v-r-00000001": Mode.RW}


async def test_a_salvage_waits_for_replicas_then_starts_the_engine_with_it(tmp_path: Path) -> None:
    async with one_node(tmp_path) as cluster:
        await cluster.objects.create(engine_of({}, salvage=True))
        address = await running_replica(cluster, "v-r-00000001")
        # an engine is never started without replicas to serve from
        assert [i.name for i in await cluster.instances.instances()] == ["v-r-00000001"]

        await cluster.objects.change(
            Engine,
            "v-e-0",
            lambda e: attrs.evolve(
                e,
                spec=attrs.evolve(e.spec, replica_address_map={"v-r-00000001": address}),
            ),
        )
        salvaged = await until(cluster, Engine, "v-e-0", lambda e: e.status.salvage_executed)
        assert salvaged.status.current_state is InstanceState.RUNNING
        assert (await cluster.instances.get("v-e-0")).salvage


def test_a_replica_lost_and_restarted_elsewhere_keeps_its_err() -> None:
    """The engine holds the lost instance's old address as ERR; the spec already names the
    replica's new one (not linked yet): the replica is ERR by name, not silently absent."""
    engine = Engine(
        meta=ObjectMeta(name="v-e-0"),
        spec=EngineSpec(
            volume_name="v",
            volume_size=4 * MiB,
            replica_address_map={"r1": "10.0.0.1:1000", "r2": "10.0.0.2:2001"},
        ),
        status=EngineStatus(
            current_replica_address_map={"r1": "10.0.0.1:1000", "r2": "10.0.0.2:2000"}
        ),
    )
    modes = {"tcp://10.0.0.1:1000": Mode.RW, "tcp://10.0.0.2:2000": Mode.ERR}
    assert modes_by_name(engine, modes) == {"r1": Mode.RW, "r2": Mode.ERR}
    # once the new address is linked, it is the truth
    modes["tcp://10.0.0.2:2001"] = Mode.WO
    assert modes_by_name(engine, modes) == {"r1": Mode.RW, "r2": Mode.WO}


async def test_an_engine_reports_the_rebuild_of_a_replica_it_adds(tmp_path: Path) -> None:
    async with one_node(tmp_path) as cluster:
        addresses = {n: await running_replica(cluster, n) for n in ("v-r-00000001", "v-r-00000002")}
        await cluster.objects.create(engine_of({"v-r-00000001": addresses["v-r-00000001"]}))
        served = await until(cluster, Engine, "v-e-0", lambda e: bool(e.status.replica_mode_map))
        assert served.status.rebuild_status == {}  # nothing was rebuilt

        def add_second(e: Engine) -> Engine:
            return attrs.evolve(e, spec=attrs.evolve(e.spec, replica_address_map=addresses))

        await cluster.objects.change(Engine, "v-e-0", add_second)
        rebuilt = await until(
            cluster,
            Engine,
            "v-e-0",
            lambda e: (
                not any(r.is_rebuilding for r in e.status.rebuild_status.values())
                and e.status.replica_mode_map.get("v-r-00000002") is Mode.RW
            ),
        )
        assert list(rebuilt.status.rebuild_status) == ["v-r-00000002"]
        status = rebuilt.status.rebuild_status["v-r-00000002"]
        assert (status.is_rebuilding, status.state, status.progress) == (False, "done", 100)
        assert status.from_replica_address == f"tcp://{addresses['v-r-00000001']}"
        assert status.done_bytes == status.total_bytes


def running_instance(name: str, kind: InstanceKind, port: int) -> Instance:
    return Instance(
        name=name,
        type=kind,
        volume="v",
        size=4 * MiB,
        state=InstanceModelState.RUNNING,
        port=port,
        address=f"tcp://127.0.0.1:{port}",
    )


class _LookingWhileChanged:
    """A node's instance manager whose answer comes while the volume's plan changes the object
    (``change``): what it tells (``seen``) is of the instance from before that change."""

    def __init__(self, seen: Instance, change: Callable[[], Awaitable[object]]) -> None:
        self.seen = seen
        self.change = change

    async def get(self, name: str) -> Instance:
        await self.change()
        return self.seen


async def test_a_replica_status_seen_before_its_spec_changed_is_not_written() -> None:
    """The plan brings a failed replica back (its instance is restarting on another port) while
    its node looks at the old instance: the old address is not written over the change (a
    salvage would link it); the reconcile the change brings reports the instance anew."""
    objects = Objects(MemoryStore())
    name = "v-r-00000001"
    await objects.create(replica(name))

    def unfail(r: Replica) -> Replica:
        return attrs.evolve(r, spec=attrs.evolve(r.spec, last_failed_at=wall_now()))

    old = running_instance(name, InstanceKind.REPLICA, 42100)
    node = _LookingWhileChanged(old, lambda: objects.change(Replica, name, unfail))
    await InstanceControl(objects, "n1", cast(NodeClient, node)).reconcile_replica(name)
    assert (await objects.get(Replica, name)).status == ReplicaStatus()

    node.change = trio.lowlevel.checkpoint  # nothing changes while it looks: written
    await InstanceControl(objects, "n1", cast(NodeClient, node)).reconcile_replica(name)
    status = (await objects.get(Replica, name)).status
    assert (status.current_state, status.port) == (InstanceState.RUNNING, 42100)


async def test_a_salvage_asked_again_is_not_marked_done_by_the_engine_seen_before() -> None:
    """Every replica failed again under an engine that salvaged before: the plan asks for a new
    salvage (``salvage_executed`` cleared; the request itself never was withdrawn) while the node
    looks at that engine. It was started with salvage, but not the salvage asked for now: the
    request stays open, so the plan does not take the old engine's modes for its outcome."""
    objects = Objects(MemoryStore())
    done = engine_of({"v-r-00000001": "127.0.0.1:42100"}, salvage=True)
    await objects.create(attrs.evolve(done, status=EngineStatus(salvage_executed=True)))

    def ask_again(e: Engine) -> Engine:
        return attrs.evolve(e, status=attrs.evolve(e.status, salvage_executed=False))

    salvaged_before = attrs.evolve(
        running_instance("v-e-0", InstanceKind.ENGINE, 42101),
        replicas=["tcp://127.0.0.1:42100"],
        health="healthy",
        replica_modes={"tcp://127.0.0.1:42100": Mode.RW},
        salvage=True,
    )
    node = _LookingWhileChanged(salvaged_before, lambda: objects.change(Engine, "v-e-0", ask_again))
    await InstanceControl(objects, "n1", cast(NodeClient, node)).reconcile_engine("v-e-0")
    engine = await objects.get(Engine, "v-e-0")
    assert not engine.status.salvage_executed
    assert engine.status.replica_mode_map == {}
