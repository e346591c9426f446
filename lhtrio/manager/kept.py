"""Every object of one kind as a node's manager last listed or watched it, decoded once.

A volume's reconcile needs the nodes (the scheduler's view) and the settings, and the manager's
availability the nodes' leases: reading them from the store at each reconcile (or each second)
cost a listing of every one of them each time, O(nodes) of copying and checking. The manager
already watches these kinds (for its nudges), so it keeps them as they change (:class:`Kept`, an
:class:`~lhtrio.manager.runner.Index` for :func:`~lhtrio.manager.runner.follow`). They trail the
store by the time a watch event takes (milliseconds); what is written is still read from the
store and written with its version, so a stale view never overwrites a change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Generic, TypeVar

import trio

from lhtrio.errors import CorruptMetadataError
from lhtrio.manager.store.api import Document
from lhtrio.manager.store.codec import from_document
from lhtrio.manager.store.rules import metadata
from lhtrio.models.cluster import ClusterObject

__all__ = ["Kept"]

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
        #: set (and replaced) at every change
        self.changed = trio.Event()

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
        self._changed()

    def forget(self, name: str) -> None:
        self._objects.pop(name, None)
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def values(self) -> list[K]:
        """Every object, by name."""
        return [self._objects[name] for name in sorted(self._objects)]
