"""When the :class:`~lhtrio.net.transport.Outbox` sends: at once, or through its writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from lhtrio.net.transport import Outbox, Transport
from lhtrio.wire import Buffer


class Recorder(Transport):
    """A transport that takes everything at once and remembers each send."""

    can_send_nowait = True

    def __init__(self) -> None:
        self.sends: list[tuple[str, bytes]] = []

    def send_nowait(self, buffers: list[Any]) -> list[Any]:
        self.sends.append(("now", b"".join(buffers)))
        return []

    async def send(self, buffers: Sequence[Buffer]) -> None:
        self.sends.append(("writer", b"".join(buffers)))


async def test_now_sends_from_the_calling_task_without_the_writer() -> None:
    transport = Recorder()
    out = Outbox(transport)
    out.buffers += [b"a", b"b"]
    out.flush(now=True)
    assert transport.sends == [("now", b"ab")]
    assert out.buffers == []


async def test_not_now_leaves_frames_to_the_writer_which_sends_them_together() -> None:
    transport = Recorder()
    out = Outbox(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.writer)
        await trio.testing.wait_all_tasks_blocked()
        for frame in (b"1", b"2", b"3"):  # three completions in one moment
            out.buffers.append(frame)
            out.flush(now=False)
        assert transport.sends == []
        await trio.testing.wait_all_tasks_blocked()
        assert transport.sends == [("writer", b"123")]
        out.close()


async def test_now_waits_for_a_send_in_progress() -> None:
    transport = Recorder()
    out = Outbox(transport)
    out.sending = True  # the writer is in the middle of a send
    out.buffers.append(b"x")
    out.flush(now=True)
    assert transport.sends == []
    assert out.buffers == [b"x"]


async def test_a_stream_without_nowait_always_goes_through_the_writer() -> None:
    transport = Recorder()
    transport.can_send_nowait = False
    out = Outbox(transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.writer)
        out.buffers.append(b"y")
        out.flush(now=True)
        assert transport.sends == []
        await trio.testing.wait_all_tasks_blocked()
        assert transport.sends == [("writer", b"y")]
        out.close()
