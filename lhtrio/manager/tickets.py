"""Attachment tickets written for a caller: attach a volume somewhere, detach it, hold it.

The attachment reconciler (:mod:`lhtrio.manager.attachment_control`) is the only writer of a
volume's ``spec.nodeID`` once the volume has a ``VolumeAttachment``: everyone else asks through a
ticket. These functions write the tickets (read-modify-write, retried on conflicts) and read
whether they are satisfied; the API's attach and detach, and every operation that needs the
volume's engine (:mod:`lhtrio.manager.operations`), go through them.

- :func:`add_ticket` adds or keeps a ticket; a ticket of the same id that wants another node is a
  conflict (the caller must detach first: a workload is never moved under itself).
- :func:`remove_ticket` removes one ticket (or, forced, all of them). It waits for nothing: a
  detach is done when its ticket is gone (Longhorn #10171).
- :func:`wait_satisfied` polls until a ticket's attachment is done (the caller bounds it).
"""

from __future__ import annotations

from typing import Final

import attrs
import trio

from lhtrio.errors import ConflictError, NotFoundError
from lhtrio.manager.objects import Objects
from lhtrio.models.cluster import Engine, Node, ObjectMeta, Volume, VolumeAttachment
from lhtrio.models.cluster.attachment import (
    AttachmentTicket,
    TicketParameters,
    TicketType,
    VolumeAttachmentSpec,
    ticket_satisfied,
)
from lhtrio.models.cluster.engine import engine_name
from lhtrio.models.cluster.volume import VolumeState

__all__ = [
    "API_TICKET",
    "POLL",
    "add_ticket",
    "attached_endpoint",
    "not_attached",
    "remove_ticket",
    "wait_satisfied",
]

#: The ticket id of an attach through the API when the caller names none.
API_TICKET: Final = "lhtrio-api"
#: How often :func:`wait_satisfied` looks again (seconds).
POLL: Final = 0.1


def _attachment_of(volume: str) -> VolumeAttachment:
    return VolumeAttachment(meta=ObjectMeta(name=volume), spec=VolumeAttachmentSpec(volume=volume))


async def add_ticket(
    objects: Objects,
    volume_name: str,
    node: str,
    *,
    ticket_id: str = API_TICKET,
    type: TicketType = TicketType.LONGHORN_API,
    disable_frontend: bool = False,
) -> VolumeAttachment:
    """Have ``ticket_id`` want volume ``volume_name`` on ``node``; the attachment as stored.

    NotFoundError for an unknown volume or node; ConflictError if the volume is being deleted
    or the ticket already wants another node."""
    volume = await objects.get(Volume, volume_name)
    if volume.meta.deleting:
        raise ConflictError(f"volume {volume_name!r} is being deleted: it cannot attach")
    await objects.get(Node, node)
    wanted = AttachmentTicket(
        id=ticket_id,
        type=type,
        node_id=node,
        parameters=TicketParameters(disable_frontend=disable_frontend),
    )

    def add(attachment: VolumeAttachment) -> VolumeAttachment:
        tickets = dict(attachment.spec.attachment_tickets)
        held = tickets.get(ticket_id)
        if held is not None and held.node_id != node:
            raise ConflictError(
                f"volume {volume_name!r} is attached to node {held.node_id!r} for "
                f"{ticket_id!r}: detach it before attaching it to {node!r}"
            )
        if held is not None and attrs.evolve(held, generation=0) == wanted:
            return attachment
        # past any status left of an earlier ticket of that id: a status names the generation
        # it judged, and an old one must never pass for the new ticket's (wait_satisfied)
        left = attachment.status.attachment_ticket_statuses.get(ticket_id)
        generation = max(held.generation if held else 0, left.generation if left else 0) + 1
        tickets[ticket_id] = attrs.evolve(wanted, generation=generation)
        return attrs.evolve(
            attachment, spec=attrs.evolve(attachment.spec, attachment_tickets=tickets)
        )

    return await objects.upsert(VolumeAttachment, volume_name, add, _attachment_of(volume_name))


async def remove_ticket(
    objects: Objects,
    volume_name: str,
    *,
    ticket_id: str = API_TICKET,
    node: str | None = None,
    every: bool = False,
) -> None:
    """Remove ``ticket_id`` (``every``: all tickets) from the volume's attachment.

    ``node``: a ConflictError if the ticket wants another node. A volume attached without
    tickets (its ``spec.nodeID`` written directly) is detached by clearing it."""
    volume = await objects.get(Volume, volume_name)

    def remove(attachment: VolumeAttachment) -> VolumeAttachment:
        tickets = dict(attachment.spec.attachment_tickets)
        held = tickets.get(ticket_id)
        if node is not None and held is not None and held.node_id != node:
            raise ConflictError(
                f"volume {volume_name!r} is attached to node {held.node_id!r} for "
                f"{ticket_id!r}, not {node!r}"
            )
        if every:
            tickets.clear()
        else:
            tickets.pop(ticket_id, None)
        return attrs.evolve(
            attachment, spec=attrs.evolve(attachment.spec, attachment_tickets=tickets)
        )

    try:
        await objects.change(VolumeAttachment, volume_name, remove)
    except NotFoundError:
        if node is not None and volume.spec.node_id not in ("", node):
            raise ConflictError(
                f"volume {volume_name!r} is attached to node {volume.spec.node_id!r}, not {node!r}"
            ) from None

        def detach(v: Volume) -> Volume:
            return attrs.evolve(v, spec=attrs.evolve(v.spec, node_id=""))

        await objects.change(Volume, volume_name, detach)


async def attached_endpoint(objects: Objects, volume: Volume) -> tuple[str, str] | None:
    """``(control address, frontend endpoint)`` of the volume's engine if the volume is attached
    and its engine runs there; None otherwise."""
    status = volume.status
    if status.state is not VolumeState.ATTACHED or not status.current_node_id:
        return None
    try:
        engine = await objects.get(Engine, engine_name(volume.meta.name))
    except NotFoundError:
        return None
    es = engine.status
    if engine.spec.node_id != status.current_node_id or not es.started or not es.ip:
        return None
    return f"tcp://{es.ip}:{es.port}", es.endpoint


async def wait_satisfied(objects: Objects, volume_name: str, ticket_id: str) -> Volume:
    """Wait until ticket ``ticket_id`` is satisfied (the volume attached where it asks, its
    engine answering); the volume then. ConflictError when the ticket is gone. The caller
    bounds the wait (``trio.move_on_after``; :func:`not_attached` says why it timed out).

    The attachment reconciler must have judged this very ticket satisfied (its status, at the
    ticket's generation), not only the volume be where the ticket asks: a volume still attached
    there for a ticket just removed is detached by a decision taken before this ticket was
    seen, and is attached again only after."""
    while True:
        attachment = await objects.get(VolumeAttachment, volume_name)
        volume = await objects.get(Volume, volume_name)
        ticket = attachment.spec.attachment_tickets.get(ticket_id)
        if ticket is None:
            raise ConflictError(f"the ticket {ticket_id!r} of volume {volume_name!r} is gone")
        judged = attachment.status.attachment_ticket_statuses.get(ticket_id)
        status = volume.status
        if (
            (judged is not None and judged.generation == ticket.generation and judged.satisfied)
            and ticket_satisfied(
                ticket,
                node_id=volume.spec.node_id,
                current_node_id=status.current_node_id,
                state=status.state,
                frontend_disabled=status.frontend_disabled,
            )
            and await attached_endpoint(objects, volume)
        ):
            return volume
        await trio.sleep(POLL)


async def not_attached(objects: Objects, volume_name: str, node: str, waited: float) -> str:
    """Why volume ``volume_name`` is not attached on ``node`` after ``waited`` seconds: the
    state it is in and its conditions."""
    status = (await objects.get(Volume, volume_name)).status
    conditions = "; ".join(
        f"{c.type}={c.status}: {c.message}" for c in status.conditions if c.message
    )
    return (
        f"volume {volume_name!r} is not attached on {node!r} after {waited:g} s (it is "
        f"{status.state.value}"
        + (f" on {status.current_node_id!r}" if status.current_node_id else "")
        + (f"; {conditions}" if conditions else "")
        + ")"
    )
