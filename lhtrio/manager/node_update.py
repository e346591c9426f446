"""An operator's changes of a Node: scheduling, eviction, tags, zone; and its disks.

Longhorn's ``nodeUpdate`` and ``diskUpdate``. The rules are pure (:func:`apply_node_update`,
:func:`apply_disk_update`) and the writes read-modify-write (:func:`update_node`,
:func:`update_disks`), optionally on condition of a version (:mod:`lhtrio.manager.versions`).

* **Node**: only the fields given change. Eviction needs scheduling off (Longhorn's rule: a node
  that still takes new replicas cannot be emptied) — asking for both in one request is fine.
* **Disks**: the request is the node's whole set of disks, by name, as Longhorn's ``diskUpdate``
  is: a new name is a disk to add (its ``path`` is required: the node opens that directory and
  records its identity and space — :mod:`lhtrio.manager.node_agent`); a name left out is a disk
  to remove; a known name keeps every field the request leaves out. Disk eviction, like the
  node's, needs the disk's scheduling off.
* A disk is removed only when it takes no new replicas (``allowScheduling: false``, set before)
  and holds none (no Replica object names it): Longhorn's rule. Otherwise, like changing a known
  disk's path, the request is refused (422): the disk itself rules it out until the operator
  has emptied it (eviction is stored and stops new replicas; moving replicas off is not done yet:
  delete them one by one, ``DELETE /v1/replicas/NAME``, and they are rebuilt elsewhere).
* Two disks of the node with one path is bad input (400).

Paths are compared normalized (``/mnt/a/`` is ``/mnt/a``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import TypeVar

import attrs

from lhtrio.errors import FailedPreconditionError, InvalidArgumentError
from lhtrio.manager.objects import Objects
from lhtrio.manager.selection import replicas_on
from lhtrio.manager.versions import at_version
from lhtrio.models.cluster import Node, Replica
from lhtrio.models.cluster.node import DiskSpec

__all__ = [
    "DiskChange",
    "NodeUpdate",
    "apply_disk_update",
    "apply_node_update",
    "disk_holders",
    "update_disks",
    "update_node",
]


@attrs.frozen(kw_only=True)
class NodeUpdate:
    """What to change on a node (None: leave as it is)."""

    allow_scheduling: bool | None = None
    eviction_requested: bool | None = None
    tags: tuple[str, ...] | None = None
    zone: str | None = None
    region: str | None = None


@attrs.frozen(kw_only=True)
class DiskChange:
    """One disk of a ``diskUpdate`` (None: leave as it is; for a new disk, the default)."""

    path: str | None = None
    allow_scheduling: bool | None = None
    eviction_requested: bool | None = None
    storage_reserved: int | None = None
    tags: tuple[str, ...] | None = None


T = TypeVar("T")


def _pick(new: T | None, old: T) -> T:
    return old if new is None else new


def apply_node_update(node: Node, update: NodeUpdate) -> Node:
    """``node`` with ``update`` applied; FailedPreconditionError if the rules refuse it."""
    spec = node.spec
    changed = attrs.evolve(
        spec,
        allow_scheduling=_pick(update.allow_scheduling, spec.allow_scheduling),
        eviction_requested=_pick(update.eviction_requested, spec.eviction_requested),
        tags=_pick(update.tags, spec.tags),
        zone=_pick(update.zone, spec.zone),
        region=_pick(update.region, spec.region),
    )
    if changed == spec:
        return node
    if changed.eviction_requested and changed.allow_scheduling:
        raise FailedPreconditionError(
            f"node {node.meta.name!r}: eviction needs scheduling off; send allowScheduling "
            "false with evictionRequested true"
        )
    return attrs.evolve(node, spec=changed)


def disk_holders(node: Node, replicas: Sequence[Replica]) -> dict[str, list[str]]:
    """Disk name -> the replicas of ``node`` placed on that disk (by its UUID or its name)."""
    keys: dict[str, str] = {}
    for name in node.spec.disks:
        keys[name] = name
        status = node.status.disk_status.get(name)
        if status is not None and status.disk_uuid:
            keys[status.disk_uuid] = name
    holders: dict[str, list[str]] = {name: [] for name in node.spec.disks}
    for replica in replicas:
        if replica.spec.node_id == node.meta.name and replica.spec.disk_id in keys:
            holders[keys[replica.spec.disk_id]].append(replica.meta.name)
    return {name: sorted(held) for name, held in holders.items()}


def _normal(path: str) -> str:
    return posixpath.normpath(path)


def _disk(node: str, name: str, old: DiskSpec | None, change: DiskChange) -> DiskSpec:
    if old is None:
        if change.path is None:
            raise InvalidArgumentError(
                f"node {node!r} has no disk {name!r}: to add it, give its path"
            )
        old = DiskSpec(path=_normal(change.path))
    elif change.path is not None and _normal(change.path) != _normal(old.path):
        raise FailedPreconditionError(
            f"disk {name!r} of node {node!r} is {old.path}: its path cannot change to "
            f"{change.path}; remove the disk, then add {change.path} as a disk"
        )
    disk = attrs.evolve(
        old,
        allow_scheduling=_pick(change.allow_scheduling, old.allow_scheduling),
        eviction_requested=_pick(change.eviction_requested, old.eviction_requested),
        storage_reserved=_pick(change.storage_reserved, old.storage_reserved),
        tags=_pick(change.tags, old.tags),
    )
    if disk != old and disk.eviction_requested and disk.allow_scheduling:
        raise FailedPreconditionError(
            f"disk {name!r} of node {node!r}: eviction needs the disk's scheduling off; send "
            "allowScheduling false with evictionRequested true"
        )
    return disk


def apply_disk_update(
    node: Node, disks: Mapping[str, DiskChange], holders: Mapping[str, Sequence[str]]
) -> Node:
    """``node`` with exactly the disks ``disks`` (see the module docstring); ``holders``: disk
    name -> the replicas on it (:func:`disk_holders`)."""
    name = node.meta.name
    for gone in sorted(set(node.spec.disks) - set(disks)):
        old = node.spec.disks[gone]
        held = list(holders.get(gone, ()))
        if old.allow_scheduling or held:
            why = []
            if old.allow_scheduling:
                why.append("it still allows scheduling (set allowScheduling false first)")
            if held:
                why.append(f"it holds replicas ({', '.join(held)}: delete or evict them first)")
            raise FailedPreconditionError(
                f"disk {gone!r} ({old.path}) of node {name!r} cannot be removed: {'; '.join(why)}"
            )
    wanted = {d: _disk(name, d, node.spec.disks.get(d), change) for d, change in disks.items()}
    seen: dict[str, str] = {}
    for disk_name, disk in sorted(wanted.items()):
        other = seen.setdefault(_normal(disk.path), disk_name)
        if other != disk_name:
            raise InvalidArgumentError(
                f"disks {other!r} and {disk_name!r} of node {name!r} are both {disk.path}: a "
                "directory is one disk"
            )
    if wanted == node.spec.disks:
        return node
    return attrs.evolve(node, spec=attrs.evolve(node.spec, disks=wanted))


async def update_node(
    objects: Objects, name: str, update: NodeUpdate, *, version: int | None = None
) -> Node:
    """Apply ``update`` to node ``name``; the node as stored."""
    return await objects.change(
        Node, name, at_version(version, lambda n: apply_node_update(n, update))
    )


async def update_disks(
    objects: Objects, name: str, disks: Mapping[str, DiskChange], *, version: int | None = None
) -> Node:
    """Make node ``name``'s disks ``disks``; the node as stored. The replicas are read first:
    one placed on a disk being removed after that read is not seen (the scheduler places no
    replica on a disk that does not allow scheduling, which removal requires)."""
    replicas = await replicas_on(objects, name)

    def apply(node: Node) -> Node:
        return apply_disk_update(node, disks, disk_holders(node, replicas))

    return await objects.change(Node, name, at_version(version, apply))
