"""The manager's volume operations on three in-process nodes (real engines and replicas, qemu-io
through NBD): snapshots of a detached volume attach it under a snapshot ticket and let it go;
a revert brings back a snapshot's data; an expansion of a detached volume grows every replica
and the volume attaches at the new size; lowering and raising the replica count removes and
places replicas; a snapshot's ticket never holds the volume against a workload elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from lhtrio.errors import ConflictError
from lhtrio.manager import operations, tickets
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume, VolumeAttachment
from lhtrio.models.cluster.attachment import TicketType
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState
from lhtrio.models.volume import Mode
from tests.manager.test_cluster_processes import qemu_io
from tests.manager.test_volume_lifecycle import Cluster, three_nodes, until
from tests.manager.waiting import ticket_judged_satisfied

MiB = 1 << 20
CALLER = "test"


async def new_volume(cluster: Cluster, replicas: int = 2, size: int = 16 * MiB) -> None:
    await cluster.objects.create(
        Volume(
            meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
            spec=VolumeSpec(size=size, number_of_replicas=replicas),
        )
    )
    await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)


def healthy_on(node: str, replicas: int) -> Callable[[Volume], bool]:
    def done(v: Volume) -> bool:
        return (
            v.status.state is VolumeState.ATTACHED
            and v.status.current_node_id == node
            and v.status.robustness is Robustness.HEALTHY
            and v.spec.number_of_replicas == replicas
        )

    return done


async def attach(cluster: Cluster, node: str) -> str:
    """Attach through an API ticket; the NBD URI once it is served and healthy."""
    await tickets.add_ticket(cluster.objects, "v", node)
    await until(cluster, VolumeAttachment, "v", ticket_judged_satisfied())
    volume = await until(
        cluster,
        Volume,
        "v",
        lambda v: v.status.state is VolumeState.ATTACHED and v.status.current_node_id == node,
    )
    engine = await until(
        cluster, Engine, "v-e-0", lambda e: e.spec.node_id == node and bool(e.status.endpoint)
    )
    assert volume.spec.node_id == node
    return engine.status.endpoint


async def detach(cluster: Cluster) -> None:
    await tickets.remove_ticket(cluster.objects, "v")
    await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)


async def no_tickets(cluster: Cluster) -> bool:
    attachment = await cluster.objects.get(VolumeAttachment, "v")
    return not attachment.spec.attachment_tickets


async def test_snapshots_of_a_detached_volume_attach_it_for_the_call_only(
    tmp_path: Path,
) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await new_volume(cluster)
        taken = await operations.snapshot_create(objects, "v", "s1", {"app": "db"}, caller=CALLER)
        assert taken.name == "s1"
        assert taken.labels == {"app": "db"}
        assert taken.user_created
        assert await no_tickets(cluster)  # the snapshot's ticket is gone
        await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)

        await operations.snapshot_create(objects, "v", "s2", {}, caller=CALLER)
        listed = await operations.snapshot_list(objects, "v", caller=CALLER)
        assert {"s1", "s2"} <= {s.name for s in listed}
        await operations.snapshot_delete(objects, "v", "s1", caller=CALLER)
        await operations.snapshot_purge(objects, "v", caller=CALLER)
        listed = await operations.snapshot_list(objects, "v", caller=CALLER)
        assert "s1" not in {s.name for s in listed}
        assert "s2" in {s.name for s in listed}
        assert await no_tickets(cluster)


async def test_a_revert_brings_back_the_snapshots_data(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await new_volume(cluster)
        uri = await attach(cluster, "n1")
        await qemu_io(uri, "write -P 0x11 0 1M", "flush")
        await operations.snapshot_create(objects, "v", "before", {}, caller=CALLER)
        await qemu_io(uri, "write -P 0x22 0 1M", "flush")

        # served to a workload: a revert is refused, and nothing changes
        with pytest.raises(ConflictError, match="detach it first"):
            await operations.snapshot_revert(objects, "v", "before", caller=CALLER)
        out = await qemu_io(uri, "read -P 0x22 0 1M")
        assert "Pattern verification failed" not in out, out

        await detach(cluster)
        await operations.snapshot_revert(objects, "v", "before", caller=CALLER)
        assert await no_tickets(cluster)
        uri = await attach(cluster, "n2")
        out = await qemu_io(uri, "read -P 0x11 0 1M")
        assert "Pattern verification failed" not in out, out


async def test_expanding_a_detached_volume_grows_it_for_the_next_attach(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await new_volume(cluster)
        uri = await attach(cluster, "n1")
        await qemu_io(uri, "write -P 0x33 0 1M", "flush")
        await detach(cluster)

        grown = await operations.expand(objects, "v", 32 * MiB, caller=CALLER)
        assert grown.spec.size == 32 * MiB
        replicas, _ = await objects.list(Replica)
        assert [r.spec.volume_size for r in replicas] == [32 * MiB, 32 * MiB]
        assert await no_tickets(cluster)
        with pytest.raises(Exception, match="cannot shrink"):
            await operations.expand(objects, "v", 16 * MiB, caller=CALLER)

        uri = await attach(cluster, "n3")
        volume = await until(cluster, Volume, "v", healthy_on("n3", 2))
        assert volume.spec.size == 32 * MiB
        out = await qemu_io(uri, "read -P 0x33 0 1M", "write -P 0x44 31M 1M", "read -P 0x44 31M 1M")
        assert "Pattern verification failed" not in out, out


async def test_the_replica_count_removes_and_places_replicas(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await new_volume(cluster, replicas=3)
        uri = await attach(cluster, "n1")
        await until(cluster, Volume, "v", healthy_on("n1", 3))
        await qemu_io(uri, "write -P 0x55 0 1M", "flush")

        await operations.set_replica_count(objects, "v", 2)

        async def replicas_left() -> list[Replica]:
            replicas, _ = await objects.list(Replica)
            return [r for r in replicas if not r.meta.deleting]

        await until(
            cluster,
            Engine,
            "v-e-0",
            lambda e: list(e.status.replica_mode_map.values()) == [Mode.RW, Mode.RW],
        )
        assert len(await replicas_left()) == 2
        await until(cluster, Volume, "v", healthy_on("n1", 2))

        await operations.set_replica_count(objects, "v", 3)
        await until(
            cluster,
            Engine,
            "v-e-0",
            lambda e: list(e.status.replica_mode_map.values()) == [Mode.RW] * 3,
        )
        left = await replicas_left()
        assert len({r.spec.node_id for r in left}) == 3
        out = await qemu_io(uri, "read -P 0x55 0 1M")
        assert "Pattern verification failed" not in out, out
        with pytest.raises(Exception, match="from 1 to"):
            await operations.set_replica_count(objects, "v", 0)


async def test_a_snapshot_never_holds_a_volume_against_a_workload_elsewhere(
    tmp_path: Path,
) -> None:
    async with three_nodes(tmp_path) as cluster:
        objects = cluster.objects
        await new_volume(cluster)
        entered = trio.Event()
        release = trio.Event()
        failure: list[BaseException] = []

        async def long_snapshot() -> None:
            try:
                async with operations.open_volume_engine(
                    objects, "v", TicketType.SNAPSHOT, caller=CALLER
                ) as engine:
                    entered.set()
                    await release.wait()
                    await engine.snapshot_create("late", {})
            except Exception as exc:  # (whatever the engine's going away raises)
                failure.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_snapshot)
            await entered.wait()
            held = await objects.get(Volume, "v")
            assert held.status.state is VolumeState.ATTACHED
            other = next(n for n in ("n1", "n2", "n3") if n != held.status.current_node_id)
            # a workload asks for the volume elsewhere while the snapshot holds it
            uri = await attach(cluster, other)
            out = await qemu_io(uri, "write -P 0x66 0 1M", "flush", "read -P 0x66 0 1M")
            assert "Pattern verification failed" not in out, out
            release.set()
        assert failure, "the interrupted snapshot must fail, not succeed on a moved volume"
        attachment = await objects.get(VolumeAttachment, "v")
        assert list(attachment.spec.attachment_tickets) == ["lhtrio-api"]
