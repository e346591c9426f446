"""Watch streams read with the real ``curl -N``: the objects first, then every change with its
revision as the event's id; the list's filters kept (objects entering and leaving the view);
resumed from a revision (``Last-Event-ID`` or ``resourceVersion``) with nothing missed and
nothing twice; 410 then the end for a revision the store no longer keeps;
keep-alive comments while idle; the end of the stream when the client goes away and when the API
stops; bad input refused with 400, changing nothing."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import trio

from lhtrio.api import serve_api, sse
from lhtrio.manager import events
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import ObjectMeta, Replica
from lhtrio.models.cluster.event import ObjectReference, Occurrence
from lhtrio.models.cluster.replica import ReplicaSpec
from tests.api.conftest import AUTH, TOKEN, Api
from tests.api.sse_client import Message, curl

pytestmark = pytest.mark.real  # drives curl


async def create(api: Api, name: str) -> int:
    """Create volume ``name``; its revision."""
    answer = await api.post("/v1/volumes", {"name": name, "size": "16Mi"})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["metadata"]["resourceVersion"])


def volume_of(message: Message) -> str:
    name = message.data["object"]["metadata"]["name"]
    assert isinstance(name, str)
    return name


async def test_a_collection_watch_lists_then_follows_every_change(api: Api) -> None:
    first = await create(api, "v1")
    async with curl(f"{api.url}/v1/volumes?watch=true") as stream:
        added = await stream.next()
        assert (added.event, added.id, volume_of(added)) == ("ADDED", None, "v1")
        assert added.data["type"] == "ADDED"
        assert added.data["object"]["kind"] == "Volume"
        mark = await stream.next()
        assert mark.event == "BOOKMARK"
        assert mark.id == str(first)  # the revision the list was read at
        assert mark.data["object"]["metadata"]["resourceVersion"] == str(first)

        second = await create(api, "v2")
        made = await stream.next()
        assert (made.event, made.id, volume_of(made)) == ("ADDED", str(second), "v2")
        assert made.data == {"type": "ADDED", "object": made.data["object"]}
        gone = await api.client.delete("/v1/volumes/v2", headers=AUTH)
        assert gone.status_code == 202
        asked = await stream.next()  # it has a finalizer: its deletion is requested
        assert (asked.event, volume_of(asked)) == ("MODIFIED", "v2")
        assert "deletionTimestamp" in asked.data["object"]["metadata"]
        assert int(asked.id or 0) > second


async def test_watch_by_kind_is_the_same_stream(api: Api) -> None:
    await create(api, "v1")
    async with curl(f"{api.url}/v1/watch?kind=Volume") as stream:
        assert volume_of(await stream.next()) == "v1"
        assert (await stream.next()).event == "BOOKMARK"
        revision = await create(api, "v2")
        made = await stream.next()
        assert (made.event, made.id) == ("ADDED", str(revision))


async def test_a_watch_resumes_after_the_last_event_it_saw(api: Api) -> None:
    await create(api, "v1")
    async with curl(f"{api.url}/v1/volumes?watch=true") as stream:
        await stream.next()
        await stream.next()
        await create(api, "v2")
        seen = (await stream.next()).id
    assert seen is not None
    missed = [await create(api, name) for name in ("v3", "v4")]  # while nobody watched

    async with curl(f"{api.url}/v1/volumes?watch=true", f"Last-Event-ID: {seen}") as stream:
        assert (await stream.next()).event == "BOOKMARK"
        caught_up = [await stream.next(), await stream.next()]
        assert [(m.event, m.id, volume_of(m)) for m in caught_up] == [
            ("ADDED", str(missed[0]), "v3"),
            ("ADDED", str(missed[1]), "v4"),
        ]
    # the same with ?resourceVersion= (what a client that listed passes)
    async with curl(f"{api.url}/v1/watch?kind=Volume&resourceVersion={missed[0]}") as stream:
        mark = await stream.next()
        assert (mark.event, mark.id) == ("BOOKMARK", str(missed[0]))
        assert volume_of(await stream.next()) == "v4"


async def test_a_revision_the_store_forgot_is_410_gone_then_the_end(api: Api) -> None:
    first = await create(api, "v1")
    await create(api, "v2")
    await api.store.inner.compact(api.store.inner.revision)
    async with curl(f"{api.url}/v1/volumes?watch=true&resourceVersion={first}") as stream:
        error = await stream.next()
        assert error.event == "ERROR"
        status = error.data["object"]
        assert error.data["type"] == "ERROR"
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Gone")
        assert "list Volume again" in status["message"]
        assert await stream.rest() == b""  # and the stream ended


async def test_an_idle_stream_gets_keep_alive_comments(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE", 0.2)
    async with curl(f"{api.url}/v1/volumes?watch=true") as stream:
        assert (await stream.next()).event == "BOOKMARK"
        idle = await stream.next(comments=True)
        assert idle.comment == "keep-alive"
        revision = await create(api, "v1")
        assert (await stream.next()).id == str(revision)


async def test_a_watch_of_events_keeps_the_lists_filter(api: Api) -> None:
    async with curl(f"{api.url}/v1/events?watch=true&kind=Volume&name=v1") as stream:
        assert (await stream.next()).event == "BOOKMARK"
        for name in ("v2", "v1"):
            about = ObjectReference(kind="Volume", name=name)
            said = Occurrence(reason="Attached", message=f"volume {name} attached to node n1")
            await events.record(api.objects, about, said, node="n1", now=dt.datetime.now(dt.UTC))
        only = await stream.next()
        assert only.event == "ADDED"
        assert only.data["object"]["involvedObject"]["name"] == "v1"
        assert only.data["object"]["reason"] == "Attached"


async def labels(api: Api, name: str, **given: str) -> int:
    """Set volume ``name``'s labels; its revision."""
    answer = await api.post(f"/v1/volumes/{name}?action=updateLabels", {"labels": given})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["metadata"]["resourceVersion"])


async def test_a_watched_collection_keeps_the_lists_filters(api: Api) -> None:
    """The list's filters (here ``labelSelector`` and ``state``) apply to the watch: an object
    that comes to match is ADDED, one that leaves the view DELETED, others are not told."""
    await create(api, "v1")
    await labels(api, "v1", app="db")
    await create(api, "v2")
    url = f"{api.url}/v1/volumes?watch=true&labelSelector=app%3Ddb&state=creating"
    listed = await api.client.get("/v1/volumes?labelSelector=app%3Ddb&state=creating")
    assert [d["metadata"]["name"] for d in listed.json()["data"]] == ["v1"]
    async with curl(url) as stream:
        first = await stream.next()
        assert (first.event, volume_of(first)) == ("ADDED", "v1")  # as the list says
        assert (await stream.next()).event == "BOOKMARK"
        await create(api, "v3")  # not labelled: not told
        came = await labels(api, "v2", app="db")
        joined = await stream.next()
        assert (joined.event, joined.id, volume_of(joined)) == ("ADDED", str(came), "v2")
        went = await labels(api, "v1", app="web")
        left = await stream.next()
        assert (left.event, left.id, volume_of(left)) == ("DELETED", str(went), "v1")
        assert left.data["object"]["metadata"]["labels"] == {"app": "web"}  # as it is now
        changed = await labels(api, "v2", app="db", tier="1")
        kept = await stream.next()
        assert (kept.event, kept.id, volume_of(kept)) == ("MODIFIED", str(changed), "v2")


async def test_a_watch_of_replicas_keeps_one_nodes(api: Api) -> None:
    for name, node in (("v-r-1", "n1"), ("v-r-2", "n2")):
        await api.objects.create(
            Replica(
                meta=ObjectMeta(name=name),
                spec=ReplicaSpec(volume_name="v", volume_size=1 << 24, node_id=node),
            )
        )
    async with curl(f"{api.url}/v1/replicas?watch=1&node=n2&volume=v") as stream:
        only = await stream.next()
        assert (only.event, only.data["object"]["metadata"]["name"]) == ("ADDED", "v-r-2")
        assert (await stream.next()).event == "BOOKMARK"


async def test_a_client_that_goes_away_ends_its_feeder(api: Api) -> None:
    hub_tasks = trio.lowlevel.current_statistics().tasks_living
    async with curl(f"{api.url}/v1/volumes?watch=true") as stream:
        assert (await stream.next()).event == "BOOKMARK"
        assert trio.lowlevel.current_statistics().tasks_living > hub_tasks
    # curl was killed: its connection, its request and its feeder end (tasks ending is no event
    # a test can wait on: polled, with a deadline)
    with trio.fail_after(10):
        while trio.lowlevel.current_statistics().tasks_living > hub_tasks:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_graceful_stop_ends_open_streams_at_once() -> None:
    store = MemoryStore()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def serve(task_status: trio.TaskStatus[str]) -> None:
            await serve_api(
                Objects(store), "127.0.0.1", 0, token=TOKEN, stop=stop, task_status=task_status
            )
            done.set()

        url = await nursery.start(serve)
        async with (
            curl(f"{url}/v1/volumes?watch=true") as stream,
            curl(f"{url}/v1/watch?kind=Node") as other,
        ):
            assert (await stream.next()).event == "BOOKMARK"
            assert (await other.next()).event == "BOOKMARK"
            started = trio.current_time()
            stop.set()
            with trio.fail_after(5):  # hypercorn would wait 10 s for a stream that never ends
                await done.wait()
            assert trio.current_time() - started < 5
            assert await stream.rest() == b""  # the chunked body ended cleanly: curl exits 0
            assert await other.rest() == b""
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=url) as client:
                await client.get("/v1/volumes")


@pytest.mark.parametrize(
    ("path", "headers", "field"),
    [
        ("/v1/watch?kind=Nope", {}, "kind"),
        ("/v1/watch", {}, "kind"),
        ("/v1/watch?kind=volume", {}, "kind"),
        ("/v1/volumes?watch=maybe", {}, "watch"),
        ("/v1/volumes?watch=true&resourceVersion=abc", {}, "resourceVersion"),
        ("/v1/volumes?watch=true&resourceVersion=-1", {}, "resourceVersion"),
        ("/v1/volumes?watch=true&resourceVersion=99999999999999999999", {}, "resourceVersion"),
        ("/v1/volumes?watch=true&resourceVersion=1000", {}, "resourceVersion"),  # the future
        ("/v1/volumes?watch=true", {"Last-Event-ID": "x1"}, "Last-Event-ID"),
        ("/v1/events?watch=true&kind=a/b", {}, "kind"),
        ("/v1/events?watch=true&name=../x", {}, "name"),
        ("/v1/replicas?watch=true&volume=../x", {}, "volume"),
        ("/v1/engines?watch=true&node=a/b", {}, "node"),
        ("/v1/volumes?watch=true&state=on", {}, "state"),
        ("/v1/volumes?watch=true&robustness=fine", {}, "robustness"),
        ("/v1/nodes?watch=true&labelSelector=a%20in%20(b)", {}, "labelSelector"),
        ("/v1/events?watch=true&labelSelector=%3D", {}, "labelSelector"),
    ],
)
async def test_bad_watch_input_is_400_and_changes_nothing(
    api: Api, path: str, headers: dict[str, str], field: str
) -> None:
    await create(api, "v1")
    before = await api.state()
    answer = await api.client.get(path, headers=headers)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "InvalidArgument"
    assert body["details"] == {"field": field}
    assert field.lower() in body["message"].lower().replace(" ", "")  # (label selector)
    assert await api.state() == before


async def test_watch_false_is_the_list(api: Api) -> None:
    await create(api, "v1")
    answer = await api.client.get("/v1/volumes?watch=false")
    assert answer.status_code == 200
    assert [d["metadata"]["name"] for d in answer.json()["data"]] == ["v1"]
