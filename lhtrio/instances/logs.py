"""Per-instance logs: every log record knows which instance emitted it; the last lines are kept.

An instance runs as trio tasks, so "which instance" is a context variable
(:data:`current_instance`) set in the instance's task: trio copies the context into every task it
spawns and into worker threads, so all of an instance's code — its replica links, its NBD
connections' I/O, its fsync threads — logs with the instance's name without passing it around.

:class:`InstanceLogs` is a :mod:`logging` handler on the node's root logger: it stamps
``record.instance`` and keeps the last ``keep`` formatted lines per instance, numbered, so a client
can follow them (``lhtrio im log --follow``) by asking for the lines after the last one it saw.
Records may come from worker threads; waking the followers is handed to the trio thread.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import threading

import trio

__all__ = ["current_instance", "InstanceLogs"]

current_instance: contextvars.ContextVar[str] = contextvars.ContextVar(
    "lhtrio_instance", default=""
)


class _Stamp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = current_instance.get()
        return True


class InstanceLogs(logging.Handler):
    """The last ``keep`` lines of every instance; install with :meth:`install`."""

    def __init__(self, keep: int = 1000) -> None:
        super().__init__()
        self.keep = keep
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._lines: dict[str, collections.deque[tuple[int, str]]] = {}
        self._seq = 0
        self._guard = threading.Lock()
        self._changed = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: int | None = None
        self._stamp = _Stamp()
        self._saved: tuple[int, list[tuple[logging.Handler, int]]] = (logging.WARNING, [])

    def install(self, level: int = logging.INFO) -> None:
        """Attach to the root logger, keeping records from ``level`` up (the console handlers keep
        their own threshold); call from the trio thread that serves the node."""
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()
        root = logging.getLogger()
        self._saved = (root.level, [(handler, handler.level) for handler in root.handlers])
        for handler in root.handlers:
            if handler.level == logging.NOTSET:
                handler.setLevel(root.level)
            handler.addFilter(self._stamp)
        self.setLevel(level)
        root.addHandler(self)
        root.setLevel(min(root.level, level))

    def uninstall(self) -> None:
        """Detach, and give the root logger and its handlers back their levels."""
        root = logging.getLogger()
        root.removeHandler(self)
        level, handlers = self._saved
        for handler, handler_level in handlers:
            handler.removeFilter(self._stamp)
            handler.setLevel(handler_level)
        root.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "instance", "") or current_instance.get()
        if not name:
            return
        try:
            line = self.format(record)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)
            return
        with self._guard:
            self._seq += 1
            lines = self._lines.get(name)
            if lines is None:
                lines = self._lines[name] = collections.deque(maxlen=self.keep)
            lines.append((self._seq, line))
        if threading.get_ident() == self._thread:
            self._wake()
        elif self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def lines(
        self, name: str, *, after: int = 0, limit: int | None = None
    ) -> list[tuple[int, str]]:
        """Lines of ``name`` numbered above ``after``, oldest first (the last ``limit``)."""
        with self._guard:
            found = [item for item in self._lines.get(name, ()) if item[0] > after]
        return found[-limit:] if limit else found

    async def wait(self, name: str, after: int, patience: float) -> list[tuple[int, str]]:
        """:meth:`lines`, waiting up to ``patience`` seconds for at least one."""
        with trio.move_on_after(patience):
            while not (found := self.lines(name, after=after)):
                await self._changed.wait()
            return found
        return []

    def forget(self, name: str) -> None:
        with self._guard:
            self._lines.pop(name, None)
