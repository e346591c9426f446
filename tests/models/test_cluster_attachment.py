"""Attachment tickets: which ticket's node a volume is attached to, and when a detach is done."""

from __future__ import annotations

import pytest

from lhtrio.models.cluster.attachment import (
    AttachmentTicket,
    TicketParameters,
    TicketType,
    VolumeAttachment,
    VolumeAttachmentSpec,
    desired_attachment,
    detach_done,
    ticket_satisfied,
)
from lhtrio.models.cluster.meta import ObjectMeta
from lhtrio.models.cluster.volume import VolumeState

API, CSI, SNAP, BACKUP = (
    TicketType.LONGHORN_API,
    TicketType.CSI_ATTACHER,
    TicketType.SNAPSHOT,
    TicketType.BACKUP,
)
DETACHED, ATTACHED = VolumeState.DETACHED, VolumeState.ATTACHED


def test_priorities_are_longhorns() -> None:
    assert {t: t.priority for t in TicketType} == {
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
    assert {t for t in TicketType if t.interruptible} == {SNAP, BACKUP}
    assert {t for t in TicketType if t.workload} == {API, CSI}


def _t(id: str, type: TicketType, node: str, *, maintenance: bool = False) -> AttachmentTicket:
    return AttachmentTicket(
        id=id, type=type, node_id=node, parameters=TicketParameters(disable_frontend=maintenance)
    )


# (tickets, current node, current disable_frontend, state, faulted) -> (node, disable_frontend)
CASES = {
    "no ticket, detached: stays detached": ([], "", False, DETACHED, False, ""),
    "one ticket, detached: attaches there": (
        [_t("a", CSI, "n1")],
        "",
        False,
        DETACHED,
        False,
        "n1",
    ),
    "highest priority wins": (
        [_t("csi", CSI, "n1"), _t("api", API, "n2"), _t("snap", SNAP, "n3")],
        "",
        False,
        DETACHED,
        False,
        "n2",
    ),
    "equal priority: the smallest id wins": (
        [_t("b", CSI, "n2"), _t("a", CSI, "n1")],
        "",
        False,
        DETACHED,
        False,
        "n1",
    ),
    "restore outranks the API": (
        [_t("api", API, "n1"), _t("restore", TicketType.VOLUME_RESTORE, "n2")],
        "",
        False,
        DETACHED,
        False,
        "n2",
    ),
    "a ticket without a node is not chosen": (
        [_t("api", API, ""), _t("snap", SNAP, "n3")],
        "",
        False,
        DETACHED,
        False,
        "n3",
    ),
    "not yet fully detached: waits": (
        [_t("a", CSI, "n1")],
        "",
        False,
        VolumeState.DETACHING,
        False,
        "",
    ),
    "detached and faulted: not attached": ([_t("a", CSI, "n1")], "", False, DETACHED, True, ""),
    "attached, its ticket stays: stays": ([_t("a", CSI, "n1")], "n1", False, ATTACHED, False, "n1"),
    "attached, no ticket left: detaches": ([], "n1", False, ATTACHED, False, ""),
    "attached, tickets only elsewhere: detaches": (
        [_t("b", CSI, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "",
    ),
    "a higher priority elsewhere does not preempt a workload": (
        [_t("csi", CSI, "n1"), _t("api", API, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "n1",
    ),
    "a snapshot yields to a workload elsewhere (#10171)": (
        [_t("snap", SNAP, "n1"), _t("csi", CSI, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "",
    ),
    "a backup yields to the API elsewhere": (
        [_t("backup", BACKUP, "n1"), _t("snap", SNAP, "n1"), _t("api", API, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "",
    ),
    "a snapshot does not yield to another snapshot elsewhere": (
        [_t("snap", SNAP, "n1"), _t("snap2", SNAP, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "n1",
    ),
    "a snapshot does not yield to a non-workload elsewhere": (
        [_t("snap", SNAP, "n1"), _t("exp", TicketType.VOLUME_EXPANSION, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "n1",
    ),
    "a snapshot beside a workload on the node holds": (
        [_t("snap", SNAP, "n1"), _t("csi", CSI, "n1"), _t("csi2", CSI, "n2")],
        "n1",
        False,
        ATTACHED,
        False,
        "n1",
    ),
    "attached and faulted: detaches": ([_t("a", CSI, "n1")], "n1", False, ATTACHED, True, ""),
    "maintenance mode no ticket wants any more: detaches": (
        [_t("csi", CSI, "n1")],
        "n1",
        True,
        ATTACHED,
        False,
        "",
    ),
    "maintenance mode a ticket still wants: stays": (
        [_t("csi", CSI, "n1"), _t("exp", TicketType.VOLUME_EXPANSION, "n1", maintenance=True)],
        "n1",
        True,
        ATTACHED,
        False,
        "n1",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_desired_attachment(case: str) -> None:
    tickets, node, maintenance, state, faulted, expected = CASES[case]
    decision = desired_attachment(
        {t.id: t for t in tickets},
        node_id=node,
        disable_frontend=maintenance,
        state=state,
        faulted=faulted,
    )
    assert decision.node_id == expected, decision.reason
    assert decision.reason


def test_an_attach_takes_the_tickets_parameters() -> None:
    decision = desired_attachment(
        {"exp": _t("exp", TicketType.VOLUME_EXPANSION, "n2", maintenance=True)},
        node_id="",
        disable_frontend=False,
        state=DETACHED,
        faulted=False,
    )
    assert (decision.node_id, decision.disable_frontend, decision.ticket) == ("n2", True, "exp")


def test_a_workload_moves_off_a_snapshot_in_two_steps() -> None:
    """Longhorn #10171 at the ticket level: the workload's ticket moves from n1 to n2 while a
    snapshot holds n1; the volume detaches, then attaches for the workload on n2."""
    tickets = {t.id: t for t in (_t("snap", SNAP, "n1"), _t("csi-n2", CSI, "n2"))}
    first = desired_attachment(
        tickets, node_id="n1", disable_frontend=False, state=ATTACHED, faulted=False
    )
    assert first.node_id == ""
    assert "snap on n1 yield to csi-n2 on n2" in first.reason
    second = desired_attachment(
        tickets, node_id="", disable_frontend=False, state=DETACHED, faulted=False
    )
    assert (second.node_id, second.ticket) == ("n2", "csi-n2")


def test_a_detach_waits_only_for_its_own_ticket() -> None:
    meta = ObjectMeta(name="db-1")
    holding = VolumeAttachment(
        meta=meta,
        spec=VolumeAttachmentSpec(
            volume="db-1",
            attachment_tickets={"csi-1": _t("csi-1", CSI, "n1"), "snap": _t("snap", SNAP, "n1")},
        ),
    )
    assert not detach_done(holding, "csi-1")
    released = VolumeAttachment(
        meta=meta,
        spec=VolumeAttachmentSpec(
            volume="db-1", attachment_tickets={"snap": _t("snap", SNAP, "n1")}
        ),
    )
    # The snapshot keeps the volume attached on n1, and the CSI detach is done all the same.
    assert detach_done(released, "csi-1")
    kept = desired_attachment(
        released.spec.attachment_tickets,
        node_id="n1",
        disable_frontend=False,
        state=ATTACHED,
        faulted=False,
    )
    assert kept.node_id == "n1"


@pytest.mark.parametrize(
    ("node_id", "current", "state", "frontend_disabled", "expected"),
    [
        ("n1", "n1", ATTACHED, False, True),
        ("n1", "n1", VolumeState.ATTACHING, False, False),
        ("n1", "", ATTACHED, False, False),
        ("n2", "n1", ATTACHED, False, False),
        ("n1", "n1", ATTACHED, True, False),
    ],
)
def test_ticket_satisfied(
    node_id: str, current: str, state: VolumeState, frontend_disabled: bool, expected: bool
) -> None:
    ticket = _t("csi", CSI, "n1")
    assert (
        ticket_satisfied(
            ticket,
            node_id=node_id,
            current_node_id=current,
            state=state,
            frontend_disabled=frontend_disabled,
        )
        is expected
    )
