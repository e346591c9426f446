"""The three patch formats of a ``PATCH`` that are not server-side apply (:mod:`.fields` has
that one): JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

**Strategic merge** is what ``kubectl apply`` and ``kubectl patch`` send for built-in kinds.
Lists whose schema says ``x-kubernetes-patch-strategy: merge`` merge element by element
(objects by their ``x-kubernetes-patch-merge-key``, e.g. containers by name; scalars as a set),
every other list is replaced; the directives ``$patch`` (replace, delete, merge),
``$retainKeys``, ``$setElementOrder/FIELD`` and ``$deleteFromPrimitiveList/FIELD`` are obeyed.
The schema comes from the upstream definitions (:mod:`.schemas`), through :class:`PatchMeta`.
Custom resources refuse it, as the real server does (415).

A patch that is not of its format's shape is 400; one that cannot be applied (a JSON patch
``test`` that fails, a path that is not there) is 422. Patches never change their inputs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.kubeapi.status import KubeError, Obj, bad_request

__all__ = ["PatchMeta", "json_patch", "merge_patch", "strategic_merge_patch"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- JSON patch ----------------------------------------------------------------------------------


def _unprocessable(message: str) -> KubeError:
    return KubeError(422, "Invalid", f"the JSON patch could not be applied: {message}")


def _pointer(path: object) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"JSON patch path {path!r} is not a JSON pointer")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _index(container: list[Any], token: str, *, end_ok: bool) -> int:
    if token == "-" and end_ok:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _unprocessable(f"{token!r} is not an index of a list")
    index = int(token)
    if index > len(container) or (index == len(container) and not end_ok):
        raise _unprocessable(f"index {index} is past the end of a list of {len(container)}")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, end_ok=False)]
        else:
            raise _unprocessable(f"path {path!r} does not exist")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict) and tokens[-1] in parent:
        return parent[tokens[-1]]
    if isinstance(parent, list):
        return parent[_index(parent, tokens[-1], end_ok=False)]
    raise _unprocessable(f"path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise _unprocessable("the whole document cannot be removed")
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict) and tokens[-1] in parent:
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, tokens[-1], end_ok=False))
    raise _unprocessable(f"path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], end_ok=True), value)
    else:
        raise _unprocessable(f"the parent of {path!r} is not an object or a list")
    return doc


def json_patch(target: Obj, patch: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy and test, in order, all or nothing."""
    if not isinstance(patch, list):
        raise bad_request("a JSON patch is a list of operations")
    doc: Any = copy.deepcopy(target)
    for op in patch:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise bad_request(f"JSON patch operation {json.dumps(op)[:100]} has no 'op'")
        kind, path = op["op"], op.get("path")
        if kind in {"add", "replace", "test"} and "value" not in op:
            raise bad_request(f"JSON patch operation {kind} {path!r} has no 'value'")
        if kind == "add":
            doc = _add(doc, str(path), copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, str(path))
        elif kind == "replace":
            _get(doc, str(path))  # must exist
            if _pointer(path):
                _remove(doc, str(path))
            doc = _add(doc, str(path), copy.deepcopy(op["value"]))
        elif kind in {"move", "copy"}:
            source = op.get("from")
            value = _remove(doc, str(source)) if kind == "move" else _get(doc, str(source))
            doc = _add(doc, str(path), copy.deepcopy(value))
        elif kind == "test":
            if _get(doc, str(path)) != op["value"]:
                raise _unprocessable(f"test of {path!r} failed: the value is not {op['value']!r}")
        else:
            raise bad_request(f"unknown JSON patch operation {kind!r}")
    return doc


# --- strategic merge patch ------------------------------------------------------------------------


class PatchMeta:
    """Where a strategic merge patch is in the kind's schema (an upstream JSON schema whose
    references point into ``defs``); a cursor on nothing knows no strategies."""

    def __init__(self, node: Obj | None, defs: Obj) -> None:
        self.defs = defs
        while node is not None and "$ref" in node:
            node = defs.get(str(node["$ref"]).rpartition("/")[2])
        self.node = node

    def field(self, key: str) -> PatchMeta:
        properties = (self.node or {}).get("properties") or {}
        if key in properties:
            return PatchMeta(properties[key], self.defs)
        additional = (self.node or {}).get("additionalProperties")
        return PatchMeta(additional if isinstance(additional, dict) else None, self.defs)

    def items(self) -> PatchMeta:
        items = (self.node or {}).get("items")
        return PatchMeta(items if isinstance(items, dict) else None, self.defs)

    @property
    def strategies(self) -> set[str]:
        raw = str((self.node or {}).get("x-kubernetes-patch-strategy", ""))
        return {s for s in raw.split(",") if s}

    @property
    def list_keys(self) -> tuple[str, ...]:
        """The keys of a map list's elements (empty: the list is atomic or a set)."""
        node = self.node or {}
        kind = node.get("x-kubernetes-list-type")
        if kind == "map":
            return tuple(str(k) for k in node.get("x-kubernetes-list-map-keys") or ())
        key = self.merge_key
        return (key,) if kind is None and key and "merge" in self.strategies else ()

    @property
    def merge_key(self) -> str | None:
        key = (self.node or {}).get("x-kubernetes-patch-merge-key")
        return str(key) if key else None


_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: Obj, patch: Any, meta: PatchMeta) -> Obj:
    if not isinstance(patch, dict):
        raise bad_request("a strategic merge patch is a JSON object")
    return _merge_map(copy.deepcopy(target), patch, meta)


def _merge_map(original: Obj, patch: Obj, meta: PatchMeta) -> Obj:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in {None, "merge"}:
        raise bad_request(f"strategic merge patch: unknown $patch {directive!r} on an object")
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"] or ())
        original = {k: v for k, v in original.items() if k in keep}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in {"$patch", "$retainKeys"}:
            continue
        if key.startswith(_ORDER):
            orders[key.removeprefix(_ORDER)] = list(value or ())
            continue
        if key.startswith(_DELETE_FROM):
            field = key.removeprefix(_DELETE_FROM)
            gone = value or ()
            if isinstance(original.get(field), list):
                original[field] = [v for v in original[field] if v not in gone]
            continue
        if value is None:
            original.pop(key, None)
            continue
        child = meta.field(key)
        current = original.get(key)
        if isinstance(value, dict) and value.get("$patch") == "delete":
            original.pop(key, None)
        elif isinstance(value, dict):
            original[key] = _merge_map(current if isinstance(current, dict) else {}, value, child)
        elif isinstance(value, list) and "merge" in child.strategies:
            original[key] = _merge_list(current if isinstance(current, list) else [], value, child)
        else:
            original[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(original.get(field), list):
            original[field] = _ordered(original[field], order, meta.field(field).merge_key)
    return original


def _merge_list(original: list[Any], patch: list[Any], meta: PatchMeta) -> list[Any]:
    if any(isinstance(e, dict) and e.get("$patch") == "replace" for e in patch):
        return [copy.deepcopy(e) for e in patch if not (isinstance(e, dict) and "$patch" in e)]
    key = meta.merge_key
    if key is None:  # a set of scalars
        out = list(original)
        out.extend(copy.deepcopy(e) for e in patch if e not in out)
        return out
    out = [copy.deepcopy(e) for e in original]
    for element in patch:
        if not isinstance(element, dict) or key not in element:
            raise bad_request(f"strategic merge patch: a list element has no merge key {key!r}")
        at = next(
            (i for i, e in enumerate(out) if isinstance(e, dict) and e.get(key) == element[key]),
            None,
        )
        if element.get("$patch") == "delete":
            if at is not None:
                out.pop(at)
        elif at is None:
            out.append({k: copy.deepcopy(v) for k, v in element.items() if k != "$patch"})
        else:
            out[at] = _merge_map(out[at], element, meta.items())
    return out


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """``items`` in the order given (by merge key, or by value); the rest after, as they were."""

    def ident(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    ranked = [(wanted.index(ident(i)) if ident(i) in wanted else len(wanted), i) for i in items]
    return [item for _, item in sorted(ranked, key=lambda pair: pair[0])]
