"""The VolumeAttachment kind: who wants a volume attached where, and which one wins.

One VolumeAttachment per volume, named as the volume (``longhorn-facts.md`` §6.3). Every party
that needs the volume attached holds a ticket in its spec: an operator through the API, a CSI
attacher, a snapshot or backup running on the attached engine, an expansion or a restore. The
attachment logic turns the tickets into the one node the volume should be on
(:func:`desired_attachment`, written to ``Volume.spec.node_id``) and reports, per ticket, whether
it is satisfied.

The rules, Longhorn's with its #10171 fix built in:

- A ticket's priority is its type's (:class:`TicketType`): restore/expansion 2000, API 1000,
  CSI/salvage 900, snapshot/backup/clone/eviction/rebuilding 800. A detached volume attaches for
  the highest-priority ticket (ties: the smallest ticket id), once fully detached.
- An attached volume stays while a ticket wants it on its node with its parameters; a ticket
  elsewhere, even of higher priority, waits (no preemption between workloads).
- Except: when every ticket on the current node is *interruptible* (a snapshot or a backup) and a
  *workload* ticket (API, CSI) wants another node, the volume detaches, and then attaches for the
  workload. A long backup never holds a volume on its old node (Longhorn #10171).
- A faulted volume is detached and not attached again until salvage clears the fault.
- Detaching for a ticket needs nothing but removing that ticket: the caller's detach is done once
  its ticket is gone (:func:`detach_done`), whatever other tickets keep the volume attached.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar, Final

import attrs

from lhtrio.models.cluster.meta import Condition, ObjectMeta
from lhtrio.models.cluster.volume import VolumeState

__all__ = [
    "CONDITION_SATISFIED",
    "AttachmentDecision",
    "AttachmentTicket",
    "AttachmentTicketStatus",
    "TicketParameters",
    "TicketType",
    "VolumeAttachment",
    "VolumeAttachmentSpec",
    "VolumeAttachmentStatus",
    "desired_attachment",
    "detach_done",
    "ticket_satisfied",
]

#: A ticket's condition: true once the volume is attached where and how the ticket asks.
CONDITION_SATISFIED: Final = "Satisfied"


class TicketType(enum.Enum):
    """Who holds a ticket (Longhorn's attacher types, their values)."""

    VOLUME_RESTORE = "volume-restore-controller"
    VOLUME_EXPANSION = "volume-expansion-controller"
    LONGHORN_API = "longhorn-api"
    CSI_ATTACHER = "csi-attacher"
    SALVAGE = "salvage-controller"
    SNAPSHOT = "snapshot-controller"
    BACKUP = "backup-controller"
    VOLUME_CLONE = "volume-clone-controller"
    VOLUME_EVICTION = "volume-eviction-controller"
    VOLUME_REBUILDING = "volume-rebuilding-controller"

    @property
    def priority(self) -> int:
        return _PRIORITY[self]

    @property
    def interruptible(self) -> bool:
        """A long operation that can be retried later: it yields to a workload elsewhere."""
        return self in (TicketType.SNAPSHOT, TicketType.BACKUP)

    @property
    def workload(self) -> bool:
        """Someone who will read and write the volume: interruptible tickets yield to it."""
        return self in (TicketType.LONGHORN_API, TicketType.CSI_ATTACHER)


_PRIORITY: Final = {
    TicketType.VOLUME_RESTORE: 2000,
    TicketType.VOLUME_EXPANSION: 2000,
    TicketType.LONGHORN_API: 1000,
    TicketType.CSI_ATTACHER: 900,
    TicketType.SALVAGE: 900,
    TicketType.SNAPSHOT: 800,
    TicketType.BACKUP: 800,
    TicketType.VOLUME_CLONE: 800,
    TicketType.VOLUME_EVICTION: 800,
    TicketType.VOLUME_REBUILDING: 800,
}


@attrs.frozen(kw_only=True)
class TicketParameters:
    """``disable_frontend``: attach without serving the volume (maintenance mode)."""

    disable_frontend: bool = False


@attrs.frozen(kw_only=True)
class AttachmentTicket:
    """A request to have the volume attached on ``node_id``. ``generation`` grows each time the
    holder changes the ticket, so a status can say which version it satisfied."""

    id: str
    type: TicketType
    node_id: str
    parameters: TicketParameters = attrs.field(factory=TicketParameters)
    generation: int = 0


@attrs.frozen(kw_only=True)
class AttachmentTicketStatus:
    id: str
    satisfied: bool = False
    generation: int = 0
    conditions: tuple[Condition, ...] = ()


@attrs.frozen(kw_only=True)
class VolumeAttachmentSpec:
    volume: str
    attachment_tickets: dict[str, AttachmentTicket] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class VolumeAttachmentStatus:
    attachment_ticket_statuses: dict[str, AttachmentTicketStatus] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class VolumeAttachment:
    KIND: ClassVar[str] = "VolumeAttachment"

    meta: ObjectMeta
    spec: VolumeAttachmentSpec
    status: VolumeAttachmentStatus = attrs.field(factory=VolumeAttachmentStatus)


@attrs.frozen(kw_only=True)
class AttachmentDecision:
    """Where the volume should be: ``node_id`` (empty: detached) and how; ``ticket``: the ticket
    that decided an attach (empty otherwise); ``reason`` says why, for logs and conditions."""

    node_id: str
    disable_frontend: bool = False
    ticket: str = ""
    reason: str = ""


def _priority_order(ticket: AttachmentTicket) -> tuple[int, str]:
    return (-ticket.type.priority, ticket.id)


def desired_attachment(
    tickets: Mapping[str, AttachmentTicket],
    *,
    node_id: str,
    disable_frontend: bool,
    state: VolumeState,
    faulted: bool,
) -> AttachmentDecision:
    """Where the volume should be attached, from its tickets and its current ``node_id`` and
    ``disable_frontend`` (the Volume's spec) and ``state``; the rules are the module's."""
    keep = AttachmentDecision(node_id=node_id, disable_frontend=disable_frontend, reason="")
    if node_id:
        if faulted:
            return AttachmentDecision(node_id="", reason=f"the volume is faulted on {node_id}")
        here = [t for t in tickets.values() if t.node_id == node_id]
        if not here:
            return AttachmentDecision(node_id="", reason=f"no ticket wants it on {node_id}")
        if all(t.type.interruptible for t in here):
            elsewhere = sorted(
                (t for t in tickets.values() if t.type.workload and t.node_id not in ("", node_id)),
                key=_priority_order,
            )
            if elsewhere:
                return AttachmentDecision(
                    node_id="",
                    reason=f"{', '.join(sorted(t.id for t in here))} on {node_id} yield to "
                    f"{elsewhere[0].id} on {elsewhere[0].node_id}",
                )
        if not any(t.parameters.disable_frontend == disable_frontend for t in here):
            return AttachmentDecision(
                node_id="",
                reason=f"no ticket on {node_id} wants the frontend "
                f"{'disabled' if disable_frontend else 'enabled'}",
            )
        return attrs.evolve(keep, reason="attached as asked")
    if state is not VolumeState.DETACHED:
        return attrs.evolve(keep, reason=f"waiting for the volume to detach (it is {state.value})")
    if faulted:
        return attrs.evolve(keep, reason="the volume is faulted")
    candidates = sorted((t for t in tickets.values() if t.node_id), key=_priority_order)
    if not candidates:
        return attrs.evolve(keep, reason="no ticket")
    chosen = candidates[0]
    return AttachmentDecision(
        node_id=chosen.node_id,
        disable_frontend=chosen.parameters.disable_frontend,
        ticket=chosen.id,
        reason=f"attach for {chosen.id} ({chosen.type.value}, priority {chosen.type.priority})",
    )


def ticket_satisfied(
    ticket: AttachmentTicket,
    *,
    node_id: str,
    current_node_id: str,
    state: VolumeState,
    frontend_disabled: bool,
) -> bool:
    """Whether the volume is attached where and how ``ticket`` asks: it is meant to be on the
    ticket's node (``node_id``), it is attached there (``current_node_id``, ``state``), and its
    frontend is as the ticket wants."""
    return (
        state is VolumeState.ATTACHED
        and node_id == ticket.node_id == current_node_id
        and frontend_disabled == ticket.parameters.disable_frontend
    )


def detach_done(attachment: VolumeAttachment, ticket_id: str) -> bool:
    """Whether a detach asked by removing ticket ``ticket_id`` is done: the ticket is gone. It
    waits for nothing else (Longhorn #10171: waiting for the volume to leave the node let a
    backup's ticket hold a workload's detach for hours)."""
    return ticket_id not in attachment.spec.attachment_tickets
