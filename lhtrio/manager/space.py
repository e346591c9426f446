"""The space scheduled on each disk: every replica's size, kept from a watch of the replicas.

The scheduler counts a disk's scheduled space from the replicas placed on it (over-provisioning,
longhorn-facts §6.4), and a volume's reconciler placed its replicas from a listing of every
replica of the cluster: O(replicas) per reconcile, the whole cost of a reconcile at 30,000
replicas. A node's manager keeps this index instead, from the replica watch it already holds
(:func:`lhtrio.manager.volume_control.follow_members`), and writes through it what it creates
and deletes itself, so two placements by one manager never miss each other. What another node
placed counts once its watch event arrives (milliseconds): two managers placing at the same
moment could already each miss the other's replica when both listed.

Read from the raw documents (``spec.nodeID``, ``spec.diskID``, ``spec.volumeSize``): a document
that does not read counts nothing (its volume's reconcile says what is wrong with it).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from lhtrio.manager.placement import Placed
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.rules import metadata
from lhtrio.models.cluster import Replica

__all__ = ["ScheduledSpace"]


@attrs.define
class ScheduledSpace:
    #: replica name -> (node, disk UUID, volume size)
    _where: dict[str, tuple[str, str, int]] = attrs.field(factory=dict)
    #: node -> disk UUID -> bytes placed there
    _placed: dict[str, dict[str, int]] = attrs.field(factory=dict)
    #: (node, disk UUID) -> how many replicas are placed there
    _count: dict[tuple[str, str], int] = attrs.field(factory=dict)

    @property
    def placed(self) -> Placed:
        return self._placed

    def reset(self, documents: Iterable[Document]) -> None:
        """Start again from a listing of every replica."""
        self._where.clear()
        self._placed.clear()
        self._count.clear()
        for document in documents:
            self.see(document)

    def see(self, document: Document) -> None:
        """A replica as listed, created or changed."""
        name = str(metadata(document)["name"])
        spec = document.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        node, disk, size = spec.get("nodeID"), spec.get("diskID"), spec.get("volumeSize")
        if not (isinstance(node, str) and isinstance(disk, str) and isinstance(size, str | int)):
            self.forget(name)
            return
        try:
            self._put(name, node, disk, int(size))
        except ValueError:
            self.forget(name)

    def add(self, replica: Replica) -> None:
        """A replica this manager just wrote."""
        spec = replica.spec
        self._put(replica.meta.name, spec.node_id, spec.disk_id, spec.volume_size)

    def forget(self, name: str) -> None:
        where = self._where.pop(name, None)
        if where is None:
            return
        node, disk, size = where
        disks = self._placed[node]
        disks[disk] -= size
        self._count[node, disk] -= 1
        if not self._count[node, disk]:
            del self._count[node, disk], disks[disk]
        if not disks:
            del self._placed[node]

    def _put(self, name: str, node: str, disk: str, size: int) -> None:
        self.forget(name)
        if node and disk:
            self._where[name] = (node, disk, size)
            disks = self._placed.setdefault(node, {})
            disks[disk] = disks.get(disk, 0) + size
            self._count[node, disk] = self._count.get((node, disk), 0) + 1
