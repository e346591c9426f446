"""Operations on the whole volume: snapshot, expansion, revert, replica removal, salvage.

Each runs on every replica with the same arguments (:class:`~lhtrio.engine.control.ControlCalls`),
most with I/O *quiesced* (:meth:`Volume.quiesced`: new batches wait, in-flight ones finish, then
the operation, then I/O resumes). Expansion, revert and salvage are long operations: they exclude
each other, a rebuild and a purge (:class:`~lhtrio.engine.operation_gate.OperationGate`). A
snapshot is not: it may be taken while a replica is rebuilt (the rebuild's own steps quiesce I/O,
so a snapshot cannot slip between them). The other long operations are the rebuild
(:mod:`lhtrio.engine.replica_add`) and the purge (:mod:`lhtrio.engine.purge`).
"""

from __future__ import annotations

import logging

import trio

from lhtrio.clients.replica import ReplicaClient
from lhtrio.engine.replicaset import Mode, choose_salvage, salvage_refusals
from lhtrio.engine.volume import Volume
from lhtrio.errors import (
    ConflictError,
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    StorageError,
)
from lhtrio.models.replica import ReplicaInfo
from lhtrio.models.volume import VolumeOperation
from lhtrio.net import open_rpc_client
from lhtrio.wire import Role

__all__ = ["expand", "remove_replica", "revert", "salvage", "snapshot"]

logger = logging.getLogger(__name__)


async def snapshot(
    volume: Volume, name: str, *, labels: dict[str, str], user_created: bool
) -> None:
    """Flush and snapshot every writer with the same name, I/O quiesced."""
    async with volume.quiesced():
        await volume.flush_quiesced()
        await volume.control.all(
            "snapshot",
            lambda replica: replica.snapshot(name, labels=labels, user_created=user_created),
        )


async def expand(volume: Volume, size: int) -> None:
    """Grow every replica, the away logs and the volume to ``size`` bytes."""
    if size < volume.size or size % 4096:
        raise InvalidArgumentError(
            f"cannot expand volume {volume.name} from {volume.size} to {size} bytes: the new "
            "size must be larger and a multiple of 4096"
        )
    if size == volume.size:
        return
    await volume.operation.begin(VolumeOperation.EXPANSION)
    try:
        if volume.replicas.rebuilding:
            raise ConflictError(f"volume {volume.name} is rebuilding a replica: expansion refused")
        async with volume.quiesced():
            await volume.flush_quiesced()
            await volume.control.all("expand", lambda replica: replica.expand(size))
            volume.size = size
            volume.dirty.resize(size)
            volume.replicas.notify()  # its owner reports the size with the modes
    finally:
        volume.operation.end()


async def revert(volume: Volume, name: str) -> None:
    """Revert every RW replica to snapshot ``name`` (the service checks the frontend is stopped)."""
    await volume.operation.begin(VolumeOperation.REVERT)
    try:
        if volume.replicas.rebuilding:
            raise ConflictError(f"volume {volume.name} is rebuilding a replica: revert refused")
        async with volume.quiesced():
            volume.dirty.forget()
            await volume.control.all(
                "revert", lambda replica: replica.revert(name), members=volume.replicas.readers
            )
    finally:
        volume.operation.end()


def remove_replica(volume: Volume, address: str) -> None:
    """Fail and forget the replica at ``address`` (never the last RW one)."""
    member = volume.replicas.by_address(address)
    if member is None:
        raise NotFoundError(f"volume {volume.name} has no replica {address}")
    if member.mode is Mode.RW and len(volume.replicas.readers) == 1:
        raise ConflictError(f"{address} is the last RW replica of volume {volume.name}")
    volume.links.fail(member, "removed by the operator")
    volume.replicas.remove(member)


async def salvage(volume: Volume) -> tuple[str, str]:
    """Serve a faulted volume again from its best replica; returns (address, why).

    Asks every replica for its state, lets :func:`choose_salvage` pick one, and brings it
    back RW; the others stay ERR, to be rebuilt from it (``replica add``).
    """
    if volume.replicas.readers:
        raise ConflictError(
            f"volume {volume.name} is {volume.replicas.health.value}, not faulted: salvage only "
            "applies when every replica is ERR"
        )
    await volume.operation.begin(VolumeOperation.SALVAGE)
    try:
        return await _salvage(volume)
    finally:
        volume.operation.end()


async def _salvage(volume: Volume) -> tuple[str, str]:
    infos: list[tuple[str, ReplicaInfo | str]] = []
    for member in volume.replicas.members:
        try:
            with trio.fail_after(volume.replicas.short_timeout):
                async with open_rpc_client(
                    member.address,
                    volume=volume.name,
                    client=f"engine-{volume.name}",
                    role=Role.REPLICA,
                ) as client:
                    infos.append((member.address, await ReplicaClient(client).info()))
        except (LhtrioError, trio.TooSlowError) as exc:
            infos.append((member.address, str(exc) or "did not answer in time"))
    chosen = choose_salvage(infos, size=volume.size)
    if chosen is None:
        raise StorageError(
            f"volume {volume.name}: no replica can be salvaged "
            f"({'; '.join(salvage_refusals(infos, size=volume.size)) or 'it has no replicas'})"
        )
    address, why = chosen
    salvaged = volume.replicas.by_address(address)
    assert salvaged is not None
    volume.dirty.forget()  # the logs were relative to replicas that are gone
    volume.replicas.promote(salvaged)
    await volume.links.attach(salvaged)
    logger.warning("volume %s: %s (%s)", volume.name, address, why)
    return address, why
