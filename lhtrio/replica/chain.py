"""Pure chain logic over disk metadata: the live chain, validation, removal plans, purge order.

Disks are keyed by file name (``volume-snap-a.img``, ``volume-head-003.img``) and point at their
parent by file name; the parent of the base disk is ``""``. Several disks may share a parent after a
revert (the older branch survives), so the disks form a forest; the *live chain* is the path from
the head to the root.

The removal machinery is Longhorn's (``longhorn-facts.md`` §2.2-2.3), with Longhorn's naming:
in every :class:`~lhtrio.models.replica.RemovalAction` (the record ``prepare_remove`` returns),
``source`` is the disk being removed and ``target`` its child.

- no children → ``remove(source)``;
- one child that is not the head → ``coalesce(source, target)`` (copy the child's data into the
  removed disk) then ``replace(source, target)`` (the merged file takes the child's name);
- one child that is the head → ``prune(source, target)`` (punch holes in the removed disk wherever
  the head has data: the head must never be rewritten or renamed under I/O);
- several children → nothing (after a revert; it becomes removable once the branches are gone).

Purge (:func:`purge_order`) walks from every leaf towards the root, like Longhorn's sync agent, and
defers the removed disk whose child is the head to the very end, so that it is pruned once, after
everything merged into it. A disk reached by several walks is processed at its *last* visit, i.e.
after every branch below it, when it has the best chance of having a single child left.
"""

from __future__ import annotations

from collections.abc import Mapping

from lhtrio.errors import ConflictError, CorruptMetadataError, InvalidArgumentError, NotFoundError
from lhtrio.models.replica import ActionKind, RemovalAction
from lhtrio.replica.index import MAX_LAYERS
from lhtrio.replica.meta import DiskMeta
from lhtrio.replica.names import VOLUME_META, meta_file

__all__ = [
    "MAX_CHAIN",
    "children_map",
    "validate",
    "live_chain",
    "prepare_remove",
    "purge_marks",
    "purge_order",
]

MAX_CHAIN = MAX_LAYERS


def children_map(disks: Mapping[str, DiskMeta]) -> dict[str, list[str]]:
    """Parent → sorted children, for every disk (disks without children map to ``[]``)."""
    children: dict[str, list[str]] = {name: [] for name in disks}
    for name in sorted(disks):
        parent = disks[name].parent
        if parent in children:
            children[parent].append(name)
    return children


def _where(origin: str, name: str) -> str:
    return f"{origin}/{name}" if origin else name


def validate(disks: Mapping[str, DiskMeta], head: str, *, origin: str = "") -> list[str]:
    """Check the disk graph and return the live chain (head first).

    Raises CorruptMetadataError naming the offending file (prefixed with ``origin``, the replica
    directory) for: a head that is not among the disks, a parent that does not exist, a cycle, or a
    chain of more than :data:`MAX_CHAIN` disks.
    """
    if head not in disks:
        raise CorruptMetadataError(
            f"{_where(origin, VOLUME_META)}: the head {head} has no {meta_file(head)}"
        )
    for name in sorted(disks):
        parent = disks[name].parent
        if parent and parent not in disks:
            raise CorruptMetadataError(
                f"{_where(origin, meta_file(name))}: its parent {parent} does not exist"
            )
    depth: dict[str, int] = {}
    for start in sorted(disks):
        path: list[str] = []
        on_path: set[str] = set()
        node = start
        while node and node not in depth:
            if node in on_path:
                raise CorruptMetadataError(
                    f"{_where(origin, meta_file(node))}: the parent links form a cycle "
                    f"({' -> '.join([*path[path.index(node) :], node])})"
                )
            path.append(node)
            on_path.add(node)
            node = disks[node].parent
        below = depth[node] if node else 0
        for name in reversed(path):
            below += 1
            depth[name] = below
            if below > MAX_CHAIN:
                raise CorruptMetadataError(
                    f"{_where(origin, meta_file(name))}: its chain has more than {MAX_CHAIN} "
                    f"disks, the most a replica supports"
                )
    return live_chain(disks, head)


def live_chain(disks: Mapping[str, DiskMeta], head: str) -> list[str]:
    """The chain from ``head`` to the root, head first (assumes a validated graph)."""
    chain = []
    node = head
    while node:
        chain.append(node)
        if len(chain) > MAX_CHAIN:
            raise CorruptMetadataError(f"{meta_file(head)}: chain longer than {MAX_CHAIN} disks")
        node = disks[node].parent
    return chain


def prepare_remove(disks: Mapping[str, DiskMeta], head: str, name: str) -> list[RemovalAction]:
    """The actions that remove the disk ``name`` (which must be marked removed)."""
    if name == head:
        raise InvalidArgumentError(f"{name} is the volume head; it cannot be removed")
    disk = disks.get(name)
    if disk is None:
        raise NotFoundError(f"disk {name} does not exist")
    if not disk.removed:
        raise ConflictError(f"disk {name} is not marked removed; mark it removed first")
    kids = children_map(disks)[name]
    if not kids:
        return [RemovalAction(kind=ActionKind.REMOVE, source=name)]
    if len(kids) > 1:
        return []
    child = kids[0]
    if child == head:
        return [RemovalAction(kind=ActionKind.PRUNE, source=name, target=child)]
    return [
        RemovalAction(kind=ActionKind.COALESCE, source=name, target=child),
        RemovalAction(kind=ActionKind.REPLACE, source=name, target=child),
    ]


def purge_marks(disks: Mapping[str, DiskMeta], head: str) -> list[str]:
    """System snapshots (not user-created) that purge marks removed first."""
    return sorted(
        name
        for name, disk in disks.items()
        if name != head and not disk.user_created and not disk.removed
    )


def purge_order(disks: Mapping[str, DiskMeta], head: str) -> list[str]:
    """The removed disks in the order purge processes them (see the module docstring)."""
    children = children_map(disks)
    leaves = [name for name in sorted(disks) if not children[name]]
    latest = ""
    last_visit: dict[str, tuple[int, int]] = {}
    for walk, leaf in enumerate(leaves):
        node = leaf
        step = 0
        while node:
            disk = disks[node]
            if disk.removed and node != head:
                if head in children[node]:
                    latest = node
                else:
                    last_visit[node] = (walk, step)
            node = disk.parent
            step += 1
    order = sorted(last_visit, key=last_visit.__getitem__)
    if latest:
        order.append(latest)
    return order
