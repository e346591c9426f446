"""The attachment reconciler: a volume's tickets decide where it is attached.

A ``VolumeAttachment`` (named as its volume) holds tickets: who wants the volume attached where
(a workload through the API or CSI, a snapshot, later a backup), with Longhorn's priorities.
:func:`lhtrio.models.cluster.attachment.desired_attachment` decides, purely, the node the volume
should be on; this reconciler writes that decision into the volume's ``spec.nodeID`` (and
``disableFrontend``), which the volume reconciler then carries out, and writes back whether each
ticket is satisfied. An interruptible ticket (snapshot, backup) yields to a workload ticket on
another node, and a detach waits only for its own ticket: a long operation can never hold a volume
on its old node (Longhorn #10171).

It runs on the node responsible for the volume and is nudged whenever the volume changes (its
state moving on is what lets the next ticket be served).
"""

from __future__ import annotations

import logging

import attrs
import trio

from lhtrio.errors import NotFoundError
from lhtrio.manager.lease import Availability, nodes_up
from lhtrio.manager.objects import Objects
from lhtrio.manager.ownership import responsible
from lhtrio.manager.runner import follow
from lhtrio.manager.scope import Scope
from lhtrio.manager.store.api import Document, Store
from lhtrio.manager.store.rules import metadata
from lhtrio.models.cluster import Volume, VolumeAttachment
from lhtrio.models.cluster.attachment import (
    AttachmentTicketStatus,
    desired_attachment,
    ticket_satisfied,
)
from lhtrio.models.cluster.volume import Robustness

__all__ = ["AttachmentControl", "follow_volumes"]

logger = logging.getLogger(__name__)


@attrs.frozen
class AttachmentControl:
    """``availability``: the nodes up as the manager keeps them read (None: read the leases)."""

    objects: Objects
    node: str
    availability: Availability | None = None

    async def reconcile_attachment(self, name: str) -> float | None:
        objects = self.objects
        try:
            attachment = await objects.get(VolumeAttachment, name)
            volume = await objects.get(Volume, attachment.spec.volume)
        except NotFoundError:
            return None  # no tickets, or no volume (yet): nothing to decide
        up = await nodes_up(objects.store, self.availability)
        if not responsible(
            self.node, owner=volume.status.owner_id, preferred=volume.spec.node_id, up=up
        ):
            return None
        decision = desired_attachment(
            attachment.spec.attachment_tickets,
            node_id=volume.spec.node_id,
            disable_frontend=volume.spec.disable_frontend,
            state=volume.status.state,
            faulted=volume.status.robustness is Robustness.FAULTED,
        )
        if (decision.node_id, decision.disable_frontend) != (
            volume.spec.node_id,
            volume.spec.disable_frontend,
        ):
            logger.info("volume %s: %s", volume.meta.name, decision.reason)

            def move(v: Volume) -> Volume:
                spec = attrs.evolve(
                    v.spec, node_id=decision.node_id, disable_frontend=decision.disable_frontend
                )
                return attrs.evolve(v, spec=spec)

            volume = await objects.change(Volume, volume.meta.name, move)
        spec_node = volume.spec.node_id
        statuses = {
            ticket.id: AttachmentTicketStatus(
                id=ticket.id,
                generation=ticket.generation,
                satisfied=ticket_satisfied(
                    ticket,
                    node_id=spec_node,
                    current_node_id=volume.status.current_node_id,
                    state=volume.status.state,
                    frontend_disabled=volume.status.frontend_disabled,
                ),
            )
            for ticket in attachment.spec.attachment_tickets.values()
        }

        def record(a: VolumeAttachment) -> VolumeAttachment:
            status = attrs.evolve(a.status, attachment_ticket_statuses=statuses)
            return attrs.evolve(a, status=status)

        await objects.change(VolumeAttachment, name, record)
        return None


async def follow_volumes(
    store: Store, nudge: trio.MemorySendChannel[str], scope: Scope | None = None
) -> None:
    """Nudge the attachment of every volume that changes (named as the volume); ``scope``, the
    volumes' scope the tickets' runner borrows, sees each change first, so the nudge is judged
    by the volume as changed, whichever of the two watches of volumes is ahead."""

    def name(document: Document) -> str:
        named = str(metadata(document)["name"])
        if scope is not None:
            scope.see(named, document)
        return named

    await follow(store, Volume.KIND, name, nudge)
