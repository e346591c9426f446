"""The node process's disks as its control-plane agent sees them (:class:`NodeDisks`).

The agent (:mod:`lhtrio.manager.node_agent`) asks for the disks its Node's spec names;
:meth:`NodeDisks.disks` opens any directory not open yet (:func:`lhtrio.instances.disks.open_disk`:
made if missing, given an identity the first time), measures each (``statvfs``), and forgets the
open disks the spec no longer names, so the supervisor places no new replica there — unless an
instance still has its directory on one (it stays until nothing uses it). A directory that cannot
be used is reported with the reason, and tried again next time. Opening and measuring are
syscalls on the disk: they run in a worker thread; the list of disks the supervisor reads is
changed only in trio's thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
import trio

from lhtrio.errors import LhtrioError
from lhtrio.instances.disks import Disk, open_disk
from lhtrio.instances.supervisor import NodeContext, Supervisor
from lhtrio.manager.node_agent import DiskFacts

__all__ = ["NodeDisks"]


def _normal(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _measure(disk: Disk) -> DiskFacts:
    try:
        st = os.statvfs(disk.path)
    except OSError as exc:
        return DiskFacts(path=disk.path, problem=f"cannot measure disk {disk.path}: {exc}")
    return DiskFacts(
        path=disk.path,
        uuid=disk.uuid,
        maximum=st.f_blocks * st.f_frsize,
        available=st.f_bavail * st.f_frsize,
    )


def _open(path: str) -> Disk | DiskFacts:
    if not os.path.isabs(path):
        return DiskFacts(path=path, problem=f"{path!r} is not an absolute path")
    try:
        return open_disk(path)
    except (LhtrioError, OSError) as exc:
        return DiskFacts(path=path, problem=str(exc))


@attrs.define(eq=False)
class NodeDisks:
    """The disks of ``ctx`` (``ctx.disks``, which the supervisor reads); ``given``: the
    directories the node was started with."""

    ctx: NodeContext
    supervisor: Supervisor
    given: tuple[str, ...]

    async def disks(self, paths: Sequence[str]) -> list[DiskFacts]:
        open_now = {_normal(d.path): d for d in self.ctx.disks}
        facts: list[DiskFacts] = []
        for path in paths:
            disk = open_now.get(_normal(path))
            if disk is None:
                opened = await trio.to_thread.run_sync(_open, path)
                if isinstance(opened, DiskFacts):
                    facts.append(opened)
                    continue
                disk = open_now.setdefault(_normal(path), opened)
                if disk is opened:
                    self.ctx.disks.append(opened)
            measured = await trio.to_thread.run_sync(_measure, disk)
            facts.append(attrs.evolve(measured, path=path))
        wanted = {_normal(p) for p in paths}
        for disk in list(self.ctx.disks):
            if _normal(disk.path) not in wanted and not self.supervisor.scheduled(disk):
                self.ctx.disks.remove(disk)
        return facts
