"""Waiting for the cluster in tests: until an object in the store satisfies a condition,
following the store's watch (no sleeps), with a deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from lhtrio.manager.objects import Objects
from lhtrio.manager.tickets import API_TICKET
from lhtrio.models.cluster import VolumeAttachment
from lhtrio.models.cluster.validate import ClusterObject

T = TypeVar("T", bound=ClusterObject)


async def until(
    objects: Objects, kind: type[T], name: str, done: Callable[[T], bool], *, deadline: float = 90
) -> T:
    """Object ``name`` of ``kind`` once ``done`` holds for it."""
    with trio.fail_after(deadline):
        while True:
            _, revision = await objects.list(kind)
            current = await objects.get(kind, name)
            if done(current):
                return current
            async with objects.store.watch(kind.KIND, revision) as events:
                async for _ in events:
                    break


def ticket_judged_satisfied(ticket_id: str = API_TICKET) -> Callable[[VolumeAttachment], bool]:
    """Whether the attachment reconciler judged ticket ``ticket_id`` satisfied at its current
    generation (so no decision taken before it was seen can still move the volume away)."""

    def done(attachment: VolumeAttachment) -> bool:
        ticket = attachment.spec.attachment_tickets.get(ticket_id)
        judged = attachment.status.attachment_ticket_statuses.get(ticket_id)
        return (
            ticket is not None
            and judged is not None
            and judged.generation == ticket.generation
            and judged.satisfied
        )

    return done
