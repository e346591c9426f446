"""Reading the API's documents for the operator: the composed view of a volume, and tables.

The API answers store documents (Kubernetes-shaped, Longhorn's keys: ``docs/api.md``). These
functions read them defensively (a key missing from an older or newer server reads as empty),
never change them, and do no I/O.

**A volume described** (``lhtrio volume get NAME -o json``, :func:`describe`) is one stable
document composed of three answers::

    {"volume": <the Volume document as received>,
     "engine": "db-1-e-0",                        # "" while the volume has no engine
     "endpoint": "nbd://127.0.0.11:10809/db-1",   # the engine's status.endpoint; "" if not served
     "replicas": [{"name": "db-1-r-0a1b2c3d", "node": "n1", "mode": "RW",
                   "state": "running", "failed": false, "rebuild": {}}, ...]}

``replicas`` are the volume's Replica objects sorted by name: ``node`` is where it is placed
(``spec.nodeID``), ``mode`` the engine's view (``RW``, ``WO``, ``ERR``; ``""`` when the engine
does not use it or there is no engine), ``state`` the replica instance's ``status.currentState``,
``failed`` whether the manager marked it failed (``spec.failedAt`` set), ``rebuild`` its entry of
the engine's ``status.rebuildStatus`` (``{}`` when it has none: ``{"isRebuilding", "progress",
"state", "error", "fromReplicaAddress", "doneBytes", "totalBytes"}``). The engine is the one on
the volume's current node (else the first by name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs

from lhtrio.output import table
from lhtrio.units import format_size, human_size

__all__ = [
    "NODES",
    "SETTINGS",
    "VOLUMES",
    "Columns",
    "Document",
    "conditions",
    "describe",
    "dig",
    "rebuild_text",
    "render_description",
    "render_nodes",
    "render_node",
    "render_settings",
    "render_snapshots",
    "render_volumes",
    "size_text",
    "space_text",
]

Document = dict[str, Any]


@attrs.frozen
class Columns:
    """A kind's table: its ``header`` and each object's ``row`` (as many cells, text). A list
    renders every object of a collection; ``lhtrio ... ls -w`` prints one row per change."""

    header: tuple[str, ...]
    row: Callable[[Document], list[str]]

    def render(self, collection: Document) -> str:
        """The table of ``collection`` (``{"data": [document, ...]}``)."""
        return table(list(self.header), [self.row(d) for d in dig(collection, "data", default=[])])


def dig(document: object, *keys: str, default: Any = "") -> Any:
    """``document[k1][k2]...``, or ``default`` where a key is missing or a value not an object."""
    value = document
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def size_text(value: object) -> str:
    """A size of the API (bytes, a string or a number) as ``1Gi``; anything else as given."""
    try:
        return format_size(int(str(value)))
    except ValueError:
        return str(value)


def space_text(value: object) -> str:
    """Space (free, used: rarely whole units) for reading: ``79.2 GiB``; anything else as
    given."""
    try:
        return human_size(int(str(value)))
    except ValueError:
        return str(value)


def conditions(document: Document) -> str:
    """``Scheduled=False (ReplicaSchedulingFailure: no node ...); Ready=True``, or ``none``."""
    shown = []
    for condition in dig(document, "status", "conditions", default=[]):
        text = f"{dig(condition, 'type')}={dig(condition, 'status')}"
        why = ": ".join(p for p in (dig(condition, "reason"), dig(condition, "message")) if p)
        shown.append(f"{text} ({why})" if why else text)
    return "; ".join(shown) or "none"


def _yes(flag: object) -> str:
    return "yes" if flag is True else "no"


# --- volumes --------------------------------------------------------------------------------


VOLUMES: Final = Columns(
    ("NAME", "SIZE", "REPLICAS", "STATE", "ROBUSTNESS", "NODE"),
    lambda volume: [
        dig(volume, "metadata", "name"),
        size_text(dig(volume, "spec", "size")),
        str(dig(volume, "spec", "numberOfReplicas")),
        dig(volume, "status", "state"),
        dig(volume, "status", "robustness"),
        dig(volume, "status", "currentNodeID"),
    ],
)
render_volumes: Final = VOLUMES.render


def _engine_of(volume: Document, engines: list[Document]) -> Document:
    node = dig(volume, "status", "currentNodeID")
    ordered = sorted(
        engines, key=lambda e: (dig(e, "spec", "nodeID") != node, dig(e, "metadata", "name"))
    )
    return ordered[0] if ordered else {}


def describe(volume: Document, replicas: Document, engines: Document) -> Document:
    """The volume, its replicas (``GET /v1/replicas?volume=``) and engines (``GET
    /v1/engines?volume=``) as one document (the module docstring has its shape)."""
    engine = _engine_of(volume, list(dig(engines, "data", default=[])))
    modes = dig(engine, "status", "replicaModeMap", default={})
    rebuilds = dig(engine, "status", "rebuildStatus", default={})
    listed = sorted(dig(replicas, "data", default=[]), key=lambda r: dig(r, "metadata", "name"))
    return {
        "volume": volume,
        "engine": dig(engine, "metadata", "name"),
        "endpoint": dig(engine, "status", "endpoint"),
        "replicas": [
            {
                "name": (name := dig(replica, "metadata", "name")),
                "node": dig(replica, "spec", "nodeID"),
                "mode": modes.get(name, "") if isinstance(modes, dict) else "",
                "state": dig(replica, "status", "currentState"),
                "failed": bool(dig(replica, "spec", "failedAt", default=None)),
                "rebuild": _rebuild_of(rebuilds, name),
            }
            for replica in listed
        ],
    }


def _rebuild_of(rebuilds: object, name: str) -> Document:
    rebuild = rebuilds.get(name) if isinstance(rebuilds, dict) else None
    return dict(rebuild) if isinstance(rebuild, dict) else {}


def rebuild_text(rebuild: object) -> str:
    """``syncing 37% (379.0 MiB of 1.0 GiB)``, or ``done``, ``failed: why``; ``""`` for none."""
    if not isinstance(rebuild, dict) or not rebuild:
        return ""
    state = str(dig(rebuild, "state") or "unknown")
    if state == "failed":
        return f"failed: {dig(rebuild, 'error')}" if dig(rebuild, "error") else "failed"
    if dig(rebuild, "isRebuilding") is not True:
        return state
    done, total = dig(rebuild, "doneBytes", default=0), dig(rebuild, "totalBytes", default=0)
    percent = dig(rebuild, "progress", default=0)
    return f"{state} {percent}% ({space_text(done)} of {space_text(total)})"


def render_description(described: Document) -> str:
    volume = described["volume"]
    size = dig(volume, "spec", "size")
    lines = [
        f"name        {dig(volume, 'metadata', 'name')}",
        f"size        {size_text(size)} ({size} bytes)",
        f"replicas    {dig(volume, 'spec', 'numberOfReplicas')}",
        f"state       {dig(volume, 'status', 'state')}",
        f"robustness  {dig(volume, 'status', 'robustness')}",
        f"node        {dig(volume, 'status', 'currentNodeID')}",
        f"endpoint    {described['endpoint']}",
        f"conditions  {conditions(volume)}",
    ]
    if dig(volume, "metadata", "deletionTimestamp"):
        lines.append(f"deleting    since {dig(volume, 'metadata', 'deletionTimestamp')}")
    rows = [
        [r["name"], r["node"], r["mode"], r["state"], _yes(r["failed"]), rebuild_text(r["rebuild"])]
        for r in described["replicas"]
    ]
    lines += ["", table(["REPLICA", "NODE", "MODE", "STATE", "FAILED", "REBUILD"], rows)]
    return "\n".join(lines).rstrip()


# --- snapshots ------------------------------------------------------------------------------


def render_snapshots(collection: Document) -> str:
    return table(
        ["NAME", "PARENT", "CREATED", "SIZE", "USER", "REMOVED", "LABELS"],
        [
            [
                dig(s, "name"),
                dig(s, "parent"),
                dig(s, "created"),
                space_text(dig(s, "size")),
                _yes(dig(s, "userCreated")),
                _yes(dig(s, "removed")),
                ",".join(f"{k}={v}" for k, v in sorted(dig(s, "labels", default={}).items())),
            ]
            for s in dig(collection, "data", default=[])
        ],
    )


# --- nodes and settings ---------------------------------------------------------------------


def _condition(document: Document, kind: str) -> Document:
    for condition in dig(document, "status", "conditions", default=[]):
        if dig(condition, "type") == kind:
            return dict(condition)
    return {}


def _truth(document: Document, kind: str) -> str:
    """``yes``, ``no (Reason)``, or ``unknown``: condition ``kind`` of ``document``."""
    condition = _condition(document, kind)
    if not condition:
        return "unknown"
    if dig(condition, "status") == "True":
        return "yes"
    return f"no ({dig(condition, 'reason')})" if dig(condition, "reason") else "no"


def _disks(node: Document) -> Iterable[tuple[str, Document, Document]]:
    statuses = dig(node, "status", "diskStatus", default={})
    for name, spec in sorted(dig(node, "spec", "disks", default={}).items()):
        yield name, spec, statuses.get(name, {})


def _total(node: Document, key: str) -> str:
    try:
        total = sum(int(dig(status, key, default=0)) for _, _, status in _disks(node))
    except (TypeError, ValueError):
        return "?"
    return space_text(total)


def _schedulable(node: Document) -> str:
    """The Schedulable condition; without one, whether the operator allows scheduling."""
    if _condition(node, "Schedulable"):
        return _truth(node, "Schedulable")
    return "yes" if dig(node, "spec", "allowScheduling", default=True) is True else "no (disabled)"


NODES: Final = Columns(
    ("NAME", "READY", "SCHEDULABLE", "DISKS", "AVAILABLE", "MAXIMUM", "SCHEDULED"),
    lambda node: [
        dig(node, "metadata", "name"),
        _truth(node, "Ready"),
        _schedulable(node),
        str(len(list(_disks(node)))),
        _total(node, "storageAvailable"),
        _total(node, "storageMaximum"),
        _total(node, "storageScheduled"),
    ],
)
render_nodes: Final = NODES.render


def render_node(node: Document) -> str:
    spec = dig(node, "spec", default={})
    lines = [
        f"name        {dig(node, 'metadata', 'name')}",
        f"ready       {_truth(node, 'Ready')}",
        f"schedulable {_schedulable(node)}",
        f"zone        {dig(spec, 'zone')}",
        f"region      {dig(spec, 'region')}",
        f"tags        {', '.join(dig(spec, 'tags', default=[]))}",
        f"conditions  {conditions(node)}",
        "",
    ]
    rows = [
        [
            name,
            dig(disk, "path"),
            _truth({"status": status}, "Ready"),
            "allowed" if dig(disk, "allowScheduling") is True else "disabled",
            space_text(dig(status, "storageAvailable", default=0)),
            space_text(dig(status, "storageMaximum", default=0)),
            space_text(dig(status, "storageScheduled", default=0)),
            space_text(dig(disk, "storageReserved", default=0)),
            len(dig(status, "scheduledReplica", default={})),
            ",".join(dig(disk, "tags", default=[])),
        ]
        for name, disk, status in _disks(node)
    ]
    header = ["DISK", "PATH", "READY", "SCHEDULING", "AVAILABLE", "MAXIMUM", "SCHEDULED"]
    lines.append(table([*header, "RESERVED", "REPLICAS", "TAGS"], rows))
    return "\n".join(lines).rstrip()


SETTINGS: Final = Columns(
    ("NAME", "VALUE"),
    lambda setting: [dig(setting, "metadata", "name"), dig(setting, "spec", "value")],
)
render_settings: Final = SETTINGS.render
