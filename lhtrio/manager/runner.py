"""Run a reconciler: feed it the names of one kind from a list and a watch, a few at a time.

``run_reconciler(store, kind, reconcile)`` keeps calling ``await reconcile(name)`` for every
object of ``kind`` whose state may have changed — level-triggered: ``reconcile`` reads the
object (or finds it gone) and makes the world match it; it is not told what changed. The rules of
who runs when are :class:`lhtrio.manager.queue.WorkQueue`'s (coalescing, never one name twice
at once, backoff on failure). Here:

* **List, then watch** from the list's revision; a watch that falls behind the store's kept
  changes (:class:`~lhtrio.errors.GoneError`) or breaks lists again (nothing is missed: every
  listed name is reconciled).
* **Scope**: given a :class:`~lhtrio.manager.scope.Scope`, only the names it covers are
  queued, whether from a change, a nudge or the resync (those this node may act on: its
  replicas, the volumes it is responsible for), and a change that takes a name out of it is
  still reconciled once. A nudge of :data:`~lhtrio.manager.scope.EVERY` queues every covered
  name (the nodes up changed, or a setting: what the scope or the plans depend on).
* **Periodic resync**: every ``resync`` seconds every covered name is reconciled again, so a
  reconcile that depends on something outside the store (an instance, a node's free space)
  converges without an event.
* A failing reconcile is logged and retried with backoff; it never stops the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol

import trio

from lhtrio.errors import GoneError, LhtrioError
from lhtrio.manager.queue import WorkQueue
from lhtrio.manager.scope import EVERY, Scope
from lhtrio.manager.store.api import Document, EventType, Store
from lhtrio.manager.store.rules import metadata

__all__ = ["RESYNC", "WORKERS", "Index", "Reconcile", "follow", "run_reconciler"]

logger = logging.getLogger(__name__)

#: Every known object is reconciled again this often (seconds): a net, since what reconcilers
#: read outside their own kind nudges them (instances, leases, settings, nodes: see
#: :mod:`lhtrio.manager.nudges`); what is left for it is a timer of a volume's plan (the
#: replica replenishment wait, the stale replica timeout) and a disk's free space.
RESYNC: Final = 120.0
#: Objects of one kind reconciled at the same time (never the same object twice).
WORKERS: Final = 4
#: Pause before listing again after the store failed (seconds).
RELIST_PAUSE: Final = 1.0

#: ``await reconcile(name)``: None when done, or the seconds after which to look again (a
#: change is under way outside the store, such as a rebuild, and no event will tell of its end).
Reconcile = Callable[[str], Awaitable[float | None]]


class _Work:
    """The queue and the wake-up of the workers waiting on it."""

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self._changed = trio.Event()

    def poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def add(self, name: str) -> None:
        self.queue.add(name)
        self.poke()

    async def next(self) -> str:
        while True:
            name = self.queue.get(trio.current_time())
            if name is not None:
                return name
            changed, due = self._changed, self.queue.next_time()
            with trio.move_on_at(math.inf if due is None else due):
                await changed.wait()


async def run_reconciler(
    store: Store,
    kind: str,
    reconcile: Reconcile,
    *,
    workers: int = WORKERS,
    resync: float = RESYNC,
    nudges: trio.MemoryReceiveChannel[str] | None = None,
    scope: Scope | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Reconcile every object of ``kind`` ``scope`` covers (default: every one) until
    cancelled (see the module docstring); started once the first list was read. Names received
    on ``nudges`` are reconciled too (something outside the store changed: an instance
    stopped)."""
    work = _Work()
    known = _Known(scope or _Everything())
    async with trio.open_nursery() as nursery:
        await nursery.start(_feed, store, kind, work, known)
        nursery.start_soon(_resync, work, known, resync)
        if nudges is not None:
            nursery.start_soon(_nudged, work, known, nudges)
        for _ in range(workers):
            nursery.start_soon(_worker, kind, work, reconcile)
        task_status.started()


class _Everything:
    def see(self, name: str, document: Document) -> None:
        pass

    def forget(self, name: str) -> None:
        pass

    def covers(self, name: str) -> bool:
        return True


class _Known:
    """The names listed or watched, and the scope that says which of them are this node's."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.names: set[str] = set()

    def covered(self) -> list[str]:
        covers = self.scope.covers
        return sorted(name for name in self.names if covers(name))


async def _feed(
    store: Store,
    kind: str,
    work: _Work,
    known: _Known,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    started = False
    scope = known.scope
    while True:
        try:
            listing = await store.list(kind)
            names = set()
            for document in listing.documents:
                name = str(metadata(document)["name"])
                names.add(name)
                scope.see(name, document)
            for name in known.names - names:  # deleted while we were not watching
                if scope.covers(name):
                    work.queue.add(name)
                scope.forget(name)
            known.names = names
            for name in known.covered():
                work.queue.add(name)
            work.poke()
            if not started:
                task_status.started()
                started = True
            async with store.watch(kind, listing.revision) as events:
                async for event in events:
                    name = str(metadata(event.document)["name"])
                    before = name in known.names and scope.covers(name)
                    if event.type is EventType.DELETED:
                        known.names.discard(name)  # (its reconcile finds it gone)
                        scope.forget(name)
                    else:
                        known.names.add(name)
                        scope.see(name, event.document)
                    if before or scope.covers(name):
                        work.add(name)
        except GoneError as exc:
            logger.info("%s watch: %s; listing again", kind, exc)
        except LhtrioError as exc:
            logger.warning("%s watch failed: %s; listing again in %.0f s", kind, exc, RELIST_PAUSE)
            await trio.sleep(RELIST_PAUSE)


async def _nudged(work: _Work, known: _Known, nudges: trio.MemoryReceiveChannel[str]) -> None:
    async for name in nudges:
        if name == EVERY:
            for covered in known.covered():
                work.queue.add(covered)
            work.poke()
        elif known.scope.covers(name):
            work.add(name)


async def _resync(work: _Work, known: _Known, every: float) -> None:
    while True:
        await trio.sleep(every)
        for name in known.covered():
            work.queue.add(name)
        work.poke()


async def _worker(kind: str, work: _Work, reconcile: Reconcile) -> None:
    queue = work.queue
    while True:
        name = await work.next()
        try:
            again = await reconcile(name)
        except Exception as exc:  # a reconcile's bug or failure must not stop the others
            delay = queue.failed(name, trio.current_time())
            logger.warning("reconcile %s %s failed (again in %.1f s): %s", kind, name, delay, exc)
        else:
            queue.done(name)
            if again is not None:
                queue.add_after(name, trio.current_time() + again)
        work.poke()


class Index(Protocol):
    """What a :func:`follow` keeps up to date from the documents it lists and watches."""

    def reset(self, documents: Iterable[Document]) -> None: ...

    def see(self, document: Document) -> None: ...

    def forget(self, name: str) -> None: ...


async def follow(
    store: Store,
    kind: str,
    key: Callable[[Document], str],
    nudge: trio.MemorySendChannel[str],
    *,
    index: Index | None = None,
    on_revision: Callable[[int], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``key(document)`` of every change of ``kind`` to ``nudge`` until cancelled (what
    another kind's reconciler should look at: a replica's volume, a volume's attachment); an
    empty key sends nothing. ``index`` is kept from every listing and change first;
    ``on_revision`` is then told the revision of each (every change of ``kind`` up to it is in
    the index). Started once the first listing was read."""
    while True:
        try:
            listing = await store.list(kind)
            if index is not None:
                index.reset(listing.documents)
            if on_revision is not None:
                on_revision(listing.revision)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            async with store.watch(kind, listing.revision) as events:
                async for event in events:
                    if index is None:
                        pass
                    elif event.type is EventType.DELETED:
                        index.forget(str(metadata(event.document)["name"]))
                    else:
                        index.see(event.document)
                    if on_revision is not None:
                        on_revision(event.revision)
                    if name := key(event.document):
                        await nudge.send(name)
        except GoneError:
            continue
        except LhtrioError as exc:
            logger.warning("following %s failed: %s; again in %.0f s", kind, exc, RELIST_PAUSE)
            await trio.sleep(RELIST_PAUSE)
