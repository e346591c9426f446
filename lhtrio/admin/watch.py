"""``-w`` / ``--watch``: follow a collection's watch stream and print each change, as
``kubectl get -w`` does (``docs/cli.md``, "Watching").

* :class:`WatchState` (no I/O) turns the stream's messages (:mod:`lhtrio.admin.sse`; their shape
  is ``docs/api.md``'s "Watch streams") into the changes to print, keeping what it needs to go
  on after the connection drops: the revision of the last message with an ``id`` (sent back as
  ``Last-Event-ID``, so nothing is missed or told twice) and the objects last printed. An
  ``ERROR`` 410 (the revision is gone) means listing again: the new list is compared with what
  was printed, so only the objects that changed are printed again, and those gone are printed as
  deleted.
* :func:`follow` is the loop: open the stream, feed the state, print; on a dropped connection,
  a silent one (no keep-alive for a minute), a stream the API ended (410, a node stopping) or a
  503, open it again after a pause that grows to 5 s. The API unreachable for
  :data:`GIVE_UP` seconds in a row ends the watch with its error (exit 5); unreachable (or
  refusing) the first time, at once. Ctrl-C is left to the verb
  (:func:`watch_until_interrupted`: exit 130, quietly).
* :class:`Printer` prints: a table whose widths are those of the first list (one row per
  change, the header once), one JSON document per line (``{"type", "object"}``: Kubernetes'
  watch event), or YAML documents separated by ``---``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final

import attrs
import click

from lhtrio.admin.client import ApiClient, ApiError, Exit
from lhtrio.admin.documents import Columns, Document, dig
from lhtrio.admin.sse import Message, SseError, SseParser
from lhtrio.output import dump_yaml

__all__ = [
    "GIVE_UP",
    "Change",
    "Printer",
    "WatchError",
    "WatchState",
    "follow",
    "watch_option",
    "watch_until_interrupted",
]

#: Seconds the API may stay unreachable, in a row, before a watch gives up (exit 5).
GIVE_UP: Final = 60.0
#: The pause before opening a stream again: the first, and the longest.
FIRST_PAUSE: Final = 0.2
MAX_PAUSE: Final = 5.0


class WatchError(Exception):
    """The stream said something a watch cannot go on from (an ERROR other than 410 Gone, or
    a message that is not a watch event)."""


@attrs.frozen
class Change:
    """One change to print: ``type`` ``ADDED``, ``MODIFIED`` or ``DELETED``; ``listing`` while
    it belongs to the first list (before the stream's first ``BOOKMARK``)."""

    type: str
    object: Document
    listing: bool = False


@attrs.define
class WatchState:
    """What a watch has seen (see the module docstring); ``name`` keeps one object's changes."""

    name: str | None = None
    revision: str | None = None
    known: dict[str, Document] = attrs.field(factory=dict)
    listing: bool = True  # until the BOOKMARK after a list
    first: bool = True  # the first list (its rows set the table's widths)
    relisted: set[str] | None = None  # the names seen by a list made again

    def reconnecting(self) -> None:
        """The stream ended or broke: resume from :attr:`revision`, or list again if the first
        list did not end."""
        if self.revision is None:
            self.relist()

    def relist(self) -> None:
        self.revision = None
        self.listing = True
        self.relisted = set() if not self.first or self.known else None

    def message(self, message: Message) -> tuple[list[Change], bool]:
        """The changes ``message`` makes to print, and whether it ended a list (a table's
        first rows are all there)."""
        event = _event(message)
        kind, document = event["type"], event["object"]
        if kind == "BOOKMARK":
            self.revision = message.id or str(dig(document, "metadata", "resourceVersion"))
            return self._listed(), True
        if kind == "ERROR":
            if dig(document, "code", default=0) == 410:
                self.relist()
                return [], False
            raise WatchError(
                f"the watch stream ended with an error: {dig(document, 'code')} "
                f"{dig(document, 'reason')}: {dig(document, 'message')}"
            )
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise WatchError(f"the watch stream sent an event of unknown type {kind!r}")
        if message.id is not None:
            self.revision = message.id
        name = str(dig(document, "metadata", "name"))
        if self.name is not None and name != self.name:
            return [], False
        return self._change(kind, name, document), False

    def _change(self, kind: str, name: str, document: Document) -> list[Change]:
        if kind == "DELETED":
            self.known.pop(name, None)
            return [Change(kind, document)]
        if self.listing and self.relisted is not None:
            self.relisted.add(name)
            before = self.known.get(name)
            if before is not None and _version(before) == _version(document):
                return []  # unchanged since it was printed
            kind = "ADDED" if before is None else "MODIFIED"
        self.known[name] = document
        return [Change(kind, document, listing=self.listing and self.first)]

    def _listed(self) -> list[Change]:
        out = []
        if self.listing and self.relisted is not None:
            gone = sorted(set(self.known) - self.relisted)
            out = [Change("DELETED", self.known.pop(name)) for name in gone]
        self.listing, self.relisted = False, None
        self.first = False
        return out


def _version(document: Document) -> str:
    return str(dig(document, "metadata", "resourceVersion"))


def _event(message: Message) -> dict[str, Any]:
    try:
        event = json.loads(message.data)
    except ValueError:
        raise WatchError(
            f"the watch stream sent data that is not JSON: {message.data[:80]!r}"
        ) from None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise WatchError(f"the watch stream sent a message that is not an event: {event!r:.80}")
    event.setdefault("type", message.event)
    return event


@attrs.define
class Printer:
    """Prints changes on stdout as ``output`` says (``table``, ``json``, ``yaml``)."""

    output: str
    columns: Columns
    order: Callable[[Document], Any] | None = None  # of the first list's rows (else as sent)
    _widths: list[int] | None = None
    _pending: list[Document] = attrs.field(factory=list)

    def print(self, changes: list[Change], listed: bool) -> None:
        for change in changes:
            if self.output == "json":
                event = {"type": change.type, "object": change.object}
                click.echo(json.dumps(event, sort_keys=True, separators=(",", ":")))
            elif self.output == "yaml":
                click.echo("---\n" + dump_yaml({"type": change.type, "object": change.object}))
            elif change.listing and self._widths is None:
                self._pending.append(change.object)
            else:
                self._row(self.columns.row(change.object))
        if listed and self._widths is None and self.output == "table":
            self._start()

    def _start(self) -> None:
        listed = self._pending if self.order is None else sorted(self._pending, key=self.order)
        rows = [list(self.columns.header), *(self.columns.row(d) for d in listed)]
        self._widths = [max(len(row[i]) for row in rows) for i in range(len(self.columns.header))]
        for row in rows:
            self._row(row)
        self._pending = []

    def _row(self, row: list[str]) -> None:
        if self._widths is None:
            self._start()
        widths = self._widths or []
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join(cells).rstrip())


def follow(
    api: ApiClient,
    path: str,
    params: dict[str, str],
    state: WatchState,
    emit: Callable[[list[Change], bool], None],
    *,
    give_up: float = GIVE_UP,
) -> None:
    """Follow ``path``'s watch stream (``?watch=true`` and ``params``) until interrupted; the
    changes go to ``emit`` (see the module docstring for what is tried again)."""
    pause, failing_since, opened = FIRST_PAUSE, None, False
    while True:
        headers = {"Last-Event-ID": state.revision} if state.revision is not None else {}
        parser = SseParser(last_id=state.revision)
        try:
            with api.stream(path, {**params, "watch": "true"}, headers) as chunks:
                failing_since, opened = None, True
                for chunk in chunks:
                    for message in parser.feed(chunk):
                        emit(*state.message(message))
                        pause = FIRST_PAUSE
        except ApiError as exc:
            if not opened or (exc.exit_code is not Exit.UNREACHABLE and exc.status != 503):
                raise  # (not there at first: a wrong --api, most likely)
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= give_up:
                raise
        except SseError:
            pass  # the connection is dropped and opened again
        state.reconnecting()
        time.sleep(pause)
        pause = min(2 * pause, MAX_PAUSE)


def watch_until_interrupted(
    api: ApiClient,
    path: str,
    params: dict[str, str],
    *,
    output: str,
    columns: Columns,
    name: str | None = None,
    order: Callable[[Document], Any] | None = None,
) -> None:
    """:func:`follow` printing with a :class:`Printer` (``order``: of the first list's rows);
    Ctrl-C ends it with exit code 130 and nothing printed (as ``kubectl get -w``); a stream
    that fails is an :class:`ApiError`."""
    printer = Printer(output, columns, order)
    try:
        follow(api, path, params, WatchState(name=name), printer.print)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except WatchError as exc:
        raise ApiError(f"{exc}; watch again (the API may have restarted)", Exit.ERROR) from None


def watch_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-w`` / ``--watch``: after the list, a row (or document) for each change, until Ctrl-C."""
    return click.option(
        "-w",
        "--watch",
        is_flag=True,
        help="After the list, print each change as it happens, until Ctrl-C (exit code 130).",
    )(func)
