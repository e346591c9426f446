"""The Table format ``kubectl get`` asks for (``Accept: application/json;as=Table;v=v1;
g=meta.k8s.io``): a ``meta.k8s.io/v1`` ``Table`` whose columns are ``Name`` and a custom
resource's ``additionalPrinterColumns`` (``Name`` and ``Age`` for everything else), one row per
object with its metadata as a ``PartialObjectMetadata``.

Cells follow the real server: a ``date`` column is the age (``5s``, ``3m2s``, ``2d``); an
``integer``, ``number`` or ``boolean`` column its JSON value; a ``string`` column the text; a
path that finds nothing an empty cell. Column paths are the JSONPath subset CRDs use in
practice: ``.a.b``, ``.a['b.c']``, ``.a[0].b``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Final

from tests.kubeapi.resources import Column, Resource
from tests.kubeapi.status import Obj, bad_request

__all__ = ["age", "find", "parse_path", "table", "wants_table"]

_STEP: Final = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_NAME = Column(
    name="Name",
    type="string",
    json_path=".metadata.name",
    format="name",
    description="Name must be unique within a namespace.",
)
_AGE = Column(
    name="Age",
    type="date",
    json_path=".metadata.creationTimestamp",
    description="CreationTimestamp is a timestamp representing the server time when "
    "this object was created.",
)


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a Table (any of its choices)."""
    return any(
        "as=table" in part.replace(" ", "").lower() and "g=meta.k8s.io" in part.replace(" ", "")
        for part in accept.split(",")
    )


def parse_path(path: str) -> list[str | int]:
    """``.status.conditions[0].type`` -> steps; BadRequest for what the subset cannot read."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    steps: list[str | int] = []
    at = 0
    while at < len(text):
        match = _STEP.match(text, at)
        if match is None:
            raise bad_request(f"unsupported JSONPath {path!r}")
        name, index, quoted, dquoted = match.groups()
        steps.append(int(index) if index is not None else (name or quoted or dquoted or ""))
        at = match.end()
    return steps


def find(obj: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and step < len(obj) else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def age(created: str, moment: dt.datetime) -> str:
    """A Kubernetes-style short age: ``45s``, ``3m2s``, ``5h10m``, ``3d4h``, ``30d``, ``2y``."""
    try:
        then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = int((moment - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years, rest = divmod(days, 365)
    return f"{years}y{rest}d" if rest and days < 8 * 365 else f"{years}y"


def _cell(column: Column, obj: Obj, moment: dt.datetime) -> Any:
    value = find(obj, parse_path(column.json_path))
    if value is None:
        return None
    if column.type == "date":
        return age(value, moment) if isinstance(value, str) else None
    if column.type == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if column.type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    return value if isinstance(value, str) else json.dumps(value)


def _definition(column: Column) -> Obj:
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    }


def columns_of(resource: Resource) -> tuple[Column, ...]:
    if resource.columns:
        return (_NAME, *resource.columns)
    return (_NAME, _AGE)


def table(
    resource: Resource,
    objects: list[Obj],
    *,
    revision: str,
    moment: dt.datetime,
    include_object: str = "Metadata",
    continue_token: str = "",
) -> Obj:
    columns = columns_of(resource)
    rows = []
    for obj in objects:
        row: Obj = {"cells": [_cell(c, obj, moment) for c in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    metadata: Obj = {"resourceVersion": revision}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [_definition(c) for c in columns],
        "rows": rows,
    }
