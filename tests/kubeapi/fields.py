"""Managed fields and a simplified server-side apply.

Every write records who set which fields in ``metadata.managedFields`` (``fieldsType:
FieldsV1``), as the real server does: a create or update by manager M (the ``fieldManager``
parameter, else the client's User-Agent) makes M own the fields it set or changed, taking them
from whoever owned them; a field removed is nobody's. A request that changes
``metadata.managedFields`` itself is taken as it is (kubectl rewrites them with a JSON patch when
it moves an object from client-side to server-side apply).

**Server-side apply** (``application/apply-patch+yaml``): the applied configuration is merged
into the object (maps key by key; lists and scalars replaced); fields the same manager applied
before and leaves out now are removed unless another manager owns them too; setting a field
another manager owns to a different value is a 409 Conflict naming the field and the manager,
unless ``force=true``, which takes the field over. Equal values are shared, not conflicts.
As on the real server, the manager ``kubectl`` moving from client-side apply may take over,
without ``force``, every field whose live value is still what the
``kubectl.kubernetes.io/last-applied-configuration`` annotation says it applied.

**Lists.** A list the schema calls a map (``x-kubernetes-list-type: map`` with its
``x-kubernetes-list-map-keys``, or a built-in list with a patch merge key, e.g. containers by
name) has its elements owned one by one (``k:{"name":"node"}`` entries) and merged by key; every
other list is atomic: owned and replaced whole. So a DaemonSet applied by ``kubectl`` and a
container added by someone else do not conflict, as on the real server.

Simplifications, on purpose: sets (``v:`` entries) and positional entries (``i:``) written by
clients are read as owning the whole list; an element whose key fields are missing makes its
list atomic; the object is not defaulted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from tests.kubeapi.patch import PatchMeta
from tests.kubeapi.status import KubeError, Obj

__all__ = ["Path", "apply", "leaf_paths", "record_update", "to_fields_v1", "from_fields_v1"]

Path = tuple[str, ...]

#: metadata fields a manager can own (the rest are the server's).
_OWNED_METADATA = frozenset({"labels", "annotations", "finalizers", "ownerReferences"})
#: A path step naming an element of a map list starts so (``k:{"name":"node"}``).
_ELEMENT = "k:"
_NO_SCHEMA = PatchMeta(None, {})


def _element_id(item: Any, keys: tuple[str, ...]) -> str | None:
    if not keys or not isinstance(item, dict) or any(k not in item for k in keys):
        return None
    return _ELEMENT + json.dumps({k: item[k] for k in keys}, separators=(",", ":"))


def _ids(items: list[Any], meta: PatchMeta) -> list[str] | None:
    """The element ids of a map list (None: the list is atomic)."""
    ids = [_element_id(item, meta.list_keys) for item in items]
    if any(i is None for i in ids) or len(set(ids)) != len(ids):
        return None
    return [i for i in ids if i is not None]


def leaf_paths(obj: Obj, meta: PatchMeta = _NO_SCHEMA, *, with_status: bool = True) -> set[Path]:
    """The fields of an object a manager can own: scalars, atomic lists, empty objects, and
    the fields of map-list elements."""
    out: set[Path] = set()

    def walk(node: Any, path: Path, at: PatchMeta) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, (*path, key), at.field(key))
        elif isinstance(node, list) and node and (ids := _ids(node, at)) is not None:
            for element, item in zip(ids, node, strict=True):
                walk(item, (*path, element), at.items())
        else:
            out.add(path)

    for key, value in obj.items():
        if key in {"apiVersion", "kind"} or (key == "status" and not with_status):
            continue
        if key == "metadata" and isinstance(value, dict):
            for meta_key in _OWNED_METADATA & value.keys():
                walk(value[meta_key], ("metadata", meta_key), _NO_SCHEMA)
        else:
            walk(value, (key,), meta.field(key))
    return out


def to_fields_v1(paths: Iterable[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for step in path:
            if step.startswith(_ELEMENT):
                node = node.setdefault(step, {})
                node.setdefault(".", {})
            else:
                node = node.setdefault(f"f:{step}", {})
    return root


def from_fields_v1(fields: Any) -> set[Path]:
    """The paths of a ``fieldsV1`` tree. A map-list element (``k:``) is a step of its own; a
    set or positional entry (``v:``, ``i:``) stands for its whole list."""
    out: set[Path] = set()

    def walk(node: Any, path: Path) -> None:
        steps = [k for k in node if isinstance(k, str) and k[:2] in {"f:", _ELEMENT}]
        rest = [k for k in node if k not in steps and k != "."]
        if path and (not steps or rest):
            out.add(path)
        if rest:
            return
        for key in steps:
            child = node[key] if isinstance(node[key], dict) else {}
            walk(child, (*path, key if key.startswith(_ELEMENT) else key[2:]))

    if isinstance(fields, dict):
        walk(fields, ())
    return out


def _child(node: Any, step: str) -> Any:
    if step.startswith(_ELEMENT) and isinstance(node, list):
        wanted = json.loads(step[len(_ELEMENT) :])
        return next(
            (
                item
                for item in node
                if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())
            ),
            None,
        )
    return node.get(step) if isinstance(node, dict) else None


def _value(obj: Any, path: Path) -> Any:
    for step in path:
        obj = _child(obj, step)
        if obj is None:
            return None
    return obj


def _remove(obj: Obj, path: Path) -> None:
    """Remove a field; removing a key field of a map-list element removes the element."""
    parent: Any = obj
    for step in path[:-1]:
        parent = _child(parent, step)
    last = path[-1]
    in_element = len(path) >= 2 and path[-2].startswith(_ELEMENT)
    if isinstance(parent, dict) and in_element and last in json.loads(path[-2][2:]):
        grand: Any = obj
        for step in path[:-2]:
            grand = _child(grand, step)
        if isinstance(grand, list):
            grand[:] = [item for item in grand if item is not parent]
        return
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and (gone := _child(parent, last)) is not None:
        parent[:] = [item for item in parent if item is not gone]


def _overlaps(path: Path, paths: set[Path]) -> bool:
    return any(p[: len(path)] == path or path[: len(p)] == p for p in paths)


def _entries(obj: Obj | None) -> list[Obj]:
    if obj is None:
        return []
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return [e for e in entries if isinstance(e, dict)]


def _entry(manager: str, operation: str, api_version: str, now: str, paths: set[Path]) -> Obj:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }


def _rebuild(
    entries: list[Obj], owned: list[set[Path]], mine: Obj, *, drop: tuple[str, str]
) -> list[Obj]:
    out = []
    for entry, paths in zip(entries, owned, strict=True):
        if (entry.get("manager"), entry.get("operation")) == drop or not paths:
            continue
        out.append({**entry, "fieldsV1": to_fields_v1(paths)})
    return [*out, mine]


def record_update(
    old: Obj | None,
    new: Obj,
    *,
    manager: str,
    api_version: str,
    now: str,
    status_only: bool,
    meta: PatchMeta = _NO_SCHEMA,
) -> None:
    """Record in ``new`` (in place) that ``manager`` made the change from ``old`` (None: a
    create). Managed fields the request set itself are kept as given."""
    old_entries = _entries(old)
    given = (new.get("metadata") or {}).get("managedFields")
    if old is not None and given is not None and given != old_entries:
        return  # the client rewrote them
    before = leaf_paths(old, meta) if old is not None else set()
    after = leaf_paths(new, meta)
    if status_only:
        before = {p for p in before if p[0] == "status"}
        after = {p for p in after if p[0] == "status"}
    changed = {p for p in after if old is None or _value(old, p) != _value(new, p)}
    removed = before - after
    owned = [from_fields_v1(e.get("fieldsV1")) for e in old_entries]
    key = (manager, "Update")
    mine: set[Path] = set()
    for entry, paths in zip(old_entries, owned, strict=True):
        if (entry.get("manager"), entry.get("operation")) == key:
            mine = set(paths)
    for paths in owned:
        paths -= {p for p in paths if _overlaps(p, changed | removed)}
    mine = (mine - {p for p in mine if _overlaps(p, removed)}) | changed
    if not changed and not removed:
        new["metadata"]["managedFields"] = old_entries or None
        if not old_entries:
            new["metadata"].pop("managedFields", None)
        return
    entry = _entry(manager, "Update", api_version, now, mine)
    new["metadata"]["managedFields"] = _rebuild(old_entries, owned, entry, drop=key)


def apply(
    current: Obj | None,
    applied: Obj,
    *,
    manager: str,
    force: bool,
    api_version: str,
    now: str,
    with_status: bool,
    meta: PatchMeta = _NO_SCHEMA,
) -> Obj:
    """The object after ``manager`` applied ``applied`` to ``current`` (None: it is created);
    409 Conflict on a field another manager owns with another value, unless ``force``."""
    mine_now = leaf_paths(applied, meta, with_status=with_status)
    base: Obj = copy.deepcopy(current) if current is not None else {}
    entries = _entries(current)
    owned = [from_fields_v1(e.get("fieldsV1")) for e in entries]
    key = (manager, "Apply")
    mine_before: set[Path] = set()
    conflicts: list[tuple[str, Path]] = []
    for entry, paths in zip(entries, owned, strict=True):
        if (entry.get("manager"), entry.get("operation")) == key:
            mine_before = set(paths)
            continue
        conflicts.extend(
            (str(entry.get("manager")), path)
            for path in sorted(mine_now)
            if _overlaps(path, paths) and _value(base, path) != _value(applied, path)
        )
    if conflicts and manager == "kubectl" and current is not None:
        allowed = _last_applied(current, meta)
        if all(path in allowed and _value(base, path) == allowed[path] for _, path in conflicts):
            force = True
    if conflicts and not force:
        _refuse(conflicts, applied, api_version)
    others = [
        paths
        for entry, paths in zip(entries, owned, strict=True)
        if (entry.get("manager"), entry.get("operation")) != key
    ]
    for path in mine_before - mine_now:
        if not any(_overlaps(path, theirs) for theirs in others):
            _remove(base, path)
    merged: Obj = _merge(base, applied, meta)
    if not with_status and current is not None:
        merged["status"] = copy.deepcopy(current.get("status"))
        if merged["status"] is None:
            merged.pop("status")
    if force:  # equal values stay shared; the conflicting ones are taken over
        taken = {path for _, path in conflicts}
        for paths in owned:
            paths -= {p for p in paths if _overlaps(p, taken)}
    entry = _entry(manager, "Apply", api_version, now, mine_now)
    merged.setdefault("metadata", {})["managedFields"] = _rebuild(entries, owned, entry, drop=key)
    return merged


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied(live: Obj, meta: PatchMeta) -> dict[Path, Any]:
    """Field -> value of what client-side apply last applied (its annotation)."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(_LAST_APPLIED)
    try:
        applied = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    if not isinstance(applied, dict):
        return {}
    return {path: _value(applied, path) for path in leaf_paths(applied, meta)}


def _merge(base: Any, applied: Any, meta: PatchMeta) -> Any:
    """``applied`` over ``base``: objects key by key, map lists element by element (the
    elements already there keep their places, new ones come after), the rest replaced."""
    if isinstance(base, dict) and isinstance(applied, dict):
        out = dict(base)
        for key, value in applied.items():
            out[key] = _merge(base.get(key), value, meta.field(key))
        return out
    if isinstance(base, list) and isinstance(applied, list):
        base_ids, new_ids = _ids(base, meta), _ids(applied, meta)
        if base_ids is not None and new_ids is not None:
            new = dict(zip(new_ids, applied, strict=True))
            merged = [
                _merge(item, new.pop(i), meta.items()) if i in new else item
                for i, item in zip(base_ids, base, strict=True)
            ]
            return merged + [copy.deepcopy(item) for item in new.values()]
    return copy.deepcopy(applied)


def _refuse(conflicts: list[tuple[str, Path]], applied: Obj, api_version: str) -> None:
    lines = [f'conflict with "{who}" using {api_version}: {_dotted(p)}' for who, p in conflicts]
    name = (applied.get("metadata") or {}).get("name", "")
    raise KubeError(
        409,
        "Conflict",
        f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: "
        + "\n".join(lines),
        {
            "name": name,
            "causes": [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{who}" using {api_version}',
                    "field": _dotted(p),
                }
                for who, p in conflicts
            ],
        },
    )


def _dotted(path: Path) -> str:
    """``.spec.containers[name="node"].image``, as the real server names a field."""
    out = ""
    for step in path:
        if step.startswith(_ELEMENT):
            keys = json.loads(step[len(_ELEMENT) :])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            out += f".{step}"
    return out
