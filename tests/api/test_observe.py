"""Health probes and events over HTTP: ``/healthz`` answers while the process serves, ``/readyz``
says why the node is not ready (store failing, instances not supervised), both without a token;
``/v1/events`` and ``/v1/volumes/NAME/events`` list the events kept, newest last, filtered by
object; bad filters are 400 and change nothing."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

import httpx
import pytest
import trio

from lhtrio.api import serve_api
from lhtrio.manager import events
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster.event import EventType, ObjectReference, Occurrence
from lhtrio.models.stats import EngineSample
from tests.api.conftest import TOKEN, Api

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


async def test_healthz_answers_while_the_process_serves_even_with_the_store_down(
    api: Api,
) -> None:
    api.store.broken = True
    answer = await api.client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")


async def test_readyz_follows_the_store(api: Api) -> None:
    answer = await api.client.get("/readyz")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    api.store.broken = True
    answer = await api.client.get("/readyz")
    assert answer.status_code == 503
    assert answer.text.startswith("not ready: the store failed: ")
    assert "disk I/O error" in answer.text
    api.store.broken = False
    assert (await api.client.get("/readyz")).status_code == 200


class FakeNode:
    """What a node tells its API (:class:`lhtrio.api.observe.NodeFacts`)."""

    def __init__(self) -> None:
        self.name = "n1"
        self.why = "node n1 is starting: its instances are not supervised yet"

    def unready(self) -> str:
        return self.why

    def engines(self) -> Sequence[EngineSample]:
        return []


async def test_readyz_waits_for_the_node_to_supervise_its_instances() -> None:
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(
            serve_api, Objects(MemoryStore()), "127.0.0.1", 0, token=TOKEN, node=node
        )
        url = await nursery.start(serve)
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.text == f"not ready: {node.why}\n"
            node.why = ""
            assert (await client.get("/readyz")).status_code == 200
            node.why = "node n1 is shutting down"
            assert (await client.get("/readyz")).text == "not ready: node n1 is shutting down\n"
        nursery.cancel_scope.cancel()


async def tell(api: Api, kind: str, name: str, reason: str, at: int) -> None:
    await events.record(
        api.objects,
        ObjectReference(kind=kind, name=name),
        Occurrence(reason=reason, message=f"{kind} {name}: {reason}", type=EventType.NORMAL),
        node="n1",
        now=T0 + dt.timedelta(seconds=at),
    )


async def test_events_are_listed_newest_last_and_filtered_by_object(api: Api) -> None:
    created = await api.post("/v1/volumes", {"name": "v1", "size": "16Mi"})
    assert created.status_code == 201
    await tell(api, "Volume", "v1", "Attached", 2)
    await tell(api, "Volume", "v2", "Attached", 1)
    await tell(api, "Volume", "v1", "Degraded", 3)
    await tell(api, "Node", "v1", "Down", 0)

    listed = (await api.client.get("/v1/events")).json()["data"]
    assert [(e["involvedObject"]["name"], e["reason"]) for e in listed] == [
        ("v1", "Down"),
        ("v2", "Attached"),
        ("v1", "Attached"),
        ("v1", "Degraded"),
    ]
    first = listed[2]
    assert first["kind"] == "Event"
    assert first["involvedObject"] == {"kind": "Volume", "name": "v1", "uid": ""}
    assert (first["type"], first["count"], first["reportingNode"]) == ("Normal", 1, "n1")
    assert first["firstTimestamp"] == first["lastTimestamp"] == "2026-03-01T12:00:02Z"

    mine = (await api.client.get("/v1/events?kind=Volume&name=v1")).json()["data"]
    assert [e["reason"] for e in mine] == ["Attached", "Degraded"]
    by_path = (await api.client.get("/v1/volumes/v1/events")).json()["data"]
    assert by_path == mine
    nodes = (await api.client.get("/v1/events?kind=Node")).json()["data"]
    assert [e["reason"] for e in nodes] == ["Down"]
    # labelSelector, as on every collection (events carry no labels: only "without" matches)
    assert (await api.client.get("/v1/events?labelSelector=app")).json()["data"] == []
    assert len((await api.client.get("/v1/events?labelSelector=!app")).json()["data"]) == 4


async def test_a_volumes_events_need_the_volume(api: Api) -> None:
    answer = await api.client.get("/v1/volumes/nope/events")
    assert answer.status_code == 404
    assert answer.json()["code"] == "NotFound"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/events?kind=a/b", "kind"),
        ("/v1/events?kind=volume", "kind"),
        ("/v1/events?name=../x", "name"),
        ("/v1/events?name=", "name"),
        ("/v1/events?kind=V%C3%B6lume", "kind"),
        ("/v1/events?labelSelector=a%20in%20(b)", "labelSelector"),
        ("/v1/volumes/..%2Fx/events", "name"),
    ],
)
async def test_bad_event_filters_are_400_and_change_nothing(
    api: Api, path: str, field: str
) -> None:
    before = await api.state()
    answer = await api.client.get(path)
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"] == {"field": field}
    assert await api.state() == before
