"""What the RPC client keeps per request in flight: sequence numbers and submitted batches.

A :class:`Pending` batch is completed by the connection's reader (:meth:`Pending.deliver`, one
reply at a time) or broken by the connection (:meth:`Pending.break_off`); its submitter waits for
it or has a callback run when it completes (:class:`lhtrio.net.client.RpcClient.submit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import outcome
import trio

from lhtrio.errors import ConnectionLostError, LhtrioError, error_from_code
from lhtrio.wire import Error, Message, Reply

__all__ = ["Pending", "SeqSource"]


class SeqSource:
    """Sequence numbers, possibly shared by several connections.

    Connections that share a source never use the same number, so one batch of frames, encoded
    once, can be sent on all of them (:meth:`RpcClient.submit_encoded`): an engine packs a write
    batch once for all its replicas.
    """

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 1

    def take(self, count: int) -> int:
        """The first of ``count`` fresh consecutive numbers."""
        first = self.next
        self.next = first + count
        return first


class Pending:
    """A submitted batch of requests (:meth:`RpcClient.submit`): :meth:`wait` for its replies, or
    have ``callback`` called with it once they are all in (or the connection broke).

    Several batches can be submitted to several connections and waited for afterwards, in one
    task. With a callback nobody waits at all: the reader (task or reactor) that receives the last
    reply runs it, which is how an engine completes a write on every replica without a task
    switch (:mod:`lhtrio.engine.volume`). ``owner`` is free for the submitter's bookkeeping.

    Once done: ``replies`` holds the raw replies in request order (``Error`` messages as they
    came), ``error`` the ConnectionLostError if the connection broke first; :meth:`result` is the
    friendlier form.
    """

    __slots__ = (
        "_callback",
        "_first",
        "_missing",
        "_table",
        "_task",
        "done",
        "error",
        "owner",
        "replies",
    )

    def __init__(
        self,
        table: dict[int, Any],
        first: int,
        count: int,
        callback: Callable[[Pending], None] | None = None,
    ) -> None:
        self._table = table  # the connection's pending calls, by sequence number
        self._first = first
        self._missing = count
        self.replies: list[Any] = [None] * count
        self._task: trio.lowlevel.Task | None = None
        self.error: ConnectionLostError | None = None
        self._callback = callback
        self.done = not count
        self.owner: Any = None

    def deliver(self, seq: int, reply: Message) -> None:
        """(The connection's reader) the reply to request ``seq`` of this batch came."""
        self.replies[seq - self._first] = reply
        self._missing -= 1
        if not self._missing:
            self._finish()

    def break_off(self, error: ConnectionLostError) -> None:
        """(The connection) it broke before every reply came."""
        if not self.done:
            self.error = error
            self._finish()

    def _finish(self) -> None:
        self.done = True
        if self._task is not None:
            trio.lowlevel.reschedule(self._task, outcome.Value(None))
            self._task = None
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(self)

    def forget(self) -> None:
        """Stop caring: late replies are dropped and the callback is not called."""
        self._callback = None
        self.done = True
        pending = self._table
        for seq in range(self._first, self._first + len(self.replies)):
            pending.pop(seq, None)

    def result(self) -> list[Reply | LhtrioError]:
        """The replies of a done batch in request order, an error reply as its exception *in the
        list*; raises ConnectionLostError if the connection broke first."""
        if self.error is not None:
            raise self.error
        return [
            error_from_code(r.code, r.message) if r.__class__ is Error else r for r in self.replies
        ]

    async def wait(self) -> list[Reply | LhtrioError]:
        """Wait for :meth:`result`.

        Cancellation: the batch is forgotten (late replies are dropped); its requests may or may
        not have been executed.
        """
        if not self.done:
            self._task = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._task = None
                self.forget()
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.checkpoint()
        return self.result()
