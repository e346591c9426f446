"""What the scale simulation waits for, kept from a watch: the volumes not converged yet.

The scale run (:mod:`lhtrio.sim.scale`) checks every simulated second whether a phase has
converged: every volume attached and healthy, or every volume moved off a lost node. That check
listed every Volume and Replica from the store each time: at 100 nodes and 10,000 volumes, a copy
of 40,000 documents per simulated second, and garbage for the collector to walk. Here the two
kinds are watched instead (:func:`follow_view`, list then watch with the manager's
:func:`~lhtrio.manager.runner.follow`), into a :class:`VolumeView`: each event keeps the few
fields the goals read (a volume's state, robustness, owner and attach node; a replica's volume
and node) and judges again the one volume it concerns, so :attr:`VolumeView.pending` (the volumes
not at the goal) is always current and the check is ``not pending``, O(1); a new goal judges
every volume once. The view trails the store by the watch's turn:
:meth:`VolumeView.catch_up` waits for it (by :meth:`MemoryStore.last_change
<lhtrio.manager.store.memory.MemoryStore.last_change>`), at the same simulated instant, so a
check reads what a listing would have.

A goal is a :data:`Goal`: ``goal(volume, nodes)`` with the volume's :class:`Kept` fields and the
nodes its replicas are on (as many times as it has replicas there). :data:`healthy` and
:func:`lost` are the run's goals; their meaning is the one the listing check had.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs
import trio

from lhtrio.manager.runner import follow
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.store.rules import metadata

__all__ = ["Goal", "Kept", "VolumeView", "follow_view", "healthy", "lost"]

VOLUME: Final = "Volume"
REPLICA: Final = "Replica"


@attrs.frozen
class Kept:
    """What a goal reads of a volume's document."""

    state: str
    robustness: str
    owner: str
    node: str  # the node it is attached to (its spec)

    @classmethod
    def of(cls, document: Document) -> Kept:
        spec, status = _part(document, "spec"), _part(document, "status")
        return cls(
            state=status.get("state", ""),
            robustness=status.get("robustness", ""),
            owner=status.get("ownerID", ""),
            node=spec.get("nodeID", ""),
        )


#: ``goal(volume, nodes)``: whether a volume is where the phase wants it; ``nodes`` counts its
#: replicas on each node.
Goal = Callable[[Kept, Counter[str]], bool]


def healthy(volume: Kept, _: Counter[str]) -> bool:
    """Attached and healthy."""
    return volume.state == "attached" and volume.robustness == "healthy"


def lost(node: str) -> Goal:
    """After the loss of ``node``: owned by a node that is up, and reported degraded if it is
    attached elsewhere and had a replica on ``node``."""

    def done(volume: Kept, nodes: Counter[str]) -> bool:
        if volume.owner in ("", node):
            return False
        elsewhere = nodes[node] > 0 and volume.node != node
        return not elsewhere or volume.robustness == "degraded"

    return done


def _never(volume: Kept, nodes: Counter[str]) -> bool:
    return False


def _name(document: Document) -> str:
    return str(metadata(document)["name"])


def _part(document: Document, key: str) -> Mapping[str, Any]:
    part = document.get(key)
    return part if isinstance(part, Mapping) else {}


class VolumeView:
    """The volumes and where their replicas are, as followed (:func:`follow_view`), and which
    volumes are not at the goal (:attr:`pending`)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._seen: dict[str, int] = {}  # kind -> the revision its watch has seen
        self._moved = trio.Event()  # set (and replaced) when a watch has seen more
        self.volumes: dict[str, Kept] = {}
        self._placed: dict[str, tuple[str, str]] = {}  # replica -> (its volume, its node)
        self._nodes: dict[str, Counter[str]] = {}  # volume -> its replicas' nodes
        self._goal: Goal = _never
        #: the volumes that are not at the goal
        self.pending: set[str] = set()

    def seen(self, kind: str, revision: int) -> None:
        """The watch of ``kind`` has seen every change up to ``revision``."""
        self._seen[kind] = revision
        self._moved.set()
        self._moved = trio.Event()

    def _caught_up(self) -> bool:
        return all(
            self._seen.get(kind, -1) >= self.store.last_change(kind) for kind in (VOLUME, REPLICA)
        )

    async def catch_up(self) -> None:
        """Wait until the view has seen every change of the store so far. The watches are due
        to run then, so the clock cannot move meanwhile: what the view says is what a listing
        would have read now."""
        while not self._caught_up():
            await self._moved.wait()

    def aim(self, goal: Goal) -> None:
        """From now on, :attr:`pending` is judged by ``goal``."""
        self._goal = goal
        self.pending = {name for name in self.volumes if not self._at_goal(name)}

    def _at_goal(self, name: str) -> bool:
        return self._goal(self.volumes[name], self._nodes.get(name, Counter()))

    def _judge(self, name: str) -> None:
        if name in self.volumes and not self._at_goal(name):
            self.pending.add(name)
        else:
            self.pending.discard(name)

    # The Volume index.

    def reset_volumes(self, documents: Iterable[Document]) -> None:
        self.volumes = {_name(d): Kept.of(d) for d in documents}
        self.aim(self._goal)

    def see_volume(self, document: Document) -> None:
        name = _name(document)
        self.volumes[name] = Kept.of(document)
        self._judge(name)

    def forget_volume(self, name: str) -> None:
        self.volumes.pop(name, None)
        self._judge(name)

    # The Replica index.

    def reset_replicas(self, documents: Iterable[Document]) -> None:
        self._placed.clear()
        self._nodes.clear()
        for document in documents:
            self._place(_name(document), document)
        self.aim(self._goal)

    def see_replica(self, document: Document) -> None:
        name = _name(document)
        touched = {self._unplace(name), self._place(name, document)}
        for volume in touched:
            self._judge(volume)

    def forget_replica(self, name: str) -> None:
        self._judge(self._unplace(name))

    def _place(self, name: str, document: Document) -> str:
        spec = _part(document, "spec")
        volume, node = str(spec.get("volumeName", "")), str(spec.get("nodeID", ""))
        self._placed[name] = (volume, node)
        self._nodes.setdefault(volume, Counter())[node] += 1
        return volume

    def _unplace(self, name: str) -> str:
        placed = self._placed.pop(name, None)
        if placed is None:
            return ""
        volume, node = placed
        nodes = self._nodes[volume]
        nodes[node] -= 1
        if nodes[node] <= 0:
            del nodes[node]
        if not nodes:
            del self._nodes[volume]
        return volume


async def follow_view(
    store: MemoryStore,
    view: VolumeView,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``view`` from a list and a watch of the volumes and the replicas until cancelled;
    started once both were listed. :meth:`VolumeView.catch_up` waits for the changes made
    until then."""
    unused, _ = trio.open_memory_channel[str](0)  # (follow's nudges: an empty key sends none)
    indexes = {
        VOLUME: _Index(view.reset_volumes, view.see_volume, view.forget_volume),
        REPLICA: _Index(view.reset_replicas, view.see_replica, view.forget_replica),
    }
    async with trio.open_nursery() as nursery:
        for kind, index in indexes.items():
            watched = functools.partial(
                follow, index=index, on_revision=functools.partial(view.seen, kind)
            )
            await nursery.start(watched, store, kind, _no_key, unused)
        task_status.started()


@attrs.frozen
class _Index:
    """One kind's part of a :class:`VolumeView`, as the
    :class:`~lhtrio.manager.runner.Index` :func:`~lhtrio.manager.runner.follow` keeps."""

    reset: Callable[[Iterable[Document]], None]
    see: Callable[[Document], None]
    forget: Callable[[str], None]


def _no_key(document: Document) -> str:
    return ""
