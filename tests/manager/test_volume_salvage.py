"""Salvage on three in-process nodes (real engines and replicas, qemu-io through NBD): every
replica of an attached volume lost at once faults it; with ``auto-salvage`` the manager brings the
replicas back and the engine restarts choosing the best of them, and every flushed write reads
back; without it the volume stays faulted until the operator salvages it by name."""

from __future__ import annotations

from pathlib import Path

from lhtrio.manager import operations
from lhtrio.manager.settings import set_setting
from lhtrio.models.cluster import Engine, Replica, Volume
from lhtrio.models.cluster.volume import Robustness, VolumeState
from tests.manager.test_cluster_processes import qemu_io
from tests.manager.test_volume_lifecycle import Cluster, three_nodes, until
from tests.manager.test_volume_operations import attach, new_volume
from tests.procs import run


async def lose_every_replica(cluster: Cluster, uri: str) -> list[str]:
    """Stop every replica's instance at once (a write then finds none: the volume faults); the
    replicas' names."""
    replicas, _ = await cluster.objects.list(Replica)
    for replica in replicas:
        await cluster.nodes[replica.spec.node_id].delete(replica.meta.name)
    await run("qemu-io", "-f", "raw", "-c", "write -P 0x99 1M 4k", uri, check=False)
    return sorted(r.meta.name for r in replicas)


def served_healthy(volume: Volume) -> bool:
    return (
        volume.status.state is VolumeState.ATTACHED
        and volume.status.robustness is Robustness.HEALTHY
    )


async def test_a_volume_that_lost_every_replica_is_auto_salvaged(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        await new_volume(cluster, replicas=2)
        uri = await attach(cluster, "n1")
        await qemu_io(uri, "write -P 0x77 0 1M", "flush")

        await lose_every_replica(cluster, uri)
        salvaged = await until(
            cluster,
            Volume,
            "v",
            lambda v: served_healthy(v) and bool(v.status.last_auto_salvaged_at),
        )
        assert salvaged.status.current_node_id == "n1"
        engine = await until(cluster, Engine, "v-e-0", lambda e: bool(e.status.endpoint))
        out = await qemu_io(engine.status.endpoint, "read -P 0x77 0 1M")
        assert "Pattern verification failed" not in out, out
        assert not engine.spec.salvage_requested  # done, and withdrawn


async def test_without_auto_salvage_the_operator_salvages_by_name(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster:
        await set_setting(cluster.objects, "auto-salvage", "false")
        await new_volume(cluster, replicas=2)
        uri = await attach(cluster, "n1")
        await qemu_io(uri, "write -P 0x78 0 1M", "flush")

        names = await lose_every_replica(cluster, uri)
        for name in names:
            await until(cluster, Replica, name, lambda r: r.failed)
        volume = await cluster.objects.get(Volume, "v")
        assert volume.status.robustness is not Robustness.HEALTHY

        await operations.salvage(cluster.objects, "v", names)
        await until(cluster, Volume, "v", served_healthy)
        engine = await until(cluster, Engine, "v-e-0", lambda e: bool(e.status.endpoint))
        out = await qemu_io(engine.status.endpoint, "read -P 0x78 0 1M")
        assert "Pattern verification failed" not in out, out
