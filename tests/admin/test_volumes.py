"""``lhtrio volume`` against the real admin API: what each verb sends (the store after it), what
it prints (a table, or the API's documents with ``-o json``), and how attach, detach and rm wait.

The volume's status is what a node's reconciler would write; here the test writes it into the
store when the CLI has asked for the change (following the store's watch), so the waiting verbs
see the volume move exactly as they would in a cluster.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio

from lhtrio.errors import NotFoundError
from lhtrio.manager import tickets
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume, VolumeAttachment
from lhtrio.models.cluster.attachment import AttachmentTicketStatus
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus
from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.meta import Condition
from lhtrio.models.cluster.replica import ReplicaSpec, ReplicaStatus
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState
from lhtrio.models.times import parse_time
from lhtrio.models.volume import Mode
from tests.admin.conftest import Lhtrio
from tests.manager.waiting import until

API_TICKET = "lhtrio-api"  # the ticket of an attach through the API

GiB = 1 << 30
URI = "nbd://127.0.0.11:10809/db-1"


async def make_volume(lhtrio: Lhtrio, name: str = "db-1", **status: Any) -> Volume:
    created = await lhtrio.api.objects.create(
        Volume(
            meta=ObjectMeta(name=name, finalizers=("lhtrio.io/volume",)), spec=VolumeSpec(size=GiB)
        )
    )
    if not status:
        return created
    return await set_status(lhtrio, name, **status)


async def set_status(lhtrio: Lhtrio, name: str, **status: Any) -> Volume:
    """Write the volume's status as its reconciler would."""
    return await lhtrio.api.objects.change(
        Volume, name, lambda v: attrs.evolve(v, status=attrs.evolve(v.status, **status))
    )


async def judge_ticket(lhtrio: Lhtrio, *, satisfied: bool = True, behind: int = 0) -> None:
    """Write the API ticket's status as the attachment reconciler would, for the ticket's
    generation (``behind``: for that many generations before it: a judgement of an older one)."""

    def judged(attachment: VolumeAttachment) -> VolumeAttachment:
        ticket = attachment.spec.attachment_tickets[API_TICKET]
        status = AttachmentTicketStatus(
            id=API_TICKET, generation=ticket.generation - behind, satisfied=satisfied
        )
        return attrs.evolve(
            attachment,
            status=attrs.evolve(attachment.status, attachment_ticket_statuses={API_TICKET: status}),
        )

    await lhtrio.api.objects.change(VolumeAttachment, "db-1", judged)


async def make_engine(lhtrio: Lhtrio, modes: dict[str, Mode] | None = None) -> None:
    """Engine ``db-1-e-0`` running on n1, serving :data:`URI`, with these replica modes."""
    await lhtrio.api.objects.create(
        Engine(
            meta=ObjectMeta(name="db-1-e-0", labels={"volume": "db-1"}),
            spec=EngineSpec(volume_name="db-1", volume_size=GiB, node_id="n1"),
            status=EngineStatus(
                current_state=InstanceState.RUNNING,
                endpoint=URI,
                replica_mode_map=modes or {},
            ),
        )
    )


async def make_replica(lhtrio: Lhtrio, name: str, node: str, *, failed: bool = False) -> None:
    await lhtrio.api.objects.create(
        Replica(
            meta=ObjectMeta(name=name, labels={"volume": "db-1"}),
            spec=ReplicaSpec(
                volume_name="db-1",
                volume_size=GiB,
                node_id=node,
                failed_at=parse_time("2026-01-02T03:04:05Z") if failed else None,
            ),
            status=ReplicaStatus(
                current_state=InstanceState.STOPPED if failed else InstanceState.RUNNING
            ),
        )
    )


async def ticket_wants(lhtrio: Lhtrio, node: str | None, volume: str = "db-1") -> None:
    """Until the API's attachment ticket of ``volume`` wants ``node`` (None: until it is gone),
    following the store's watch."""
    store = lhtrio.api.store.inner
    while True:
        listing = await store.list(VolumeAttachment.KIND)
        try:
            attachment = await lhtrio.api.objects.get(VolumeAttachment, volume)
            ticket = attachment.spec.attachment_tickets.get(API_TICKET)
        except NotFoundError:
            ticket = None
        if (ticket.node_id if ticket is not None else None) == node:
            return
        async with store.watch(VolumeAttachment.KIND, listing.revision) as events:
            async for _ in events:
                break


# --- create, ls ------------------------------------------------------------------------------


async def test_create_stores_the_volume_with_its_size_in_bytes_and_replicas(lhtrio: Lhtrio) -> None:
    result = await lhtrio("volume", "create", "db-1", "--size", "10Gi", "--replicas", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "volume db-1 created: 10Gi, 2 replicas\n"
    stored = await lhtrio.api.objects.get(Volume, "db-1")
    assert (stored.spec.size, stored.spec.number_of_replicas) == (10 * GiB, 2)


async def test_create_without_replicas_takes_the_default_replica_count_setting(
    lhtrio: Lhtrio,
) -> None:
    assert (await lhtrio("setting", "set", "default-replica-count", "2")).exit_code == 0
    result = await lhtrio("volume", "create", "db-1", "--size", "1073741824", "-o", "json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == await lhtrio.document("Volume", "db-1")
    assert printed["spec"]["size"] == str(GiB)
    assert printed["spec"]["numberOfReplicas"] == 2


async def test_ls_shows_name_size_replicas_state_robustness_and_node(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio, "db-1", state=VolumeState.ATTACHED, current_node_id="n1",
                      robustness=Robustness.DEGRADED)  # fmt: skip
    await make_volume(lhtrio, "db-2")
    result = await lhtrio("volume", "ls")
    assert result.exit_code == 0, result.output
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["NAME", "SIZE", "REPLICAS", "STATE", "ROBUSTNESS", "NODE"],
        ["db-1", "1Gi", "3", "attached", "degraded", "n1"],
        ["db-2", "1Gi", "3", "creating", "unknown"],
    ]
    listed = await lhtrio("volume", "ls", "-o", "json")
    documents = json.loads(listed.stdout)["data"]
    assert documents == [await lhtrio.document("Volume", n) for n in ("db-1", "db-2")]


# --- get -------------------------------------------------------------------------------------


async def test_get_composes_the_volume_its_replicas_with_node_and_mode_and_the_endpoint(
    lhtrio: Lhtrio,
) -> None:
    await make_volume(lhtrio, state=VolumeState.ATTACHED, current_node_id="n1",
                      robustness=Robustness.DEGRADED)  # fmt: skip
    await make_replica(lhtrio, "db-1-r-1", "n1")
    await make_replica(lhtrio, "db-1-r-2", "n2")
    await make_replica(lhtrio, "db-1-r-3", "n2", failed=True)
    await make_engine(lhtrio, {"db-1-r-1": Mode.RW, "db-1-r-2": Mode.WO})
    # another volume's replica is not one of these
    await make_volume(lhtrio, "db-10")
    await lhtrio.api.objects.create(
        Replica(
            meta=ObjectMeta(name="db-10-r-1", labels={"volume": "db-10"}),
            spec=ReplicaSpec(volume_name="db-10", volume_size=GiB, node_id="n1"),
        )
    )

    result = await lhtrio("volume", "get", "db-1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "volume": await lhtrio.document("Volume", "db-1"),
        "engine": "db-1-e-0",
        "endpoint": URI,
        "replicas": [
            {"name": "db-1-r-1", "node": "n1", "mode": "RW", "state": "running", "failed": False,
             "rebuild": {}},
            {"name": "db-1-r-2", "node": "n2", "mode": "WO", "state": "running", "failed": False,
             "rebuild": {}},
            {"name": "db-1-r-3", "node": "n2", "mode": "", "state": "stopped", "failed": True,
             "rebuild": {}},
        ],
    }  # fmt: skip

    table = await lhtrio("volume", "get", "db-1")
    assert table.exit_code == 0, table.output
    lines = [line.split() for line in table.stdout.splitlines()]
    for row in (["state", "attached"], ["robustness", "degraded"], ["node", "n1"],
                ["endpoint", URI], ["db-1-r-2", "n2", "WO", "running", "no"],
                ["db-1-r-3", "n2", "stopped", "yes"]):  # fmt: skip
        assert row in lines, table.stdout


async def test_get_of_a_volume_without_engine_or_replicas(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio)
    result = await lhtrio("volume", "get", "db-1", "-o", "json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (printed["engine"], printed["endpoint"], printed["replicas"]) == ("", "", [])


# --- attach ----------------------------------------------------------------------------------


async def test_attach_waits_until_attached_there_and_prints_the_nbd_uri(
    lhtrio: Lhtrio, nursery: trio.Nursery
) -> None:
    await make_volume(lhtrio, state=VolumeState.DETACHED)
    attach = lhtrio.soon(nursery, "volume", "attach", "db-1", "--node", "n1", "--timeout", "30")
    await ticket_wants(lhtrio, "n1")  # what the attachment and volume reconcilers act on
    await set_status(lhtrio, "db-1", state=VolumeState.ATTACHING, current_node_id="n1")
    await make_engine(lhtrio)
    await set_status(lhtrio, "db-1", state=VolumeState.ATTACHED, robustness=Robustness.HEALTHY)
    await judge_ticket(lhtrio)

    result = await attach()
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{URI}\n"  # only the URI: URI=$(lhtrio volume attach ...)
    # each state it was seen in, once, in order (how many it saw depends on when it looked)
    states = ["detached", "attaching on node n1", "attached on node n1, healthy"]
    progress = [line.removeprefix("volume db-1: ") for line in result.stderr.splitlines()]
    assert progress == [s for s in states if s in progress]
    assert progress[-1] == states[-1]


async def test_attach_with_json_prints_the_volume_as_get_does(
    lhtrio: Lhtrio, nursery: trio.Nursery
) -> None:
    await make_volume(lhtrio, state=VolumeState.DETACHED)
    attach = lhtrio.soon(
        nursery, "volume", "attach", "db-1", "--node", "n1", "--timeout", "30", "-o", "json"
    )
    await ticket_wants(lhtrio, "n1")
    await make_engine(lhtrio)
    await set_status(lhtrio, "db-1", state=VolumeState.ATTACHED, current_node_id="n1")
    await judge_ticket(lhtrio)
    result = await attach()
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["endpoint"] == URI
    assert printed["volume"] == await lhtrio.document("Volume", "db-1")


async def test_attach_waits_for_its_own_ticket_not_a_volume_left_there_by_another(
    lhtrio: Lhtrio, nursery: trio.Nursery
) -> None:
    """A volume still attached on n1 for a ticket just removed may be detached by a decision
    taken before this ticket was seen: only the reconciler's judgement of this ticket's
    generation ends the wait."""
    await make_volume(lhtrio, state=VolumeState.ATTACHED)
    await set_status(lhtrio, "db-1", current_node_id="n1", robustness=Robustness.HEALTHY)
    await make_engine(lhtrio)
    await tickets.add_ticket(lhtrio.api.objects, "db-1", "n1")
    await tickets.remove_ticket(lhtrio.api.objects, "db-1")
    attach = lhtrio.soon(nursery, "volume", "attach", "db-1", "--node", "n1", "--timeout", "0.5")
    await ticket_wants(lhtrio, "n1")
    await judge_ticket(lhtrio, behind=1)  # the removed ticket's judgement: not this one's
    result = await attach()
    assert result.exit_code == 1, result.output
    assert "is not attached on node n1 after 0.5 s" in result.stderr

    attach = lhtrio.soon(nursery, "volume", "attach", "db-1", "--node", "n1", "--timeout", "30")
    await judge_ticket(lhtrio)
    result = await attach()
    assert (result.exit_code, result.stdout) == (0, f"{URI}\n"), result.output


async def test_attach_that_never_completes_names_the_state_and_the_conditions(
    lhtrio: Lhtrio,
) -> None:
    unschedulable = Condition(
        type="Scheduled",
        status=False,
        reason="ReplicaSchedulingFailure",
        message="no node has a disk that fits 1Gi",
        last_transition=parse_time("2026-01-02T03:04:05Z"),
    )
    await make_volume(lhtrio, conditions=(unschedulable,))
    result = await lhtrio("volume", "attach", "db-1", "--node", "n1", "--timeout", "0.2")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "error: volume db-1 is not attached on node n1 after 0.2 s: it is creating; "
        "conditions: Scheduled=False (ReplicaSchedulingFailure: no node has a disk that fits 1Gi)"
    )
    await ticket_wants(lhtrio, "n1")  # it was asked for


async def test_attach_to_an_unknown_node_is_not_found_and_elsewhere_a_conflict(
    lhtrio: Lhtrio,
) -> None:
    await make_volume(lhtrio)
    unknown = await lhtrio("volume", "attach", "db-1", "--node", "n9")
    assert unknown.exit_code == 3
    assert unknown.stderr.startswith("error: ")
    assert "n9" in unknown.stderr
    await tickets.add_ticket(lhtrio.api.objects, "db-1", "n2")
    elsewhere = await lhtrio("volume", "attach", "db-1", "--node", "n1")
    assert elsewhere.exit_code == 4
    assert "detach it" in elsewhere.stderr


# --- detach, rm ------------------------------------------------------------------------------


async def test_detach_clears_the_node_and_with_wait_waits_until_detached(
    lhtrio: Lhtrio, nursery: trio.Nursery
) -> None:
    await make_volume(lhtrio, state=VolumeState.ATTACHED, current_node_id="n1")
    await tickets.add_ticket(lhtrio.api.objects, "db-1", "n1")
    wrong = await lhtrio("volume", "detach", "db-1", "--node", "n2")
    assert wrong.exit_code == 4
    await ticket_wants(lhtrio, "n1")  # still

    detach = lhtrio.soon(nursery, "volume", "detach", "db-1", "--node", "n1", "--wait")
    await ticket_wants(lhtrio, None)
    await set_status(lhtrio, "db-1", state=VolumeState.DETACHED, current_node_id="")
    result = await detach()
    assert result.exit_code == 0, result.output
    assert result.stdout == "volume db-1 detached\n"
    assert result.stderr.splitlines()[-1] == "volume db-1: detached"


async def test_detach_without_wait_returns_at_once(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio, state=VolumeState.ATTACHED, current_node_id="n1")
    await tickets.add_ticket(lhtrio.api.objects, "db-1", "n1")
    result = await lhtrio("volume", "detach", "db-1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("{")  # only the document on stdout
    assert json.loads(result.stdout) == await lhtrio.document("Volume", "db-1")
    await ticket_wants(lhtrio, None)


async def test_rm_requests_the_deletion_and_with_wait_waits_until_gone(
    lhtrio: Lhtrio, nursery: trio.Nursery
) -> None:
    await make_volume(lhtrio, "db-1")
    await make_volume(lhtrio, "db-2")
    result = await lhtrio("volume", "rm", "db-1")
    assert result.exit_code == 0, result.output
    assert "deletion requested" in result.stdout
    assert (await lhtrio.api.objects.get(Volume, "db-1")).meta.deleting

    rm = lhtrio.soon(nursery, "volume", "rm", "db-2", "--wait")
    await until(lhtrio.api.objects, Volume, "db-2", lambda v: v.meta.deleting)
    # the reconciler has removed the engine and the replicas: it releases the finalizer
    await lhtrio.api.objects.change(
        Volume, "db-2", lambda v: attrs.evolve(v, meta=attrs.evolve(v.meta, finalizers=()))
    )
    waited = await rm()
    assert waited.exit_code == 0, waited.output
    assert waited.stdout == "volume db-2 deleted\n"
    assert waited.stderr.splitlines()[-1] == "volume db-2: deleted"
    gone = await lhtrio("volume", "get", "db-2")
    assert gone.exit_code == 3
    assert gone.stderr.startswith("error: ")
    assert "db-2" in gone.stderr
