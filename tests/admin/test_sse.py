"""The CLI's reading of a watch stream, without I/O: server-sent events parsed by the standard's
rules whatever the split of the bytes (Hypothesis: byte at a time, any chunks; garbage parses or
raises SseError, nothing else), and the watch state that turns them into rows to print —
resuming from the last id, listing again after a 410 and printing only what changed."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.admin.sse import MAX_MESSAGE, Message, SseError, SseParser
from lhtrio.admin.watch import Change, WatchError, WatchState

STREAM = (
    b"\xef\xbb\xbfevent: ADDED\n"
    b'data: {"a":\n'
    b"data: 1}\n"
    b"\n"
    b": keep-alive\n"
    b"\n"
    b"id: 42\r\n"
    b"event: MODIFIED\r\n"
    b"data:no space\r\n"
    b"retry: 3000\r\n"
    b"unknown: field\r\n"
    b"\r\n"
    b"id\r"
    b"data\r"
    b"\r"
    b"event: nothing\n"
    b"\n"
)
EXPECTED = [
    Message(event="ADDED", data='{"a":\n1}', id=None),
    Message(event="MODIFIED", data="no space", id="42", retry=3000),
    Message(event="message", data="", id="", retry=3000),
]


def test_a_stream_parses_by_the_rules() -> None:
    parser = SseParser()
    assert parser.feed(STREAM) == EXPECTED
    assert parser.comments == 1
    assert parser.last_id == ""  # an empty id field resets it


@given(st.lists(st.integers(0, len(STREAM)), max_size=20))
def test_any_split_of_the_bytes_parses_the_same(cuts: list[int]) -> None:
    parser = SseParser()
    bounds = [0, *sorted(cuts), len(STREAM)]
    messages = [m for a, b in itertools.pairwise(bounds) for m in parser.feed(STREAM[a:b])]
    assert messages == EXPECTED


def test_a_byte_at_a_time_parses_the_same() -> None:
    parser = SseParser()
    assert [m for i in range(len(STREAM)) for m in parser.feed(STREAM[i : i + 1])] == EXPECTED


def test_an_id_lasts_until_another_and_a_nul_one_is_ignored() -> None:
    parser = SseParser(last_id="7")
    first, second = parser.feed(b"data: a\n\nid: 8\x009\ndata: b\n\n")
    assert (first.id, second.id) == ("7", "7")


@given(st.binary(max_size=300))
def test_garbage_parses_or_raises_the_sse_error(data: bytes) -> None:
    parser = SseParser()
    try:
        for message in parser.feed(data):
            assert isinstance(message, Message)
    except SseError:
        pass


def test_a_line_or_message_over_the_limit_is_refused() -> None:
    with pytest.raises(SseError, match="line"):
        SseParser().feed(b"data: " + b"x" * MAX_MESSAGE)
    parser = SseParser()
    line = b"data: " + b"x" * (1 << 20) + b"\n"
    for _ in range(15):
        parser.feed(line)
    with pytest.raises(SseError, match="event is over"):
        parser.feed(line)


# --- the watch state --------------------------------------------------------------------------


def doc(name: str, version: int, **status: str) -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": str(version)}, "status": status}


def event(kind: str, obj: dict[str, object], revision: int | None = None) -> Message:
    data = json.dumps({"type": kind, "object": obj})
    return Message(event=kind, data=data, id=None if revision is None else str(revision))


def bookmark(revision: int) -> Message:
    return event("BOOKMARK", {"metadata": {"resourceVersion": str(revision)}}, revision)


def gone() -> Message:
    status = {"kind": "Status", "code": 410, "reason": "Gone", "message": "too old"}
    return Message(event="ERROR", data=json.dumps({"type": "ERROR", "object": status}))


def test_the_first_list_then_changes_with_the_revision_kept() -> None:
    state = WatchState()
    assert state.message(event("ADDED", doc("a", 3))) == (
        [Change("ADDED", doc("a", 3), True)],
        False,
    )
    assert state.message(bookmark(5)) == ([], True)
    assert state.revision == "5"
    changed = state.message(event("MODIFIED", doc("a", 6), 6))
    assert changed == ([Change("MODIFIED", doc("a", 6))], False)
    assert state.revision == "6"
    state.reconnecting()  # a dropped connection resumes from 6, listing nothing again
    assert (state.revision, state.listing) == ("6", False)


def test_after_gone_the_list_again_prints_only_what_changed() -> None:
    state = WatchState()
    for name, version in (("a", 1), ("b", 2), ("c", 3)):
        state.message(event("ADDED", doc(name, version)))
    state.message(bookmark(3))
    assert state.message(gone()) == ([], False)
    state.reconnecting()
    assert state.revision is None  # list again
    assert state.message(event("ADDED", doc("a", 1))) == ([], False)  # unchanged: not printed
    assert state.message(event("ADDED", doc("b", 9))) == ([Change("MODIFIED", doc("b", 9))], False)
    assert state.message(event("ADDED", doc("d", 8))) == ([Change("ADDED", doc("d", 8))], False)
    changes, listed = state.message(bookmark(10))
    assert (changes, listed) == ([Change("DELETED", doc("c", 3))], True)  # c went meanwhile
    assert sorted(state.known) == ["a", "b", "d"]


def test_one_objects_watch_keeps_its_changes_only() -> None:
    state = WatchState(name="a")
    assert state.message(event("ADDED", doc("b", 1))) == ([], False)
    assert state.message(event("ADDED", doc("a", 2)))[0] == [Change("ADDED", doc("a", 2), True)]
    assert state.message(event("DELETED", doc("a", 3), 3))[0] == [Change("DELETED", doc("a", 3))]


def test_an_error_other_than_gone_or_a_bad_message_ends_the_watch() -> None:
    status = {"kind": "Status", "code": 503, "reason": "StoreUnavailable", "message": "disk"}
    with pytest.raises(WatchError, match="503 StoreUnavailable: disk"):
        WatchState().message(Message(event="ERROR", data=json.dumps({"object": status})))
    with pytest.raises(WatchError, match="not JSON"):
        WatchState().message(Message(event="ADDED", data="{"))
    with pytest.raises(WatchError, match="unknown type"):
        WatchState().message(event("RENAMED", doc("a", 1)))
