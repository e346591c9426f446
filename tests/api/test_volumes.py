"""Volumes, nodes and settings through the admin API over real HTTP: what each call stores and
answers (the store documents, collections as ``{"data": [...]}``)."""

from __future__ import annotations

import attrs
import httpx
import pytest

from lhtrio.errors import NotFoundError
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import Volume, VolumeAttachment
from lhtrio.models.cluster.attachment import TicketType
from tests.api.conftest import AUTH, Api

GiB = 1 << 30


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [d["metadata"]["name"] for d in response.json()["data"]]


async def test_serve_api_reports_the_port_it_bound(api: Api) -> None:
    host, _, port = api.url.removeprefix("http://").rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0


async def test_a_volume_is_created_listed_read_and_its_deletion_requested(api: Api) -> None:
    assert names(await api.client.get("/v1/volumes")) == []

    created = await api.post("/v1/volumes", {"name": "db-1", "size": "10Gi", "numberOfReplicas": 2})
    assert created.status_code == 201, created.text
    document = created.json()
    assert document["kind"] == "Volume"
    assert document["metadata"]["name"] == "db-1"
    assert document["metadata"]["finalizers"] == [FINALIZER]
    assert document["spec"]["size"] == str(10 * GiB)
    assert document["spec"]["numberOfReplicas"] == 2
    assert document["spec"]["nodeID"] == ""

    stored = await api.objects.get(Volume, "db-1")
    assert stored.spec.size == 10 * GiB
    assert stored.spec.number_of_replicas == 2
    assert stored.meta.finalizers == (FINALIZER,)

    assert names(await api.client.get("/v1/volumes")) == ["db-1"]
    got = await api.client.get("/v1/volumes/db-1")
    assert got.status_code == 200
    assert got.json() == document

    deleted = await api.client.delete("/v1/volumes/db-1", headers=AUTH)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["metadata"]["deletionTimestamp"]
    assert (await api.objects.get(Volume, "db-1")).meta.deleting
    # asking again is no error: the deletion is under way
    again = await api.client.delete("/v1/volumes/db-1", headers=AUTH)
    assert again.status_code == 202
    assert (
        again.json()["metadata"]["deletionTimestamp"]
        == deleted.json()["metadata"]["deletionTimestamp"]
    )


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1073741824", GiB),  # Longhorn's shape: bytes as a string
        (GiB, GiB),  # or a number
        ("10Gi", 10 * GiB),
        ("512Mi", 512 << 20),
        ("4096", 4096),
    ],
)
async def test_sizes_are_bytes_as_text_or_number_or_with_units(
    api: Api, size: object, expected: int
) -> None:
    response = await api.post("/v1/volumes", {"name": "v", "size": size, "numberOfReplicas": 1})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["size"] == str(expected)


async def test_the_replica_count_defaults_to_the_setting(api: Api) -> None:
    first = await api.post("/v1/volumes", {"name": "a", "size": "1Gi"})
    assert first.json()["spec"]["numberOfReplicas"] == 3  # Longhorn's default
    put = await api.client.put(
        "/v1/settings/default-replica-count", json={"value": "2"}, headers=AUTH
    )
    assert put.status_code == 200, put.text
    second = await api.post("/v1/volumes", {"name": "b", "size": "1Gi"})
    assert second.json()["spec"]["numberOfReplicas"] == 2


async def test_a_name_taken_is_a_conflict_and_the_first_volume_stays(api: Api) -> None:
    assert (await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})).status_code == 201
    before = await api.state()
    again = await api.post("/v1/volumes", {"name": "v", "size": "2Gi"})
    assert again.status_code == 409
    assert again.json()["code"] == "AlreadyExists"
    assert "'v'" in again.json()["message"]
    assert await api.state() == before


async def test_unknown_volumes_are_404(api: Api) -> None:
    for response in (
        await api.client.get("/v1/volumes/nope"),
        await api.client.delete("/v1/volumes/nope", headers=AUTH),
        await api.post("/v1/volumes/nope?action=attach", {"hostId": "n1"}),
        await api.post("/v1/volumes/nope?action=detach", {}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "NotFound"
        assert "nope" in response.json()["message"]


async def tickets(api: Api, volume: str) -> dict[str, str]:
    """The volume's attachment tickets: id -> node."""
    try:
        attachment = await api.objects.get(VolumeAttachment, volume)
    except NotFoundError:
        return {}
    return {t.id: t.node_id for t in attachment.spec.attachment_tickets.values()}


async def test_attach_and_detach_add_and_remove_a_ticket(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})

    attached = await api.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    assert attached.status_code == 200, attached.text
    assert attached.json()["metadata"]["name"] == "v"
    assert await tickets(api, "v") == {"lhtrio-api": "n1"}
    ticket = (await api.objects.get(VolumeAttachment, "v")).spec.attachment_tickets["lhtrio-api"]
    assert ticket.type is TicketType.LONGHORN_API
    # the attachment reconciler moves the volume, not the API
    assert (await api.objects.get(Volume, "v")).spec.node_id == ""
    # attaching again where it is attached changes nothing
    revision = api.store.inner.revision
    again = await api.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    assert again.status_code == 200
    assert api.store.inner.revision == revision

    detached = await api.post("/v1/volumes/v?action=detach")  # no body at all
    assert detached.status_code == 200, detached.text
    assert await tickets(api, "v") == {}

    await api.post("/v1/volumes/v?action=attach", {"hostId": "n2"})
    assert await tickets(api, "v") == {"lhtrio-api": "n2"}
    detached_there = await api.post("/v1/volumes/v?action=detach", {"hostId": "n2"})
    assert detached_there.status_code == 200
    assert await tickets(api, "v") == {}


async def test_attachment_ids_are_tickets_of_their_own(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    await api.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    other = await api.post("/v1/volumes/v?action=attach", {"hostId": "n2", "attachmentID": "job"})
    assert other.status_code == 200, other.text
    assert await tickets(api, "v") == {"lhtrio-api": "n1", "job": "n2"}
    # detaching one ticket leaves the other
    await api.post("/v1/volumes/v?action=detach", {"attachmentID": "job"})
    assert await tickets(api, "v") == {"lhtrio-api": "n1"}
    # a forced detach removes every ticket
    await api.post("/v1/volumes/v?action=attach", {"hostId": "n2", "attachmentID": "job"})
    forced = await api.post("/v1/volumes/v?action=detach", {"forceDetach": True})
    assert forced.status_code == 200, forced.text
    assert await tickets(api, "v") == {}


async def test_a_volume_without_tickets_is_detached_by_clearing_its_node(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    await api.objects.change(
        Volume, "v", lambda v: attrs.evolve(v, spec=attrs.evolve(v.spec, node_id="n1"))
    )
    wrong = await api.post("/v1/volumes/v?action=detach", {"hostId": "n2"})
    assert wrong.status_code == 409
    detached = await api.post("/v1/volumes/v?action=detach", {})
    assert detached.json()["spec"]["nodeID"] == ""


async def test_attaching_elsewhere_is_a_conflict(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    await api.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    before = await api.state()

    elsewhere = await api.post("/v1/volumes/v?action=attach", {"hostId": "n2"})
    assert elsewhere.status_code == 409
    body = elsewhere.json()
    assert body["code"] == "Conflict"
    assert "'n1'" in body["message"]
    assert "detach" in body["message"]
    # a detach from another node than the one attached is refused too
    wrong = await api.post("/v1/volumes/v?action=detach", {"hostId": "n2"})
    assert wrong.status_code == 409
    assert await api.state() == before
    assert await tickets(api, "v") == {"lhtrio-api": "n1"}


async def test_attaching_to_an_unknown_node_is_404(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    before = await api.state()
    response = await api.post("/v1/volumes/v?action=attach", {"hostId": "n9"})
    assert response.status_code == 404
    assert "n9" in response.json()["message"]
    assert await api.state() == before


async def test_a_volume_being_deleted_does_not_attach(api: Api) -> None:
    await api.post("/v1/volumes", {"name": "v", "size": "1Gi"})
    await api.client.delete("/v1/volumes/v", headers=AUTH)
    before = await api.state()
    response = await api.post("/v1/volumes/v?action=attach", {"hostId": "n1"})
    assert response.status_code == 409
    assert "deleted" in response.json()["message"]
    assert await api.state() == before


async def test_nodes_are_listed_and_read(api: Api) -> None:
    assert names(await api.client.get("/v1/nodes")) == ["n1", "n2"]
    node = await api.client.get("/v1/nodes/n2")
    assert node.status_code == 200
    assert node.json()["kind"] == "Node"
    assert node.json()["metadata"]["name"] == "n2"
    assert (await api.client.get("/v1/nodes/n9")).status_code == 404


async def test_settings_are_listed_with_defaults_read_and_set(api: Api) -> None:
    listed = await api.client.get("/v1/settings")
    by_name = {d["metadata"]["name"]: d["spec"]["value"] for d in listed.json()["data"]}
    assert by_name["default-replica-count"] == "3"
    assert by_name["auto-salvage"] == "true"
    assert by_name["replica-replenishment-wait-interval"] == "600"

    put = await api.client.put("/v1/settings/auto-salvage", json={"value": "false"}, headers=AUTH)
    assert put.status_code == 200, put.text
    assert put.json()["kind"] == "Setting"
    assert put.json()["spec"]["value"] == "false"
    assert put.json()["metadata"]["resourceVersion"] != ""

    got = await api.client.get("/v1/settings/auto-salvage")
    assert got.status_code == 200
    assert got.json()["spec"]["value"] == "false"
    listed_after = await api.client.get("/v1/settings")
    values = {d["metadata"]["name"]: d["spec"]["value"] for d in listed_after.json()["data"]}
    assert values == {**by_name, "auto-salvage": "false"}

    # a second write changes the stored object
    put2 = await api.client.put("/v1/settings/auto-salvage", json={"value": "true"}, headers=AUTH)
    assert put2.json()["spec"]["value"] == "true"
    assert (await api.client.get("/v1/settings/auto-salvage")).json()["spec"]["value"] == "true"


async def test_unknown_settings_are_404(api: Api) -> None:
    before = await api.state()
    got = await api.client.get("/v1/settings/no-such-setting")
    assert got.status_code == 404
    assert "default-replica-count" in got.json()["message"]  # names the known ones
    put = await api.client.put("/v1/settings/no-such-setting", json={"value": "1"}, headers=AUTH)
    assert put.status_code == 404
    assert await api.state() == before
