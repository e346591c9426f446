"""Tables of the volumes' parts and of what happened to them: replicas, engines, attachment
tickets and events (no I/O; documents read defensively, as in :mod:`lhtrio.admin.documents`).

Each kind has its :class:`~lhtrio.admin.documents.Columns` (a list, and the rows ``-w`` prints)
and, for ``get``, a description of one object. :data:`COLUMNS` finds a kind's columns by the
``kind`` the API writes in each document.
"""

from __future__ import annotations

import time
from typing import Final

from lhtrio.admin.documents import (
    NODES,
    SETTINGS,
    VOLUMES,
    Columns,
    Document,
    conditions,
    dig,
    rebuild_text,
    size_text,
)
from lhtrio.errors import LhtrioError
from lhtrio.models.times import parse_time
from lhtrio.output import format_age, table

__all__ = [
    "ATTACHMENTS",
    "COLUMNS",
    "ENGINES",
    "EVENTS",
    "REPLICAS",
    "age",
    "event_order",
    "render_attachment",
    "render_engine",
    "render_replica",
]


def age(stamp: object, *, now: float | None = None) -> str:
    """``3m``: how long ago RFC 3339 time ``stamp`` was; ``""`` for none, as given if unreadable."""
    if not stamp:
        return ""
    try:
        when = parse_time(str(stamp))
    except (LhtrioError, ValueError):
        return str(stamp)
    seconds = (time.time() if now is None else now) - when.timestamp()
    return format_age(max(0.0, seconds))


def _yes(flag: object) -> str:
    return "yes" if flag is True else "no"


# --- replicas -------------------------------------------------------------------------------


def _address(document: Document) -> str:
    ip, port = dig(document, "status", "ip"), dig(document, "status", "port")
    return f"{ip}:{port}" if ip and port else ""


REPLICAS: Final = Columns(
    ("NAME", "VOLUME", "NODE", "DESIRED", "STATE", "ADDRESS", "FAILED"),
    lambda replica: [
        dig(replica, "metadata", "name"),
        dig(replica, "spec", "volumeName"),
        dig(replica, "spec", "nodeID"),
        dig(replica, "spec", "desireState"),
        dig(replica, "status", "currentState"),
        _address(replica),
        _yes(bool(dig(replica, "spec", "failedAt", default=None))),
    ],
)


def render_replica(replica: Document) -> str:
    spec = dig(replica, "spec", default={})
    lines = [
        f"name        {dig(replica, 'metadata', 'name')}",
        f"volume      {dig(spec, 'volumeName')}",
        f"size        {size_text(dig(spec, 'volumeSize'))}",
        f"node        {dig(spec, 'nodeID')}",
        f"disk        {dig(spec, 'diskPath')} ({dig(spec, 'diskID')})",
        f"directory   {dig(spec, 'dataDirectoryName')}",
        f"desired     {dig(spec, 'desireState')}",
        f"state       {dig(replica, 'status', 'currentState')}",
        f"address     {_address(replica)}",
        f"failed      {dig(spec, 'failedAt') or 'no'}",
        f"healthy at  {dig(spec, 'healthyAt')}",
        f"rebuilds    {dig(spec, 'rebuildRetryCount', default=0)} retried",
        f"conditions  {conditions(replica)}",
    ]
    return "\n".join(lines)


# --- engines --------------------------------------------------------------------------------


def _modes(engine: Document) -> str:
    """``RW:2 WO:1``: how many replicas the engine has in each mode."""
    counts: dict[str, int] = {}
    modes = dig(engine, "status", "replicaModeMap", default={})
    for mode in modes.values() if isinstance(modes, dict) else ():
        counts[str(mode)] = counts.get(str(mode), 0) + 1
    return " ".join(f"{mode}:{n}" for mode, n in sorted(counts.items()))


def _rebuilding(engine: Document) -> str:
    rebuilds = dig(engine, "status", "rebuildStatus", default={})
    if not isinstance(rebuilds, dict):
        return ""
    return ", ".join(
        f"{name} {dig(r, 'progress', default=0)}%"
        for name, r in sorted(rebuilds.items())
        if dig(r, "isRebuilding") is True
    )


ENGINES: Final = Columns(
    ("NAME", "VOLUME", "NODE", "STATE", "ENDPOINT", "REPLICAS", "REBUILDING"),
    lambda engine: [
        dig(engine, "metadata", "name"),
        dig(engine, "spec", "volumeName"),
        dig(engine, "spec", "nodeID"),
        dig(engine, "status", "currentState"),
        dig(engine, "status", "endpoint"),
        _modes(engine),
        _rebuilding(engine),
    ],
)


def render_engine(engine: Document) -> str:
    spec, status = dig(engine, "spec", default={}), dig(engine, "status", default={})
    lines = [
        f"name        {dig(engine, 'metadata', 'name')}",
        f"volume      {dig(spec, 'volumeName')}",
        f"size        {size_text(dig(spec, 'volumeSize'))}",
        f"node        {dig(spec, 'nodeID')}",
        f"desired     {dig(spec, 'desireState')}",
        f"state       {dig(status, 'currentState')}",
        f"endpoint    {dig(status, 'endpoint')}",
        f"salvage     {'requested' if dig(spec, 'salvageRequested') is True else 'no'}",
        f"conditions  {conditions(engine)}",
        "",
    ]
    wanted = dig(spec, "replicaAddressMap", default={})
    modes = dig(status, "replicaModeMap", default={})
    rebuilds = dig(status, "rebuildStatus", default={})
    names = sorted({*_keys(wanted), *_keys(modes), *_keys(rebuilds)})
    rows = [
        [name, dig(wanted, name), dig(modes, name), rebuild_text(dig(rebuilds, name, default={}))]
        for name in names
    ]
    lines.append(table(["REPLICA", "ADDRESS", "MODE", "REBUILD"], rows))
    return "\n".join(lines).rstrip()


def _keys(value: object) -> list[str]:
    return [str(k) for k in value] if isinstance(value, dict) else []


# --- attachment tickets ---------------------------------------------------------------------


def _tickets(attachment: Document) -> list[tuple[str, Document, Document]]:
    tickets = dig(attachment, "spec", "attachmentTickets", default={})
    statuses = dig(attachment, "status", "attachmentTicketStatuses", default={})
    if not isinstance(tickets, dict):
        return []
    return [
        (name, ticket, dig(statuses, name, default={})) for name, ticket in sorted(tickets.items())
    ]


def _satisfied(attachment: Document) -> str:
    tickets = _tickets(attachment)
    done = sum(1 for _, _, status in tickets if dig(status, "satisfied") is True)
    return f"{done}/{len(tickets)}"


ATTACHMENTS: Final = Columns(
    ("NAME", "VOLUME", "TICKETS", "SATISFIED", "NODES"),
    lambda attachment: [
        dig(attachment, "metadata", "name"),
        dig(attachment, "spec", "volume"),
        str(len(_tickets(attachment))),
        _satisfied(attachment),
        ",".join(sorted({str(dig(t, "nodeID")) for _, t, _ in _tickets(attachment)} - {""})),
    ],
)


def render_attachment(attachment: Document) -> str:
    lines = [
        f"name        {dig(attachment, 'metadata', 'name')}",
        f"volume      {dig(attachment, 'spec', 'volume')}",
        "",
    ]
    rows = [
        [
            name,
            dig(ticket, "type"),
            dig(ticket, "nodeID"),
            _yes(dig(status, "satisfied")),
            "yes" if dig(ticket, "parameters", "disableFrontend") is True else "no",
            str(dig(ticket, "generation", default=0)),
        ]
        for name, ticket, status in _tickets(attachment)
    ]
    header = ["TICKET", "TYPE", "NODE", "SATISFIED", "NO-FRONTEND", "GENERATION"]
    lines.append(table(header, rows))
    return "\n".join(lines).rstrip()


# --- events ---------------------------------------------------------------------------------


def _object(event: Document) -> str:
    kind, name = dig(event, "involvedObject", "kind"), dig(event, "involvedObject", "name")
    return f"{kind.lower()}/{name}" if kind else str(name)


EVENTS: Final = Columns(
    ("LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"),
    lambda event: [
        age(dig(event, "lastTimestamp")),
        dig(event, "type"),
        dig(event, "reason"),
        _object(event),
        str(dig(event, "count", default=1)),
        dig(event, "message"),
    ],
)


def event_order(event: Document) -> tuple[str, int]:
    """Events oldest first, as ``GET /v1/events`` lists them: last seen, then the store's
    order (the time has a second's grain)."""
    version = str(dig(event, "metadata", "resourceVersion"))
    return str(dig(event, "lastTimestamp")), int(version) if version.isdigit() else 0


#: The columns of each kind, by the ``kind`` the API writes in its documents.
COLUMNS: Final[dict[str, Columns]] = {
    "Volume": VOLUMES,
    "Node": NODES,
    "Setting": SETTINGS,
    "Replica": REPLICAS,
    "Engine": ENGINES,
    "VolumeAttachment": ATTACHMENTS,
    "Event": EVENTS,
}
