"""Waiting for a volume: until it is where it was asked to be, or until its rebuilds are done,
showing the way there on stderr (:mod:`lhtrio.admin.progress`).

The verbs poll the API (the volume, and for rebuilds its replicas and engines: ``describe``)
rather than follow a watch stream: one volume's few documents, read every half second at most,
are cheaper to reason about than a stream of every volume's changes, and a poll needs nothing
to resume after a dropped connection. A rebuild's figures come from the engine's
``status.rebuildStatus``, which its node reads every second while a replica rebuilds.

**Ctrl-C** (:func:`interruptible`) stops waiting, never the operation: it goes on in the
cluster, and the message says the exact command that follows it; the exit code is 130.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import click

from lhtrio.admin.client import ApiClient, ApiError, Exit
from lhtrio.admin.documents import conditions, describe, dig
from lhtrio.admin.progress import Display

__all__ = [
    "INTERRUPTED",
    "described",
    "follow_rebuilds",
    "interruptible",
    "ticket_judged",
    "volume_path",
    "wait_for",
    "wait_gone",
    "where",
]

#: Seconds between two looks at a volume being waited for: the first soon, then less often.
FIRST_POLL: Final = 0.05
MAX_POLL: Final = 1.0
#: Seconds between two looks at a volume's rebuilds (its engine's status changes every second).
REBUILD_POLL: Final = 0.5
#: The exit code of a wait ended by Ctrl-C (128 + SIGINT, what a shell shows for it).
INTERRUPTED: Final = 130
#: The attachment ticket ``volume attach`` holds: the API's default ``attachmentID``.
API_TICKET: Final = "lhtrio-api"

Document = dict[str, Any]


def volume_path(name: str) -> str:
    return f"/v1/volumes/{name}"


def where(volume: Document) -> str:
    """``attached on node n1, degraded``: the volume's state as the API reports it."""
    text = str(dig(volume, "status", "state") or "unknown")
    if node := dig(volume, "status", "currentNodeID"):
        text += f" on node {node}"
    if (robustness := dig(volume, "status", "robustness")) not in ("", "unknown"):
        text += f", {robustness}"
    if dig(volume, "metadata", "deletionTimestamp") and not text.startswith("deleting"):
        text += ", being deleted"
    return text


@contextmanager
def interruptible(what: str, follow: str) -> Iterator[None]:
    """Ctrl-C in the block: ``what`` goes on; say so and how to ``follow`` it; exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: {what} goes on in the cluster; follow it with: {follow}", err=True
        )
        raise SystemExit(INTERRUPTED) from None


def described(api: ApiClient, name: str, volume: Document | None = None) -> Document:
    """The volume with its replicas and engine (``lhtrio.admin.documents.describe``)."""
    if volume is None:
        volume = api.get(volume_path(name))
    replicas = api.get("/v1/replicas", volume=name)
    engines = api.get("/v1/engines", volume=name)
    return describe(volume, replicas, engines)


def ticket_judged(api: ApiClient, name: str, ticket_id: str = API_TICKET) -> bool:
    """Whether the manager judged ticket ``ticket_id`` of volume ``name`` satisfied at the
    ticket's current generation. A volume left attached on a node for a ticket removed just
    before is not yet this ticket's: a decision taken before the ticket was seen may still
    detach it (and the next attach it again)."""
    attachment = api.get(f"/v1/volumeattachments/{name}")
    generation = dig(attachment, "spec", "attachmentTickets", ticket_id, "generation", default=None)
    judged = dig(attachment, "status", "attachmentTicketStatuses", ticket_id, default={})
    return (
        generation is not None
        and dig(judged, "generation", default=None) == generation
        and dig(judged, "satisfied") is True
    )


def wait_for(
    api: ApiClient,
    name: str,
    goal: str,
    done: Callable[[Document], bool],
    *,
    timeout: float,
    display: Display,
) -> Document:
    """The volume once ``done(volume)`` holds (``goal`` says what that is), polling it; each
    state it is seen in goes to ``display``. :class:`ApiError` (exit 1) after ``timeout``
    seconds, naming the state it is in and its conditions; 404 if it disappears."""
    deadline = time.monotonic() + timeout
    interval = FIRST_POLL
    while True:
        volume: Document = api.get(volume_path(name))
        display.status(f"volume {name}: {where(volume)}")
        if done(volume):
            return volume
        left = deadline - time.monotonic()
        if left <= 0:
            raise ApiError(
                f"volume {name} is not {goal} after {timeout:g} s: it is {where(volume)}; "
                f"conditions: {conditions(volume)}",
                Exit.ERROR,
            )
        time.sleep(min(interval, left))
        interval = min(2 * interval, MAX_POLL)


def wait_gone(api: ApiClient, name: str, timeout: float, display: Display) -> None:
    """Return once the volume is gone (404), else :class:`ApiError` after ``timeout``."""
    try:
        wait_for(api, name, "deleted", lambda _: False, timeout=timeout, display=display)
    except ApiError as exc:
        if exc.exit_code is not Exit.NOT_FOUND:
            raise
    display.status(f"volume {name}: deleted")


def _rebuilding(view: Document) -> dict[str, Document]:
    return {
        replica["name"]: replica
        for replica in view["replicas"]
        if dig(replica, "rebuild", "isRebuilding") is True
    }


def _label(replica: Document) -> str:
    node = f" on {replica['node']}" if replica["node"] else ""
    return f"replica {replica['name']}{node}"


def follow_rebuilds(api: ApiClient, name: str, timeout: float, display: Display) -> Document:
    """Follow volume ``name`` until it is healthy with no rebuild running: each running rebuild
    a bar, each finished one a line; the volume's state (``degraded``, waiting for a rebuild to
    start) as the status. The volume described at the end. :class:`ApiError` (exit 1) when it
    cannot become healthy while waiting (detached: rebuilds run only while attached; faulted:
    nothing left to rebuild from) or after ``timeout`` seconds (0: no limit)."""
    deadline = time.monotonic() + timeout if timeout else None
    shown: dict[str, Document] = {}
    while True:
        view = described(api, name)
        volume = view["volume"]
        running = _rebuilding(view)
        state = dig(volume, "status", "state")
        robustness = dig(volume, "status", "robustness")
        rw = sum(1 for replica in view["replicas"] if replica["mode"] == "RW")
        wanted = dig(volume, "spec", "numberOfReplicas", default=0)
        short = robustness == "degraded" and not running and rw < wanted
        display.status(
            f"volume {name}: {where(volume)}{', waiting for a rebuild to start' if short else ''}"
        )
        for replica_name, replica in running.items():
            rebuild = replica["rebuild"]
            display.bar(
                replica_name,
                _label(replica),
                done=int(dig(rebuild, "doneBytes", default=0)),
                total=int(dig(rebuild, "totalBytes", default=0)),
                state=str(dig(rebuild, "state") or "rebuilding"),
            )
            shown[replica_name] = replica
        by_name = {replica["name"]: replica for replica in view["replicas"]}
        for replica_name in sorted(set(shown) - set(running)):
            _finished(display, shown.pop(replica_name), by_name.get(replica_name))
        if robustness == "healthy" and not running:
            return view
        if state not in ("attached", "attaching") or dig(volume, "metadata", "deletionTimestamp"):
            raise ApiError(
                f"volume {name} is {where(volume)}: replicas are rebuilt only while it is "
                f"attached; attach it (lhtrio volume attach {name} --node NODE)",
                Exit.ERROR,
            )
        if robustness == "faulted":
            raise ApiError(
                f"volume {name} is faulted: no replica is healthy to rebuild from; salvage it "
                f"from its failed replicas (lhtrio volume salvage {name} REPLICA..., names "
                f"from lhtrio volume get {name})",
                Exit.ERROR,
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise ApiError(
                f"volume {name} is not healthy after {timeout:g} s: it is {where(volume)}; "
                f"conditions: {conditions(volume)}",
                Exit.ERROR,
            )
        time.sleep(REBUILD_POLL)


def _finished(display: Display, before: Document, now: Document | None) -> None:
    label = _label(before)
    if now is None:
        display.done(before["name"], f"{label}: gone (removed while rebuilt)", ok=False)
        return
    rebuild = now["rebuild"]
    if dig(rebuild, "state") == "failed":
        why = dig(rebuild, "error") or "no reason given"
        display.done(now["name"], f"{label}: rebuild failed: {why}", ok=False)
    else:
        display.done(now["name"], f"{label}: rebuilt, {now['mode'] or 'not linked'}", ok=True)
