"""A watch stream read the way an operator reads it: the real ``curl -N`` against the served API,
its output parsed into server-sent events (no sleeps: each read waits for bytes, with a
deadline)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from tests.api.conftest import TOKEN

WAIT = 30.0


@attrs.frozen
class Message:
    """One server-sent event: ``event``, ``data`` (parsed JSON), ``id`` (None when absent);
    ``comment`` for a comment line (a keep-alive)."""

    event: str = "message"
    data: Any = None
    id: str | None = None
    comment: str | None = None


def parse(block: str) -> Message:
    fields: dict[str, str] = {}
    comment = None
    for line in block.split("\n"):
        if line.startswith(":"):
            comment = line[1:].strip()
            continue
        key, _, value = line.partition(":")
        fields[key] = value[1:] if value.startswith(" ") else value
    if comment is not None and not fields:
        return Message(comment=comment)
    return Message(
        event=fields.get("event", "message"),
        data=json.loads(fields["data"]) if "data" in fields else None,
        id=fields.get("id"),
    )


class Stream:
    """A running ``curl -N``; :meth:`next` is its next message."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buffer = b""

    async def next(self, *, comments: bool = False) -> Message:
        """The next event (keep-alive comments skipped unless ``comments``)."""
        assert self.proc.stdout is not None
        with trio.fail_after(WAIT):
            while True:
                while b"\n\n" not in self._buffer:
                    chunk = await self.proc.stdout.receive_some()
                    if not chunk:
                        raise EOFError(f"the stream ended; left: {self._buffer!r}")
                    self._buffer += chunk
                block, _, self._buffer = self._buffer.partition(b"\n\n")
                message = parse(block.decode())
                if message.comment is None or comments:
                    return message

    async def rest(self) -> bytes:
        """Everything until the stream ends (the server closed it), and curl's exit status 0."""
        assert self.proc.stdout is not None
        out = self._buffer
        with trio.fail_after(WAIT):
            while chunk := await self.proc.stdout.receive_some():
                out += chunk
            assert await self.proc.wait() == 0
        self._buffer = b""
        return out


@asynccontextmanager
async def curl(url: str, *headers: str, token: str | None = TOKEN) -> AsyncIterator[Stream]:
    """``curl -sS -N URL`` with ``headers`` (``"Name: value"``) and the bearer ``token`` (the
    tests' API token unless told; None: none); killed when the block ends."""
    args = ["curl", "-sS", "-N", url]
    if token is not None:
        headers = (f"Authorization: Bearer {token}", *headers)
    for header in headers:
        args += ["-H", header]
    proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
    try:
        yield Stream(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
