"""The rules of a volume's replica set, as pure logic (no trio, no I/O).

Modes follow Longhorn (``longhorn-facts.md`` §3.3): ``RW`` replicas take writes and serve reads,
``WO`` replicas (being rebuilt) take writes only, ``ERR`` replicas take nothing and never come
back in this engine's life (the operator removes and re-adds them). The volume is *healthy* while
it has at least as many RW replicas as it should have (``desired``: the replicas it was started
with), *degraded* while it has fewer but at least one, *faulted* with none (Longhorn's
robustness: a replica removed by the operator still counts as missing).

Three decisions live here:

* **Stall timeouts** (Longhorn's rule): a replica that does not answer within ``short`` seconds
  is failed, except the last RW replica, which gets ``2 * short`` — failing it faults the volume.
* **Staleness at start.** A replica whose persisted revision counter is below the highest one
  missed writes that the others acknowledged and flushed: it starts in ERR. The engine keeps this
  sound for acknowledged writes that were *not* flushed yet: when it fails a replica it flushes
  the survivors before it answers the client (see :mod:`lhtrio.engine.fanout`), so their persisted
  counters move past anything the failed replica can have. A replica whose ``volume.meta`` says a
  rebuild into it did not finish starts in ERR too: its snapshot files may be partial. The
  counters cannot speak for a replica that does not answer: the replica set the engine records
  on the replicas (:mod:`lhtrio.engine.membership`) does, and rules out the replicas it left out
  — or every replica, while one it names is missing and an address does not answer.
* **Salvage** (every replica ERR): the newest persisted revision counter wins, ties go to the
  largest allocated head, then the newest modification (:func:`choose_salvage`).

Whoever owns the engine can be told of every change of a mode or of the membership without
polling: :attr:`ReplicaSet.on_change`, a plain callable (the node's supervisor wakes its
instance watch with it, so its manager learns of a failed or rebuilt replica at once).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from lhtrio.engine import mutations
from lhtrio.models.replica import MemberRecord, ReplicaInfo
from lhtrio.models.volume import Health, Mode

_NO_STALE_CHECK = mutations.active(mutations.NO_STALE_CHECK)  # test builds only

__all__ = [
    "Mode",
    "Health",
    "Member",
    "ReplicaSet",
    "StartDecision",
    "decide_start",
    "choose_salvage",
    "salvage_refusals",
]


@attrs.define(eq=False)
class Member:
    """One replica of the set: its address, mode, and why it failed (if it did).

    ``synced``: known to hold everything the volume acknowledged (RW after the start decision, or
    rebuilt). Only such a replica gets an away log when it fails (:mod:`lhtrio.engine.dirty`): one
    that was already behind (stale, unreachable at start) may lack more than any log records.
    """

    address: str
    mode: Mode
    error: str = ""
    synced: bool = False
    identity: tuple[str, str] | None = None  # (instance, path) as the replica reported them


class ReplicaSet:
    """Which replicas take which I/O, and what a failure does to the volume.

    Modes change only through these methods: the views every write consults (``writers``,
    ``readers``, ``rebuilding``) are kept computed instead of being rebuilt per request.
    ``on_change`` (None, or a callable taking nothing) is called after every change of a mode or
    of the membership, and by :meth:`notify`; it must not raise and must not change the set.
    """

    def __init__(
        self, members: Iterable[Member], *, short_timeout: float = 8.0, desired: int | None = None
    ) -> None:
        self.members = list(members)
        self.short_timeout = short_timeout
        self.desired = len(self.members) if desired is None else desired
        self._next_reader = itertools.count()
        self.on_change: Callable[[], None] | None = None
        self.version = 0  # counts the changes of a mode or of the membership
        self._changed()

    def _changed(self) -> None:
        """Recompute the views every write consults (a mode or the membership changed)."""
        self.version += 1
        self._writers = [m for m in self.members if m.mode is not Mode.ERR]
        self._readers = [m for m in self.members if m.mode is Mode.RW]
        self._rebuilding = any(m.mode is Mode.WO for m in self.members)
        self.notify()

    def notify(self) -> None:
        """Tell the owner (``on_change``) that the volume changed: a mode, the membership, or
        something the owner reads beside them (the volume's size)."""
        if self.on_change is not None:
            self.on_change()

    def by_address(self, address: str) -> Member | None:
        return next((m for m in self.members if m.address == address), None)

    @property
    def writers(self) -> list[Member]:
        """RW and WO replicas (a shared list: do not modify it)."""
        return self._writers

    @property
    def readers(self) -> list[Member]:
        """RW replicas (a shared list: do not modify it)."""
        return self._readers

    @property
    def rebuilding(self) -> bool:
        """A WO replica is being rebuilt (unmap, purge and revert wait for it)."""
        return self._rebuilding

    @property
    def health(self) -> Health:
        readers = len(self.readers)
        if not readers:
            return Health.FAULTED
        return Health.HEALTHY if readers >= max(self.desired, 1) else Health.DEGRADED

    def read_order(self) -> list[Member]:
        """RW replicas in round-robin order: the first serves the read, the rest are fallbacks."""
        readers = self.readers
        if not readers:
            return []
        start = next(self._next_reader) % len(readers)
        return readers[start:] + readers[:start]

    def timeout(self, member: Member) -> float:
        """How long ``member`` may stall before it is failed."""
        readers = self.readers
        if member.mode is Mode.RW and len(readers) == 1:
            return 2 * self.short_timeout
        return self.short_timeout

    def fail(self, member: Member, why: str) -> None:
        if member.mode is not Mode.ERR:
            member.mode = Mode.ERR
            member.error = why
            self._changed()

    def add(self, member: Member) -> None:
        self.members.append(member)
        self._changed()

    def promote(self, member: Member) -> None:
        """A rebuilt (WO) replica becomes RW; a salvaged (ERR) one too."""
        member.mode = Mode.RW
        member.error = ""
        member.synced = True
        self._changed()

    def remove(self, member: Member) -> None:
        self.members.remove(member)
        self._changed()


@attrs.frozen(kw_only=True)
class StartDecision:
    """What the engine does with each replica it was started with."""

    size: int
    modes: dict[str, Mode]
    reasons: dict[str, str]


def decide_start(
    infos: Sequence[tuple[str, ReplicaInfo | str]],
    *,
    size: int,
    salvage: bool = False,
    records: Mapping[str, MemberRecord] | None = None,
) -> StartDecision:
    """Choose each replica's mode from its ``info`` (or the error text of reaching it) and the
    replica set it holds recorded (``records``, by address; see :mod:`lhtrio.engine.membership`).

    A replica is ERR when it cannot be reached, its size differs from ``size``, a rebuild into it
    did not finish, it is not among the replicas of the newest record (or does not hold that
    record), or its persisted revision counter is below the highest among the others. Every one
    is ERR while a replica of the newest record is missing and an address in ``infos`` does not
    answer (it may be that one).
    With ``salvage``, when that leaves no RW replica, :func:`choose_salvage` picks one.
    """
    modes: dict[str, Mode] = {}
    reasons: dict[str, str] = {}
    counters: dict[str, int] = {}
    for address, info in infos:
        if isinstance(info, str):
            modes[address], reasons[address] = Mode.ERR, info
        elif info.size != size:
            modes[address] = Mode.ERR
            reasons[address] = f"replica size {info.size} differs from the volume's {size}"
        elif info.rebuilding:
            modes[address] = Mode.ERR
            reasons[address] = (
                "a rebuild into it did not finish: its snapshots are incomplete; add it again "
                "(lhtrio ctl replica add)"
            )
        else:
            counters[address] = info.persisted_revision_counter
    _judge_records(infos, records or {}, counters, modes, reasons)
    newest = max(counters.values(), default=0)
    for address, counter in counters.items():
        if counter < newest and not _NO_STALE_CHECK:
            modes[address] = Mode.ERR
            reasons[address] = (
                f"stale: revision counter {counter} is behind {newest}; it missed writes, "
                "rebuild it"
            )
        else:
            modes[address] = Mode.RW
    if salvage and Mode.RW not in modes.values():
        chosen = choose_salvage(infos, size=size)
        if chosen is not None:
            address, why = chosen
            modes[address], reasons[address] = Mode.RW, why
    return StartDecision(size=size, modes=modes, reasons=reasons)


def _judge_records(
    infos: Sequence[tuple[str, ReplicaInfo | str]],
    records: Mapping[str, MemberRecord],
    counters: dict[str, int],
    modes: dict[str, Mode],
    reasons: dict[str, str],
) -> None:
    """Take out of ``counters`` (the candidates to serve) every replica the newest record rules
    out, with its reason; all of them while a replica of that record is unreachable."""
    newest = max(records.values(), key=lambda r: r.epoch, default=MemberRecord())
    if not newest.epoch or _NO_STALE_CHECK:
        return  # nothing recorded yet (a new volume, or replicas older than the records)
    holding = {  # the replicas that answered and hold the newest record
        address: info.instance
        for address, info in infos
        if not isinstance(info, str) and records.get(address, MemberRecord()).epoch == newest.epoch
    }
    named = newest.instances()
    # A replica that does not answer may be one of the record's at another address than the
    # record's (restarted elsewhere): any unreachable address, not only the recorded ones.
    unreachable = [address for address, info in infos if isinstance(info, str)]
    missing = sorted(named - set(holding.values()))
    for address in list(counters):
        if missing and unreachable:
            why = (
                f"waiting for {', '.join(missing)}: held every write at epoch {newest.epoch}, "
                f"and may be the replica at {', '.join(unreachable)}, which does not answer: "
                f"it may hold writes this one missed (start again once it is back, or salvage)"
            )
        elif holding.get(address) not in named:
            why = (
                f"stale: not among the replicas that held every write at epoch {newest.epoch} "
                f"({', '.join(sorted(named)) or 'none'}); it missed writes, rebuild it"
            )
        else:
            continue
        del counters[address]
        modes[address], reasons[address] = Mode.ERR, why


def _salvage_key(info: ReplicaInfo) -> tuple[bool, int, int, int]:
    return (
        not info.rebuilding,
        info.persisted_revision_counter,
        info.head_allocated,
        info.last_modify_time,
    )


def salvage_refusals(infos: Sequence[tuple[str, ReplicaInfo | str]], *, size: int) -> list[str]:
    """Why each replica that :func:`choose_salvage` passes over cannot serve the volume."""
    reasons = []
    for address, info in infos:
        if isinstance(info, str):
            reasons.append(f"{address}: {info}")
        elif info.size != size:
            reasons.append(f"{address}: its size {info.size} differs from the volume's {size}")
    return reasons


def choose_salvage(
    infos: Sequence[tuple[str, ReplicaInfo | str]], *, size: int
) -> tuple[str, str] | None:
    """The replica to serve a faulted volume again, and why it was chosen; None if none can.

    Among the reachable replicas of the right size: the newest persisted revision counter wins
    (it holds every flushed write); ties go to the largest allocated head, then the newest
    modification. A replica whose rebuild did not finish is chosen only if no other can be.
    """
    usable = [
        (address, info)
        for address, info in infos
        if not isinstance(info, str) and info.size == size
    ]
    if not usable:
        return None
    ranked = sorted(usable, key=lambda item: _salvage_key(item[1]), reverse=True)
    address, best = ranked[0]
    key = _salvage_key(best)
    why = [f"salvaged: newest persisted revision counter {key[1]}"]
    if len(ranked) > 1:
        runner = _salvage_key(ranked[1][1])
        if runner[:2] == key[:2]:
            why.append(f"largest head ({key[2]} bytes allocated)")
            if runner[2] == key[2]:
                why.append("newest modification")
        why.append(f"over {', '.join(a for a, _ in ranked[1:])}")
    if best.rebuilding:
        why.append("WARNING: its rebuild did not finish, data may be incomplete")
    return address, "; ".join(why)
