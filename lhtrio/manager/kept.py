"""What a node's manager keeps from the watches it holds, for its reconcilers to read.

A volume's reconcile needs the nodes (the scheduler's view), the settings, the nodes up and the
space scheduled on each disk: reading them from the store at each reconcile cost a listing of
every node and setting (and, before, every lease and replica) per volume reconcile, O(nodes) of
copying and checking each time. The manager already watches all of these (for its nudges), so it
keeps them as they change, decoded once (:class:`Kept`, an
:class:`~lhtrio.manager.runner.Index` for :func:`~lhtrio.manager.runner.follow`), and hands them
over as :class:`Watched`. They trail the store by the time a watch event takes (milliseconds);
the decisions taken on them are the scheduler's and the ownership rules', which tolerate that
(two nodes' managers placing at the same moment could always miss each other's replicas). What a
reconcile writes is still read from the store and written with its version: a stale view can
never overwrite a change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Generic, TypeVar

import attrs
import trio

from lhtrio.errors import CorruptMetadataError
from lhtrio.manager.lease import Availability
from lhtrio.manager.space import ScheduledSpace
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.codec import from_document
from lhtrio.manager.store.rules import metadata
from lhtrio.models.cluster import ClusterObject, Node, Setting

__all__ = ["Kept", "Watched"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=ClusterObject)


class Kept(Generic[K]):
    """Every object of one kind as last listed or watched, decoded (one that does not decode is
    left out, with a warning: its own reconcile says what is wrong)."""

    def __init__(self, kind: type[K]) -> None:
        self.kind = kind
        self._objects: dict[str, K] = {}
        #: set once the kind was first listed
        self.listed = trio.Event()

    def reset(self, documents: Iterable[Document]) -> None:
        self._objects.clear()
        for document in documents:
            self.see(document)
        self.listed.set()

    def see(self, document: Document) -> None:
        name = str(metadata(document)["name"])
        try:
            self._objects[name] = from_document(self.kind, document)
        except CorruptMetadataError as exc:
            logger.warning("ignoring a %s: %s", self.kind.KIND, exc)
            self._objects.pop(name, None)

    def forget(self, name: str) -> None:
        self._objects.pop(name, None)

    def values(self) -> list[K]:
        """Every object, by name."""
        return [self._objects[name] for name in sorted(self._objects)]


@attrs.frozen
class Watched:
    """What the manager keeps for its reconcilers (see the module)."""

    availability: Availability = attrs.field(factory=Availability)
    space: ScheduledSpace = attrs.field(factory=ScheduledSpace)
    nodes: Kept[Node] = attrs.field(factory=lambda: Kept(Node))
    settings: Kept[Setting] = attrs.field(factory=lambda: Kept(Setting))
