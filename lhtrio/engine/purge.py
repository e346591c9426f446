"""Purge: reclaim the space of removed snapshots, and of system snapshots, on every replica.

Each replica runs its own purge (:mod:`lhtrio.replica.removal`: system snapshots are marked
removed, then every removed snapshot is deleted, coalesced into its child or pruned), in the
background beside the data path; the engine starts them together and waits for all. A purge
excludes the other long operations (:mod:`lhtrio.engine.operation_gate`), and
drops the away logs (coalescing rewrites snapshot files behind them).

After a rebuild the engine purges by itself (``automatic``): every rebuild takes a system
snapshot, and without this they pile up (Longhorn's manager does the same with its
``auto-cleanup-system-generated-snapshot`` setting, on by default). An operator's long
operation that arrives meanwhile waits for that purge instead of being refused.
"""

from __future__ import annotations

import logging

from lhtrio.engine.volume import Volume
from lhtrio.errors import ConflictError, LhtrioError
from lhtrio.models.volume import VolumeOperation

__all__ = ["purge", "purge_after_rebuild"]

logger = logging.getLogger(__name__)


async def purge(volume: Volume, *, automatic: bool = False) -> None:
    """Purge every replica of ``volume`` and wait until all are done; ConflictError naming the
    replicas whose purge failed."""
    await volume.operation.begin(VolumeOperation.PURGE, automatic=automatic)
    try:
        if volume.replicas.rebuilding:
            raise ConflictError(f"volume {volume.name} is rebuilding a replica: purge refused")
        volume.dirty.forget()  # coalesce rewrites snapshot files: away logs no longer hold
        await volume.control.all("purge", lambda replica: replica.purge())
        statuses = await volume.control.all(
            "purge_status", lambda replica: replica.purge_status(wait=True)
        )
    finally:
        volume.dirty.forget()
        volume.operation.end()
    errors = [f"{a}: {s.error}" for a, s in statuses.items() if s.error]
    if errors:
        raise ConflictError(f"volume {volume.name}: purge failed on {'; '.join(errors)}")


async def purge_after_rebuild(volume: Volume) -> None:
    """The system snapshot a rebuild took is not needed any more: purge it (and any other)."""
    try:
        await purge(volume, automatic=True)
    except LhtrioError as exc:
        logger.warning(
            "volume %s: purging system snapshots after the rebuild failed: %s; run "
            "'lhtrio ctl snapshot purge' later",
            volume.name,
            exc,
        )
    else:
        logger.info("volume %s: system snapshots purged after the rebuild", volume.name)
