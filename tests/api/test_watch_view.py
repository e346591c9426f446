"""What a filtered watch tells its client (:class:`lhtrio.api.sse.View`, sans-I/O): Kubernetes'
rule — an object that comes to match is ``ADDED``, one that stops matching ``DELETED``, changes of
objects that never matched are not told; a resumed stream, which cannot know what its client
holds, tells a non-matching change of an object it has not told of as ``DELETED`` once. And the
collections' filters (:func:`lhtrio.api.query.collection_filter`), one for the list and the
watch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.api.problems import FieldError
from lhtrio.api.query import collection_filter
from lhtrio.api.sse import View
from lhtrio.models.cluster import Engine, Event, ObjectMeta, Replica, Setting, Volume
from lhtrio.models.cluster.engine import EngineSpec
from lhtrio.models.cluster.event import ObjectReference
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.setting import SettingSpec
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState, VolumeStatus

Told = tuple[str, str] | None


def doc(name: str, app: str = "") -> dict[str, Any]:
    labels = {"app": app} if app else {}
    return {"kind": "Volume", "metadata": {"name": name, "labels": labels}}


def is_db(document: dict[str, Any]) -> bool:
    return bool(document["metadata"]["labels"].get("app") == "db")


def told(data: bytes | None) -> Told:
    """(event, object name) of a message, None for no message."""
    if data is None:
        return None
    fields = dict(line.split(": ", 1) for line in data.decode().strip().split("\n"))
    body = json.loads(fields["data"])
    assert body["type"] == fields["event"]
    return fields["event"], body["object"]["metadata"]["name"]


def test_without_a_filter_every_event_is_told_as_the_store_says() -> None:
    view = View(None, resumed=True)
    assert told(view.listed(doc("a"))) == ("ADDED", "a")
    for kind in ("ADDED", "MODIFIED", "DELETED"):
        assert told(view.change(kind, doc("b"), 7)) == (kind, "b")


def test_a_listed_object_is_told_only_when_it_matches() -> None:
    view = View(is_db, resumed=False)
    assert told(view.listed(doc("a", "db"))) == ("ADDED", "a")
    assert view.listed(doc("b", "web")) is None
    assert told(view.change("MODIFIED", doc("a", "db"), 5)) == ("MODIFIED", "a")
    assert view.change("MODIFIED", doc("b", "web"), 6) is None
    assert view.change("DELETED", doc("b", "web"), 7) is None


def test_objects_enter_and_leave_the_view() -> None:
    view = View(is_db, resumed=False)
    assert view.change("ADDED", doc("a", "web"), 2) is None
    assert told(view.change("MODIFIED", doc("a", "db"), 3)) == ("ADDED", "a")  # came to match
    assert told(view.change("MODIFIED", doc("a", "db"), 4)) == ("MODIFIED", "a")
    assert told(view.change("MODIFIED", doc("a", "web"), 5)) == ("DELETED", "a")  # left
    assert view.change("MODIFIED", doc("a", "web"), 6) is None
    assert view.change("DELETED", doc("a", "web"), 7) is None  # the client never held it again
    assert told(view.change("ADDED", doc("a", "db"), 8)) == ("ADDED", "a")  # a new one
    assert told(view.change("DELETED", doc("a", "db"), 9)) == ("DELETED", "a")


def test_a_resumed_stream_tells_a_doubtful_object_once() -> None:
    view = View(is_db, resumed=True)
    assert told(view.change("MODIFIED", doc("a", "db"), 2)) == ("MODIFIED", "a")
    # b: the client may hold it (it matched before the reconnection): DELETED once, then nothing
    assert told(view.change("MODIFIED", doc("b", "web"), 3)) == ("DELETED", "b")
    assert view.change("MODIFIED", doc("b", "web"), 4) is None
    assert told(view.change("MODIFIED", doc("b", "db"), 5)) == ("ADDED", "b")
    # created after the resumed revision and not matching: the client cannot hold it
    assert view.change("ADDED", doc("c", "web"), 6) is None
    assert view.change("MODIFIED", doc("c", "web"), 7) is None
    assert told(view.change("DELETED", doc("d", "web"), 8)) == ("DELETED", "d")  # maybe held


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["ADDED", "MODIFIED", "DELETED"]),
        st.sampled_from("abc"),
        st.booleans(),
    ),
    max_size=30,
)


@given(listed=st.sets(st.sampled_from("abc")), events=EVENTS)
def test_the_client_ends_holding_exactly_the_matching_objects(
    listed: set[str], events: list[tuple[str, str, bool]]
) -> None:
    """Replaying what a listed stream tells, on any history the store could have, leaves the
    client with exactly the objects that exist and match, each as last changed."""
    store: dict[str, bool] = dict.fromkeys(listed, True)
    view = View(is_db, resumed=False)
    client: set[str] = set()
    for name in sorted(store):
        if told(view.listed(doc(name, "db"))):
            client.add(name)
    for kind, name, matching in events:
        exists = name in store
        if exists == (kind == "ADDED"):
            continue  # not a history a store has
        document = doc(name, "db" if matching else "web")
        if kind == "DELETED":
            document = doc(name, "db" if store.pop(name) else "web")
        else:
            store[name] = matching
        message = told(view.change(kind, document, 1))
        if message is not None:
            event, _ = message
            assert (event == "ADDED") == (name not in client)  # never told twice, nor updated
            if event == "DELETED":
                client.discard(name)
            else:
                client.add(name)
    assert client == {name for name, matching in store.items() if matching}


def volume(name: str, state: VolumeState, labels: dict[str, str] | None = None) -> Volume:
    return Volume(
        meta=ObjectMeta(name=name, labels=labels or {}),
        spec=VolumeSpec(size=1 << 30),
        status=VolumeStatus(state=state, robustness=Robustness.HEALTHY),
    )


def test_collection_filters() -> None:
    assert collection_filter("/v1/volumes", {}) is None
    assert collection_filter("/v1/volumes", {"other": "x"}) is None
    keep = collection_filter("/v1/volumes", {"state": "attached", "labelSelector": "app=db"})
    assert keep is not None
    assert keep(volume("a", VolumeState.ATTACHED, {"app": "db"}))
    assert not keep(volume("a", VolumeState.DETACHED, {"app": "db"}))
    assert not keep(volume("a", VolumeState.ATTACHED))
    healthy = collection_filter("/v1/volumes", {"robustness": "healthy"})
    assert healthy is not None
    assert healthy(volume("a", VolumeState.DETACHED))

    on_n1 = collection_filter("/v1/replicas", {"node": "n1", "volume": "v"})
    assert on_n1 is not None
    replica = Replica(
        meta=ObjectMeta(name="v-r-1"), spec=ReplicaSpec(volume_name="v", volume_size=4096)
    )
    assert not on_n1(replica)
    assert on_n1(Replica(meta=replica.meta, spec=ReplicaSpec(
        volume_name="v", volume_size=4096, node_id="n1")))  # fmt: skip
    engines = collection_filter("/v1/engines", {"volume": "v"})
    assert engines is not None
    assert engines(
        Engine(meta=ObjectMeta(name="v-e-0"), spec=EngineSpec(volume_name="v", volume_size=4096))
    )

    about = collection_filter("/v1/events", {"kind": "Volume", "name": "v"})
    assert about is not None
    event = Event(
        meta=ObjectMeta(name="v.1"),
        involved_object=ObjectReference(kind="Volume", name="v"),
        reason="Attached",
        message="volume v attached",
    )
    assert about(event)
    assert not about(Event(meta=event.meta, involved_object=ObjectReference(kind="Node", name="v"),
                           reason="x", message="y"))  # fmt: skip
    # the filters of another collection are not this one's
    assert collection_filter("/v1/settings", {"state": "nope", "volume": "../x"}) is None
    labelled = collection_filter("/v1/settings", {"labelSelector": "a"})
    assert labelled is not None
    assert not labelled(Setting(meta=ObjectMeta(name="s"), spec=SettingSpec(value="1")))


@pytest.mark.parametrize(
    ("path", "args", "field"),
    [
        ("/v1/volumes", {"state": "on"}, "state"),
        ("/v1/volumes", {"robustness": "fine"}, "robustness"),
        ("/v1/nodes", {"labelSelector": "a in (b)"}, "labelSelector"),
        ("/v1/replicas", {"volume": "../x"}, "volume"),
        ("/v1/engines", {"node": "a/b"}, "node"),
        ("/v1/events", {"kind": "volume"}, "kind"),
        ("/v1/events", {"kind": "Vol ume"}, "kind"),
        ("/v1/events", {"name": "../x"}, "name"),
    ],
)
def test_a_bad_filter_names_its_parameter(path: str, args: dict[str, str], field: str) -> None:
    with pytest.raises(FieldError) as refused:
        collection_filter(path, args)
    assert refused.value.field == field
