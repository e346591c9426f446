"""The control plane in the simulator: the product's managers and node agents on stub nodes,
through a rolling loss of nodes; and the stub node's contract (what the manager relies on)."""

from __future__ import annotations

import functools
import random

import pytest
import trio
import trio.testing

from lhtrio.clients.node import NodeClient
from lhtrio.errors import AlreadyExistsError, ConflictError, NotFoundError
from lhtrio.models.instance import InstanceKind, InstanceState
from lhtrio.models.volume import Mode
from lhtrio.net import open_rpc_client, serve_rpc
from lhtrio.net.network import NETWORK
from lhtrio.sim.network import HOST, SimNetwork
from lhtrio.sim.scale import run_scale
from lhtrio.sim.stub_node import StubNodeService
from lhtrio.wire import Identity, Role


def test_a_rolling_loss_converges_and_replays() -> None:
    run = run_scale(nodes=5, volumes=20, losses=2, downtime=30.0, seed=3)
    assert run.replicas == 60
    names = [p.name for p in run.phases]
    assert names == ["create", "loss of n000", "return of n000", "loss of n002", "return of n002"]
    assert all(p.converged for p in run.phases)
    for loss in run.phases[1::2]:
        assert 10 <= loss.sim_seconds <= 20  # a lease lasts 15 s after its last renewal
    assert run.reconciles_by_kind["Volume"] > 20
    again = run_scale(nodes=5, volumes=20, losses=2, downtime=30.0, seed=3)
    assert [attrs_tuple(p) for p in again.phases] == [attrs_tuple(p) for p in run.phases]
    assert again.reconciles_by_kind == run.reconciles_by_kind


def test_a_volume_is_reconciled_by_its_node_alone_whatever_the_nodes() -> None:
    """Twice the nodes, the same volumes: about the same reconciles (each node's scope queues
    only what it is responsible for); before scopes every node reconciled every change."""
    five = run_scale(nodes=5, volumes=10, losses=0, seed=4).reconciles_by_kind
    twenty = run_scale(nodes=20, volumes=10, losses=0, seed=4).reconciles_by_kind
    for kind in ("Volume", "VolumeAttachment", "Replica", "Engine"):
        assert twenty[kind] < 1.5 * five[kind], (kind, five, twenty)


def attrs_tuple(phase: object) -> tuple[object, ...]:
    """What must replay exactly (wall seconds do not)."""
    return tuple(
        getattr(phase, k)
        for k in ("name", "sim_seconds", "reconciles", "store_ops", "instance_calls")
    )


async def test_the_stub_node_answers_as_a_node(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(random.Random(1))
    NETWORK.set(net)
    async with trio.open_nursery() as nursery:
        HOST.set("n1")
        service = StubNodeService("n1", net, nursery)
        identity = Identity(instance="node-n1", role=Role.NODE)
        await nursery.start(functools.partial(serve_rpc, service, "n1", 9, identity=identity))
        HOST.set("m")
        async with open_rpc_client("tcp://n1:9", role=Role.NODE) as rpc:
            node = NodeClient(rpc)
            replica = await node.create("v-r-1", InstanceKind.REPLICA, volume="v", size=4096)
            assert replica.state is InstanceState.RUNNING
            assert replica.address.startswith("tcp://n1:")
            with pytest.raises(AlreadyExistsError):
                await node.create("v-r-1", InstanceKind.REPLICA, volume="v", size=4096)
            with pytest.raises(ConflictError):
                await node.remove_replica_data("v-r-1")
            engine = await node.create(
                "v-e-0",
                InstanceKind.ENGINE,
                volume="v",
                size=4096,
                replicas=["tcp://n2:1", "tcp://n3:1"],
            )
            assert engine.replica_modes == {"tcp://n2:1": Mode.RW, "tcp://n3:1": Mode.RW}
            watched = await node.watch(0, 0)
            net.crash("n2")
            service.poke()
            later = await node.watch(watched.version, 30)
            (seen,) = [i for i in later.instances if i.name == "v-e-0"]
            assert seen.replica_modes == {"tcp://n2:1": Mode.ERR, "tcp://n3:1": Mode.RW}
            await node.delete("v-r-1")
            with pytest.raises(NotFoundError):
                await node.get("v-r-1")
            assert not await node.remove_replica_data("v-r-1")
        nursery.cancel_scope.cancel()
