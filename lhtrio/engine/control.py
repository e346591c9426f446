"""Control calls to a volume's replicas: one call on every writer, and who is to blame if it fails.

:meth:`ControlCalls.all` runs a control call (snapshot, expand, purge, the write-intent calls...)
on every writer in parallel, through each one's :class:`~lhtrio.clients.replica.ReplicaClient`:
``await volume.control.all("expand", lambda replica: replica.expand(size))`` answers each
replica's typed result by address. A replica that alone fails a call the others did is failed: its
state now differs. But a call that *every* replica refused changed nothing anywhere: it is the
request's error, raised naming the volume, and fails no replica; so is an error about the request
itself (already exists, not found, invalid, conflict).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import trio

from lhtrio.clients.replica import ReplicaClient
from lhtrio.engine.links import ReplicaLinks
from lhtrio.engine.replicaset import Member, Mode
from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    LhtrioError,
    NotFoundError,
    StorageError,
)
from lhtrio.models.replica import ReplicaInfo

__all__ = ["ControlCalls"]

#: Errors of a control call that are the request's fault, not the replica's.
_CALLER_ERRORS: Final = (AlreadyExistsError, NotFoundError, InvalidArgumentError, ConflictError)

R = TypeVar("R")


class ControlCalls:
    """Control calls to the replicas of volume ``links.name`` over its links."""

    def __init__(self, links: ReplicaLinks) -> None:
        self.name = links.name
        self.replicas = links.replicas
        self._links = links

    async def all(
        self,
        what: str,
        call: Callable[[ReplicaClient], Awaitable[R]],
        /,
        *,
        members: Sequence[Member] | None = None,
    ) -> dict[str, R]:
        """Run ``call`` (control call ``what``, made on a replica's client) on every writer
        (or ``members``) in parallel; the results by address.

        Replicas that fail are set to ERR, except when the request is at fault: an error about
        the request itself (already exists, not found, invalid, conflict), or an error that
        *every* replica answered (each refused, so none changed: a bad request, never a reason
        to fail a replica). Those are raised, naming the volume, after all answered.
        """
        results: dict[str, R] = {}
        refused: dict[Member, LhtrioError] = {}

        async def one(member: Member) -> None:
            client = self._links.control(member)
            if client is None:
                self._links.fail(member, "not connected")
                return
            try:
                results[member.address] = await call(client)
            except LhtrioError as exc:
                refused[member] = exc

        async with trio.open_nursery() as nursery:
            for member in self.replicas.writers if members is None else members:
                nursery.start_soon(one, member)
        unanimous = bool(refused) and not results and all(e.remote for e in refused.values())
        blamed: LhtrioError | None = None
        for member, exc in refused.items():
            if unanimous or isinstance(exc, _CALLER_ERRORS):
                blamed = blamed or exc
                continue
            self._links.fail(member, f"{what} failed: {exc}")
        if blamed is not None:
            raise type(blamed)(f"volume {self.name}: {blamed.message}", remote=blamed.remote)
        if not any(m.mode is Mode.RW for m in self.replicas.members):
            raise StorageError(f"volume {self.name} is faulted; {what} reached no RW replica")
        return results

    async def info_of_one(self) -> ReplicaInfo:
        """``info`` of one RW replica (snapshots, chain)."""
        for member in self.replicas.read_order():
            client = self._links.control(member)
            if client is not None:
                try:
                    info = await client.info()
                except LhtrioError as exc:
                    self._links.fail(member, f"info failed: {exc}")
                    continue
                return info
        raise StorageError(f"volume {self.name} is faulted: no RW replica to ask")
