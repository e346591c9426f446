"""The SQLite store across processes and restarts (what the conformance suite cannot show in one
process): two processes incrementing one counter lose no update, another process's watch sees
every change, and a reopened file keeps its objects and its revisions."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import trio

from lhtrio.manager.store.api import Document, EventType
from lhtrio.manager.store.sqlite import SAFETY, open_sqlite_store

WRITER = """
import sys, trio
from lhtrio.errors import ConflictError
from lhtrio.manager.store.sqlite import SAFETY, open_sqlite_store

async def main(path, count):
    async with open_sqlite_store(path) as store:
        for _ in range(count):
            while True:
                document = await store.get("Volume", "counter")
                document["spec"]["count"] += 1
                try:
                    await store.update(document)
                    break
                except ConflictError:
                    continue  # another process won: read again

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""

COUNT = 60


def field(document: Document, *path: str) -> object:
    value: object = document
    for key in path:
        assert isinstance(value, dict)
        value = value[key]
    return value


async def test_two_processes_lose_no_update_and_a_third_sees_every_change(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        start = await store.create(
            {"kind": "Volume", "metadata": {"name": "counter"}, "spec": {"count": 0}}
        )
        counts: list[int] = []
        revision = int(str(field(start, "metadata", "resourceVersion")))
        writer = [sys.executable, "-c", WRITER, str(path), str(COUNT)]
        async with store.watch("Volume", revision) as events, trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(functools.partial(trio.run_process, writer, check=True))
            with trio.fail_after(120):
                async for event in events:
                    assert event.type is EventType.MODIFIED
                    count = field(event.document, "spec", "count")
                    assert isinstance(count, int)
                    counts.append(count)
                    if len(counts) == 2 * COUNT:
                        break
        final = await store.get("Volume", "counter")
    assert final["spec"] == {"count": 2 * COUNT}
    assert counts == list(range(1, 2 * COUNT + 1))  # each increment once, in order


async def test_a_reopened_store_keeps_its_objects_and_its_revisions(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        first = await store.create({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}})
    async with open_sqlite_store(path) as store:
        assert await store.get("Node", "n1") == first
        second = await store.create({"kind": "Node", "metadata": {"name": "n2"}, "spec": {}})
        listing = await store.list("Node")
    assert [field(d, "metadata", "name") for d in listing.documents] == ["n1", "n2"]
    versions = [int(str(field(d, "metadata", "resourceVersion"))) for d in (first, second)]
    assert versions[1] == versions[0] + 1


TWO_KINDS = """
import sys, trio
from lhtrio.manager.store.sqlite import SAFETY, open_sqlite_store

async def main(path):
    async with open_sqlite_store(path) as store:
        await store.create({"kind": "NodeLease", "metadata": {"name": "n1"}, "spec": {}})
        await store.create({"kind": "Volume", "metadata": {"name": "v"}, "spec": {}})

trio.run(main, sys.argv[1])
"""


async def test_another_processs_change_wakes_the_watchers_of_its_kind_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        revision = (await store.list("Volume")).revision
        async with store.watch("Volume", revision) as events:
            # (well before the safety net's look: the inotify wake-up found the kind changed)
            with trio.fail_after(SAFETY * 0.8):
                await trio.run_process([sys.executable, "-c", TWO_KINDS, str(path)])
                event = await events.__anext__()
    assert event.type is EventType.ADDED
    assert field(event.document, "metadata", "name") == "v"
