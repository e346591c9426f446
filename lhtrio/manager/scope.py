"""Which objects a node's reconcilers act on, judged from the documents their watches carry.

Every node's manager watches every volume, replica, engine and ticket (the store has no
per-node streams), but only one node acts on each: the replicas and engines placed on it, and
the volumes it is responsible for (:func:`lhtrio.manager.ownership.responsible`: their attach
node, else their owner, else an agreed taker while both are down). A reconcile that reads an
object only to find it is another node's is wasted, and there are as many of those as nodes
for each change: at 100 nodes and 10,000 volumes they were all the work there was. So the
runner (:mod:`lhtrio.manager.runner`) asks a :class:`Scope` before it queues a name, whether it
came from a change, a nudge or the resync.

A scope notes, from each document the runner lists or watches, the few fields that decide
(:meth:`Scope.see`: read from the raw document, never decoded whole), and answers for a name
from them and, for volumes, the nodes up now (:class:`Availability`, kept by
:func:`lhtrio.manager.nudges.follow_availability`, which also sends :data:`EVERY` when that set
changes so a takeover is queued at once). An object it knows nothing of (not listed yet, or
unreadable: its reconcile says what is wrong) is covered: a scope may queue too much, never too
little. The reconcilers still decide for themselves from what they read; the scope only spares
the others the reading.
"""

from __future__ import annotations

from typing import Final, Protocol

import attrs

from lhtrio.manager.lease import Availability
from lhtrio.manager.ownership import responsible
from lhtrio.manager.store.api import Document

__all__ = ["EVERY", "Borrowed", "OnNode", "Responsible", "Scope"]

#: A nudge that means every object the scope covers (no object is named ``*``).
EVERY: Final = "*"


class Scope(Protocol):
    def see(self, name: str, document: Document) -> None:
        """Note what of ``document`` (object ``name``, as listed or changed) decides."""
        ...

    def forget(self, name: str) -> None:
        """``name`` was deleted."""
        ...

    def covers(self, name: str) -> bool:
        """Whether this node acts on ``name`` (True when nothing is known of it)."""
        ...


def _field(document: Document, part: str, name: str) -> str | None:
    section = document.get(part)
    if not isinstance(section, dict):
        return None
    value = section.get(name, "")
    return value if isinstance(value, str) else None


@attrs.define
class OnNode:
    """Replicas or engines placed on ``node`` (``spec.nodeID``)."""

    node: str
    _placed: dict[str, str | None] = attrs.field(factory=dict)

    def see(self, name: str, document: Document) -> None:
        self._placed[name] = _field(document, "spec", "nodeID")

    def forget(self, name: str) -> None:
        self._placed.pop(name, None)

    def covers(self, name: str) -> bool:
        placed = self._placed.get(name)
        return placed is None or placed == self.node


@attrs.define
class Responsible:
    """Volumes (and their tickets, named as they are) ``node`` is responsible for, from their
    owner (``status.ownerID``) and attach node (``spec.nodeID``) and the nodes up."""

    node: str
    availability: Availability
    #: name -> (the revision seen, the owner and attach node: None when unreadable)
    _claims: dict[str, tuple[int, tuple[str, str] | None]] = attrs.field(factory=dict)

    def see(self, name: str, document: Document) -> None:
        """(Two watches of volumes feed it, the volume runner's and the tickets' nudges: an
        older version seen late does not replace a newer one.)"""
        version = _version(document)
        known = self._claims.get(name)
        if known is not None and version < known[0]:
            return
        owner, preferred = _field(document, "status", "ownerID"), _field(document, "spec", "nodeID")
        claim = None if owner is None or preferred is None else (owner, preferred)
        self._claims[name] = (version, claim)

    def forget(self, name: str) -> None:
        self._claims.pop(name, None)

    def covers(self, name: str) -> bool:
        known = self._claims.get(name)
        if known is None or known[1] is None:
            return True
        owner, preferred = known[1]
        return responsible(self.node, owner=owner, preferred=preferred, up=self.availability.up)


@attrs.frozen
class Borrowed:
    """Another kind's scope, for objects named as its own (a volume's tickets): only the
    owner of the scope notes what it sees."""

    scope: Scope

    def see(self, name: str, document: Document) -> None:
        pass

    def forget(self, name: str) -> None:
        pass

    def covers(self, name: str) -> bool:
        return self.scope.covers(name)


def _version(document: Document) -> int:
    meta = document.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    try:
        return int(str(version))
    except ValueError:
        return 0  # (a store whose versions are not numbers: the last one seen wins)
