"""The volume's replica set, recorded on its replicas before anything is acknowledged after it
changed.

**Why.** At start the revision counters say which of the replicas the engine *reaches* is newest;
they say nothing of one it does not reach. Replicas A, B, C; C fails, the engine flushes A and B
and goes on; B fails, A alone takes writes; A's node goes down; the engine restarts: B and C answer,
B's counter is the highest of the two, and without more B would serve, older than what A
acknowledged, and every rebuild would copy B's past over the others (found by the chaos runs:
``docs/reliability.md``, defect 4).

**What is recorded.** A :class:`~lhtrio.models.replica.MemberRecord`: an epoch and the RW replicas
(instance name and address) that hold every acknowledged write from then on. The engine writes it
to every writer (RW and WO, :meth:`Membership.record`) when it starts, and after any change of its
RW replicas before it answers the next flush, or a write that failed a replica
(:meth:`lhtrio.engine.fanout.Fanouts.write_settled`): so whatever a client was told was flushed,
every replica that was failed on the way is missing from the record on the survivors. A replica
keeps the highest epoch it was given (:mod:`lhtrio.replica.members`); each engine starts its
epochs past the highest it read.

**What a start concludes** (:func:`lhtrio.engine.replicaset.decide_start`): the newest record among
the replicas it reaches names the replicas that hold everything; a replica is RW only if it is
one of them *and* holds that record (a replica recreated under the same name holds none). When one
of them is missing while an address the engine was given does not answer, the start serves
nothing: that address may be the missing replica (restarted elsewhere, its address changes), which
may hold a newer record that excludes every one that answered, and no one can tell. The engine
waits (its owner starts it again) or the operator salvages. When every address given answered,
a missing member is its owner's decision (the manager starts an engine only with the replicas
that run, as Longhorn's does): the start goes on without it.
"""

from __future__ import annotations

import functools

import trio

from lhtrio.clients.replica import ReplicaClient
from lhtrio.engine import mutations
from lhtrio.engine.control import ControlCalls
from lhtrio.errors import LhtrioError, StorageError
from lhtrio.models.replica import MemberRecord, SetMember

__all__ = ["Membership"]

_NO_FLUSH_FANOUT = mutations.active(mutations.NO_FLUSH_FANOUT)  # test builds only


class Membership:
    """The epoch this engine records under and the RW replicas it last recorded."""

    def __init__(self, control: ControlCalls) -> None:
        self.replicas = control.replicas
        self._control = control
        self.epoch = 0  # the newest epoch seen or recorded; the next record is above it
        self._recorded: tuple[SetMember, ...] | None = None
        self._seen = -1  # the replica set's version when _current was computed
        self._current: tuple[SetMember, ...] = ()
        self._lock = trio.Lock()

    def seen(self, epoch: int) -> None:
        """A replica holds a record of ``epoch``: record above it from now on."""
        self.epoch = max(self.epoch, epoch)

    def current(self) -> tuple[SetMember, ...]:
        """The RW replicas now, as a record names them."""
        if self._seen != self.replicas.version:
            self._seen = self.replicas.version
            self._current = tuple(
                sorted(
                    SetMember(m.identity[0], m.address)
                    for m in self.replicas.readers
                    if m.identity is not None
                )
            )
        return self._current

    @property
    def stale(self) -> bool:
        """The RW replicas changed since they were last recorded."""
        return self.current() != self._recorded

    async def record(self) -> None:
        """Record the RW replicas on every writer unless they are recorded already.

        A writer that fails to record it is failed (:class:`ControlCalls`), which changes the set
        again: recorded again, until a round every writer took. StorageError when no RW replica
        is left, or when the record cannot be made (nothing may be acknowledged then)."""
        if _NO_FLUSH_FANOUT:
            return
        async with self._lock:
            while self.replicas.readers and self.stale:
                members = self.current()
                self.epoch += 1
                value = MemberRecord(epoch=self.epoch, members=members)
                try:
                    held = await self._control.all(
                        "set_members", functools.partial(_set_members, value=value)
                    )
                except StorageError:
                    raise
                except LhtrioError as exc:
                    raise StorageError(
                        f"volume {self._control.name}: the replica set could not be "
                        f"recorded: {exc.message}"
                    ) from None
                newer = max((h.epoch for h in held.values()), default=0)
                if newer > value.epoch:  # one held a newer record: record above it
                    self.seen(newer)
                    continue
                if self.current() == members:
                    self._recorded = members


async def _set_members(replica: ReplicaClient, *, value: MemberRecord) -> MemberRecord:
    return await replica.set_members(value)
