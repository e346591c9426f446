"""The volume's links to its replicas: connect, attach and lose a replica; the stall watchdog.

One task per replica (:meth:`ReplicaLinks.connect`) holds its connection open and fails the
replica when the link breaks. One task per volume pings every link every :data:`PING_INTERVAL`
seconds and fails a replica whose ping goes unanswered for its timeout: the pings are sent at
once and their answers taken by the reactor, so an idle volume costs one wake-up per interval,
not a few task switches per replica (an idle node holds a hundred volumes). The links' answers
are not read by these tasks but by the volume's reactor (:mod:`lhtrio.net.reactor`), which
completes the fan-outs (:mod:`lhtrio.engine.fanout`) in place.

Failing a replica (:meth:`ReplicaLinks.fail`) is final for this engine: it goes to ERR, its link
is closed, and, if it held everything the volume acknowledged, an away log starts recording what
it will lack should it come back (:mod:`lhtrio.engine.dirty`; not while a purge runs, which drops
every log when it ends).

Stalls are found by one watchdog task per volume (:meth:`ReplicaLinks.watch`), which wakes once
a second, never per request, and asks the fan-outs which replicas are past their timeout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

import attrs
import trio

from lhtrio.clients.replica import ReplicaClient
from lhtrio.engine.dirty import DirtyTracker
from lhtrio.engine.operation_gate import OperationGate
from lhtrio.engine.replicaset import Member, Mode, ReplicaSet
from lhtrio.errors import (
    ConnectionLostError,
    HandshakeError,
    LhtrioError,
    NotFoundError,
    StorageError,
)
from lhtrio.models.volume import VolumeOperation
from lhtrio.net import RpcClient, open_rpc_client
from lhtrio.net.client import SeqSource
from lhtrio.net.pending import Pending
from lhtrio.net.reactor import Reactor
from lhtrio.wire import Role
from lhtrio.wire.messages import ZERO, Ping

__all__ = ["PING_INTERVAL", "WATCH_INTERVAL", "ReplicaLinks"]

logger = logging.getLogger(__name__)

PING_INTERVAL: Final = 2.0
WATCH_INTERVAL: Final = 1.0
_PING: Final = Ping()


def _next_round(now: float) -> float:
    """The next multiple of :data:`PING_INTERVAL` on trio's clock after ``now``: every volume
    of a process pings in the same rounds, so a node holding many wakes once per round for all
    of them (and its replicas answer them together), not once per volume at scattered times."""
    return (math.floor(now / PING_INTERVAL) + 1) * PING_INTERVAL


@attrs.define(eq=False)
class _Pinged:
    """A connected link as its pings see it: the last ping (None before the first) and when it
    was sent, and when the next one is due."""

    member: Member
    client: RpcClient
    due: float
    ping: Pending | None = None
    sent: float = 0.0


class ReplicaLinks:
    """The connections of volume ``name`` to its replicas (``replicas``), run in ``nursery``.

    ``clients`` maps the address of every connected replica to its client (a shared dict: the
    fan-outs read it per batch). ``seqs`` numbers the requests of every link: a batch is encoded
    once for all of them.
    """

    def __init__(
        self,
        name: str,
        replicas: ReplicaSet,
        nursery: trio.Nursery,
        reactor: Reactor,
        *,
        dirty: DirtyTracker,
        operation: OperationGate,
        local: bool = True,
    ) -> None:
        self.name = name
        self.replicas = replicas
        self.nursery = nursery
        self._reactor = reactor  # reads the links' answers
        self._dirty = dirty
        self._operation = operation
        self._local = local  # reach replicas on this host by their same-host sockets
        self.clients: dict[str, RpcClient] = {}
        self.seqs = SeqSource()
        self._links: dict[str, trio.CancelScope] = {}
        self._refusals: dict[str, LhtrioError] = {}  # why a link could not be made (attach())
        self._watchdog: trio.CancelScope | None = None
        self._pinged: dict[str, _Pinged] = {}  # the connected links, by address
        self._pinger: trio.CancelScope | None = None

    async def connect(
        self, member: Member, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold the connection to ``member`` open (pinged, :meth:`_ping`); fail it when the
        link breaks.

        Reports started once connected, or once the replica was failed for being unreachable.
        Once connected, the link is shielded from the engine's own cancellation: on shutdown the
        engine flushes through it first, then calls :meth:`close` (while it connects, a cancelled
        engine just gives up on it).
        """
        scope = trio.CancelScope()
        self._links[member.address] = scope
        started = False
        with scope:
            try:
                async with open_rpc_client(
                    member.address,
                    volume=self.name,
                    client=f"engine-{self.name}",
                    role=Role.REPLICA,
                    seqs=self.seqs,
                    reactor=self._reactor,
                    local=self._local,
                    features=(ZERO,),
                ) as client:
                    scope.shield = True
                    self.clients[member.address] = client
                    # (first pinged in the round after the next: never sooner than an interval)
                    due = _next_round(trio.current_time() + PING_INTERVAL)
                    pinged = _Pinged(member, client, due=due)
                    self._pinged[member.address] = pinged
                    task_status.started()
                    started = True
                    self._start_pinger()
                    error = await client.wait_broken()
                    self.fail(member, str(error))
            except LhtrioError as exc:
                if not started:
                    self._refusals[member.address] = exc
                self.fail(member, str(exc))
            finally:
                # Only our own entries: the replica may be back already, under a new link.
                if started and self.clients.get(member.address) is client:
                    del self.clients[member.address]
                if started and self._pinged.get(member.address) is pinged:
                    del self._pinged[member.address]
        if self._links.get(member.address) is scope:
            del self._links[member.address]
        if not started:
            task_status.started()

    async def attach(self, member: Member) -> None:
        """Connect ``member`` (not yet in the set). Refused when nothing answers there
        (NotFoundError), something that is not this volume's replica does (IdentityMismatch,
        VersionMismatch), or it fails otherwise (StorageError)."""
        self._refusals.pop(member.address, None)
        await self.nursery.start(self.connect, member)
        if member.mode is Mode.ERR:
            cause = self._refusals.pop(member.address, None)
            what = f"cannot use replica {member.address}: {member.error}"
            if isinstance(cause, HandshakeError):
                raise type(cause)(what)
            if isinstance(cause, ConnectionLostError):
                raise NotFoundError(f"{what}; is a replica of volume {self.name} running there?")
            raise StorageError(what)

    def close(self) -> None:
        """End every replica link, the pings and the watchdog (engine shutdown; the replicas
        stay as they are)."""
        for scope in list(self._links.values()):
            scope.cancel()
        for task in (self._watchdog, self._pinger):
            if task is not None:
                task.cancel()

    def _start_pinger(self) -> None:
        if self._pinger is None:
            self._pinger = trio.CancelScope()
            self.nursery.start_soon(self._ping, self._pinger)

    async def _ping(self, scope: trio.CancelScope) -> None:
        """Ping every link once a round (:func:`_next_round`: every :data:`PING_INTERVAL`
        seconds) once its last ping was answered; fail a replica whose ping is not answered
        within its timeout. Wakes only when a ping is due or a timeout would run out."""
        with scope:
            while True:
                now = trio.current_time()
                wake = now + PING_INTERVAL
                for link in list(self._pinged.values()):
                    member = link.member
                    if link.ping is not None and not link.ping.done:
                        deadline = link.sent + self.replicas.timeout(member)
                        if now >= deadline:
                            self.fail(member, "did not answer a ping in time")
                        else:
                            wake = min(wake, deadline)
                        continue
                    if now < link.due:
                        wake = min(wake, link.due)
                        continue
                    try:
                        link.ping = link.client.submit([_PING])  # sent now; the reactor reads
                    except ConnectionLostError:
                        continue  # (its link's task fails it)
                    link.sent, link.due = now, _next_round(now)
                    wake = min(wake, now + self.replicas.timeout(member))
                await trio.sleep_until(wake)

    def client(self, member: Member) -> RpcClient | None:
        return self.clients.get(member.address)

    def control(self, member: Member) -> ReplicaClient | None:
        """The typed control calls of ``member`` over its link (None while not connected)."""
        rpc = self.clients.get(member.address)
        return None if rpc is None else ReplicaClient(rpc)

    def fail(self, member: Member, why: str) -> None:
        """Set ``member`` to ERR and drop its connection."""
        if member.mode is Mode.ERR:
            return
        if (
            member.mode is Mode.RW
            and member.synced
            and self._operation.state is not VolumeOperation.PURGE
        ):
            self._dirty.away(member.address)  # what it may lack, should it come back
        self.replicas.fail(member, why)
        logger.warning(
            "replica %s of volume %s failed: %s; marked ERR, volume %s",
            member.address,
            self.name,
            why,
            self.replicas.health.value,
        )
        scope = self._links.get(member.address)
        if scope is not None:
            scope.cancel()

    def watch(self, check: Callable[[float], None]) -> None:
        """Start the watchdog: ``check(now)`` once a second until :meth:`close` (the first call
        starts it; later ones do nothing)."""
        if self._watchdog is None:
            self._watchdog = trio.CancelScope()
            self.nursery.start_soon(self._watch, self._watchdog, check)

    async def _watch(self, scope: trio.CancelScope, check: Callable[[float], None]) -> None:
        with scope:
            while True:
                await trio.sleep(WATCH_INTERVAL)
                check(trio.current_time())
