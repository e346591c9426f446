"""``lhtrio ... -w`` as an operator runs it: the real ``python -m lhtrio`` process following the
served API's watch stream, its output read line by line with deadlines while the test changes
the store (no sleeps). Between the two, a TCP proxy of the test's own can cut the connection and
refuse new ones, so what happens while the CLI is away is known: it resumes with
``Last-Event-ID`` and prints the missed change once; when its revision was compacted meanwhile
(410) it lists again and prints only what changed. Ctrl-C ends it quietly with exit code 130."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from lhtrio.manager import events
from lhtrio.models.cluster import Volume, VolumeAttachment
from lhtrio.models.cluster.event import ObjectReference, Occurrence
from tests.admin.conftest import TOKEN, Api

pytestmark = pytest.mark.real  # lhtrio processes

WAIT = 30.0


@attrs.define(eq=False)
class Proxy:
    """Forwards 127.0.0.1:``port`` to the API; :meth:`cut` drops every connection and refuses
    new ones until :meth:`mend`; ``requests`` holds the head of each request forwarded."""

    target: int
    port: int = 0
    open: bool = True
    requests: list[bytes] = attrs.field(factory=list)
    _scopes: set[trio.CancelScope] = attrs.field(factory=set)

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.open:
                return
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
            async with upstream, trio.open_nursery() as nursery:
                self._scopes.add(nursery.cancel_scope)
                nursery.start_soon(self._pipe, client, upstream, True, nursery.cancel_scope)
                nursery.start_soon(self._pipe, upstream, client, False, nursery.cancel_scope)
            self._scopes.discard(nursery.cancel_scope)

    async def _pipe(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        request: bool,
        scope: trio.CancelScope,
    ) -> None:
        try:
            while chunk := await source.receive_some():
                if request and chunk.startswith(b"GET "):
                    self.requests.append(chunk)
                await sink.send_all(chunk)
        except trio.BrokenResourceError:
            pass
        scope.cancel()

    def cut(self) -> None:
        self.open = False
        for scope in self._scopes:
            scope.cancel()

    def mend(self) -> None:
        self.open = True


class Lines:
    """A process's output, line by line, each read with a deadline."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def next(self) -> str:
        with trio.fail_after(WAIT):
            while b"\n" not in self.buffer:
                chunk = await self.stream.receive_some()
                if not chunk:
                    raise EOFError(f"the output ended; seen: {self.seen}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        self.seen.append(line.decode())
        return self.seen[-1]

    async def rest(self) -> str:
        with trio.fail_after(WAIT):
            while chunk := await self.stream.receive_some():
                self.buffer += chunk
        return self.buffer.decode()


@attrs.frozen
class Watching:
    proc: trio.Process
    out: Lines
    err: Lines

    async def interrupt(self) -> None:
        """Ctrl-C: the watch ends quietly with exit code 130."""
        self.proc.send_signal(signal.SIGINT)
        assert await self.err.rest() == ""
        with trio.fail_after(WAIT):
            assert await self.proc.wait() == 130


@asynccontextmanager
async def lhtrio_watch(url: str, *args: str) -> AsyncIterator[Watching]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LHTRIO_")}
    env |= {"LHTRIO_API": url, "LHTRIO_TOKEN": TOKEN}
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "lhtrio", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        yield Watching(proc, Lines(proc.stdout), Lines(proc.stderr))
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


async def create(api: Api, name: str) -> int:
    answer = await api.post("/v1/volumes", {"name": name, "size": "16Mi"})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["metadata"]["resourceVersion"])


async def remove_for_good(api: Api, name: str) -> None:
    """Delete volume ``name`` and let it go (as its reconciler does once its parts are gone)."""
    await api.objects.delete(await api.objects.get(Volume, name))
    await api.objects.change(
        Volume, name, lambda v: attrs.evolve(v, meta=attrs.evolve(v.meta, finalizers=()))
    )


@pytest.fixture
async def proxy(api: Api, nursery: trio.Nursery) -> Proxy:
    target = int(api.url.rsplit(":", 1)[1])
    proxy = Proxy(target)
    await nursery.start(proxy.serve)
    return proxy


def cells(line: str) -> list[str]:
    return line.split()


async def test_ls_w_prints_the_table_then_a_row_per_change_and_resumes_after_a_cut(
    api: Api, proxy: Proxy
) -> None:
    await create(api, "v1")
    async with lhtrio_watch(f"http://127.0.0.1:{proxy.port}", "volume", "ls", "-w") as w:
        assert cells(await w.out.next()) == [
            "NAME", "SIZE", "REPLICAS", "STATE", "ROBUSTNESS", "NODE",
        ]  # fmt: skip
        assert cells(await w.out.next())[:3] == ["v1", "16Mi", "3"]
        await create(api, "v2")
        assert cells(await w.out.next())[:3] == ["v2", "16Mi", "3"]

        proxy.cut()  # the CLI is away while v3 is made
        seen = len(proxy.requests)
        revision = await create(api, "v3")
        proxy.mend()
        assert cells(await w.out.next())[:3] == ["v3", "16Mi", "3"]
        resumed = proxy.requests[seen:]
        assert resumed, "the watch did not open its stream again"
        assert f"last-event-id: {revision - 1}".encode() in resumed[-1].lower()

        await create(api, "v4")  # and nothing of before was printed twice
        assert cells(await w.out.next())[0] == "v4"
        await w.interrupt()
        assert [line.split()[0] for line in w.out.seen[1:]] == ["v1", "v2", "v3", "v4"]


async def test_json_lines_and_a_list_again_after_gone_prints_only_what_changed(
    api: Api, proxy: Proxy
) -> None:
    for name in ("v1", "v2"):
        await create(api, name)
    url = f"http://127.0.0.1:{proxy.port}"
    async with lhtrio_watch(url, "volume", "ls", "-w", "-o", "json") as w:
        first = [json.loads(await w.out.next()) for _ in range(2)]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [
            ("ADDED", "v1"),
            ("ADDED", "v2"),
        ]
        proxy.cut()
        await create(api, "v3")
        await remove_for_good(api, "v2")
        await api.store.inner.compact(api.store.inner.revision)  # its revision is gone
        proxy.mend()
        after = [json.loads(await w.out.next()) for _ in range(2)]
        told = sorted((e["type"], e["object"]["metadata"]["name"]) for e in after)
        assert told == [("ADDED", "v3"), ("DELETED", "v2")]  # v1 did not change: not again
        await create(api, "v4")
        fourth = json.loads(await w.out.next())
        assert (fourth["type"], fourth["object"]["metadata"]["name"]) == ("ADDED", "v4")
        await w.interrupt()


async def test_get_w_follows_one_object_and_events_w_the_new_events(api: Api) -> None:
    await create(api, "v1")
    await create(api, "v2")
    async with (
        lhtrio_watch(api.url, "volume", "get", "v1", "-w") as one,
        lhtrio_watch(api.url, "event", "ls", "--volume", "v1", "-w") as said,
    ):
        assert cells(await one.out.next())[0] == "NAME"
        assert cells(await one.out.next())[0] == "v1"
        assert cells(await said.out.next()) == [
            "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE",
        ]  # fmt: skip
        for name in ("v2", "v1"):  # only v1's change and event are printed
            about = ObjectReference(kind="Volume", name=name)
            occurrence = Occurrence(reason="Attached", message=f"volume {name} attached")
            await events.record(
                api.objects, about, occurrence, node="n1", now=dt.datetime.now(dt.UTC)
            )
            await set_state(api, name, "attaching")
        row = cells(await said.out.next())
        assert row[1:5] == ["Normal", "Attached", "volume/v1", "1"]
        assert cells(await one.out.next())[:4] == ["v1", "16Mi", "3", "attaching"]
        await one.interrupt()
        await said.interrupt()
        assert len(one.out.seen) == 3
        assert len(said.out.seen) == 2


async def set_state(api: Api, name: str, state: str) -> None:
    def change(v: Volume) -> Volume:
        status: Any = attrs.evolve(v.status, state=type(v.status.state)(state))
        return attrs.evolve(v, status=status)

    await api.objects.change(Volume, name, change)


async def test_w_on_an_unknown_object_is_not_found_and_a_bad_kind_a_usage_error(
    api: Api,
) -> None:
    run = functools.partial(
        trio.run_process,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, "LHTRIO_API": api.url, "LHTRIO_TOKEN": TOKEN},
    )
    with trio.fail_after(WAIT):
        missing = await run([sys.executable, "-m", "lhtrio", "volume", "get", "nope", "-w"])
        kind = await run([sys.executable, "-m", "lhtrio", "event", "ls", "Pod", "p", "-w"])
    assert (missing.returncode, missing.stdout) == (3, b"")
    assert b"error: " in missing.stderr
    assert (kind.returncode, kind.stdout) == (2, b"")
    assert b"'Pod' is not a kind events are about" in kind.stderr


async def test_ctrl_c_during_attach_leaves_the_ticket_and_says_how_to_follow(api: Api) -> None:
    await create(api, "v1")
    async with lhtrio_watch(api.url, "volume", "attach", "v1", "--node", "n1") as attaching:
        assert await attaching.err.next() == "volume v1: creating"  # (no node reconciles it)
        attaching.proc.send_signal(signal.SIGINT)
        rest = await attaching.err.rest()
        with trio.fail_after(WAIT):
            assert await attaching.proc.wait() == 130
    assert rest.splitlines()[-1] == (
        "interrupted: the attachment of volume v1 goes on in the cluster; follow it with: "
        "lhtrio volume get v1 -w"
    )
    assert attaching.out.seen == []
    attachment = await api.objects.get(VolumeAttachment, "v1")
    assert attachment.spec.attachment_tickets["lhtrio-api"].node_id == "n1"  # still asked for
