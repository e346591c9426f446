"""The OpenAPI v3 documents kubectl reads: the index ``/openapi/v3`` (one entry per
group/version, each with a hash that changes with its content) and one document per
group/version.

kubectl needs them for three things, and each shaped what is here:

* ``apply`` with validation asks whether the server validates fields itself: it looks for the
  kind's ``PATCH`` operation (``x-kubernetes-group-version-kind``) and its ``fieldValidation``
  query parameter. Both are here, so kubectl sends ``fieldValidation=Strict`` and leaves the
  checking to the double (:mod:`.schemas`).
* client-side ``apply`` of a built-in kind computes a strategic merge patch from the kind's
  schema (``x-kubernetes-patch-strategy`` and ``-merge-key``) when the ``PATCH`` operation
  accepts ``application/strategic-merge-patch+json``.
* ``explain`` renders ``components.schemas``.

The built-in schemas are the upstream definitions shipped by ``kubernetes-validate``, rewritten
from JSON Schema (``type: [T, "null"]``, ``#/$defs/``) to OpenAPI (``type: T``,
``#/components/schemas/``); a custom resource's schema is its CRD's ``openAPIV3Schema`` with
``apiVersion``, ``kind`` and ``metadata`` added, named ``io.lhtrio.v1.Volume`` for
``lhtrio.io/v1`` ``Volume`` as the real server names it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from typing import Any, Final

from tests.kubeapi.resources import Catalog, Resource
from tests.kubeapi.schemas import KUBERNETES_VERSION, builtin_definitions, definition_of
from tests.kubeapi.status import Obj

__all__ = ["group_version_document", "index", "schema_name"]

_OBJECT_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_PATCH_TYPES: Final = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
_SMP: Final = "application/strategic-merge-patch+json"


def _param(name: str, where: str = "query", description: str = "") -> Obj:
    param: Obj = {"name": name, "in": where, "schema": {"type": "string", "uniqueItems": True}}
    if description:
        param["description"] = description
    if where == "path":
        param["required"] = True
    return param


_FIELD_VALIDATION: Final = _param(
    "fieldValidation",
    description="Strict, Warn or Ignore: what the server does with unknown fields.",
)
_WRITE_PARAMS: Final = (_param("dryRun"), _param("fieldManager"), _FIELD_VALIDATION)


def _openapi(node: Any) -> Any:
    """JSON Schema (upstream flavour) -> OpenAPI v3."""
    if isinstance(node, list):
        return [_openapi(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = "#/components/schemas/" + str(value).rpartition("/")[2]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key in {"properties", "definitions"} and isinstance(value, dict):
            out[key] = {k: _openapi(v) for k, v in value.items()}
        else:
            out[key] = _openapi(value)
    return out


def _closure(names: list[str], defs: Obj) -> dict[str, Obj]:
    out: dict[str, Obj] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out or name not in defs:
            continue
        out[name] = defs[name]
        text = json.dumps(defs[name])
        todo.extend(
            part.partition('"')[0].rpartition("/")[2] for part in text.split('"$ref": "')[1:]
        )
    return out


@functools.cache
def _builtin_schemas(names: tuple[str, ...]) -> Obj:
    defs = builtin_definitions(strict=False)
    return {name: _openapi(schema) for name, schema in _closure(list(names), defs).items()}


def schema_name(resource: Resource) -> str:
    """The components.schemas name of a resource's kind."""
    if resource.builtin:
        return definition_of(resource) or resource.kind
    return ".".join([*reversed(resource.group.split(".")), resource.version, resource.kind])


def _custom_schema(resource: Resource) -> Obj:
    schema: Obj = copy.deepcopy(resource.schema or {"type": "object"})
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "description": "APIVersion of the object."}
    properties["kind"] = {"type": "string", "description": "Kind of the object."}
    properties["metadata"] = {"$ref": f"#/components/schemas/{_OBJECT_META}"}
    schema["x-kubernetes-group-version-kind"] = [
        {"group": resource.group, "version": resource.version, "kind": resource.kind}
    ]
    return schema


def _custom_list_schema(resource: Resource) -> Obj:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": f"#/components/schemas/{_LIST_META}"},
            "items": {
                "type": "array",
                "items": {"$ref": f"#/components/schemas/{schema_name(resource)}"},
            },
        },
        "x-kubernetes-group-version-kind": [
            {"group": resource.group, "version": resource.version, "kind": resource.list_kind}
        ],
    }


def _operation(resource: Resource, action: str, verb: str, ref: str, params: list[Obj]) -> Obj:
    op: Obj = {
        "operationId": f"{verb}{resource.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": resource.version,
            "kind": resource.kind,
        },
        "parameters": params,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            }
        },
    }
    if action in {"post", "put"}:
        op["requestBody"] = {"content": {"application/json": {"schema": {"$ref": ref}}}}
    if action == "patch":
        types = (*_PATCH_TYPES, _SMP) if resource.builtin else _PATCH_TYPES
        op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in types}}
    return op


def _paths(resource: Resource) -> Obj:
    prefix = f"/apis/{resource.api_version}" if resource.group else f"/api/{resource.version}"
    namespace = [_param("namespace", "path")] if resource.namespaced else []
    base = (
        f"{prefix}/namespaces/{{namespace}}/{resource.plural}"
        if resource.namespaced
        else (f"{prefix}/{resource.plural}")
    )
    ref = f"#/components/schemas/{schema_name(resource)}"
    one = [_param("name", "path"), *namespace]
    write = [*one, *_WRITE_PARAMS]
    patch = [*write, _param("force")]
    paths: Obj = {
        base: {
            "get": _operation(
                resource,
                "list",
                "list",
                ref,
                [*namespace, _param("labelSelector"), _param("fieldSelector"), _param("watch")],
            ),
            "post": _operation(resource, "post", "create", ref, [*namespace, *_WRITE_PARAMS]),
        },
        f"{base}/{{name}}": {
            "get": _operation(resource, "get", "read", ref, one),
            "put": _operation(resource, "put", "replace", ref, write),
            "patch": _operation(resource, "patch", "patch", ref, patch),
            "delete": _operation(resource, "delete", "delete", ref, one),
        },
    }
    if resource.status:
        paths[f"{base}/{{name}}/status"] = {
            "get": _operation(resource, "get", "read", ref, one),
            "put": _operation(resource, "put", "replace", ref, write),
            "patch": _operation(resource, "patch", "patch", ref, patch),
        }
    return paths


def group_version_document(catalog: Catalog, group: str, version: str) -> Obj:
    resources = catalog.in_group_version(group, version)
    if all(r.builtin for r in resources):
        return _builtin_document(group, version)
    return _document(resources)


@functools.cache
def _builtin_document(group: str, version: str) -> Obj:
    return _document(Catalog.of(()).in_group_version(group, version))


def _document(resources: list[Resource]) -> Obj:
    paths: Obj = {}
    builtin = []
    schemas: Obj = {}
    for resource in resources:
        paths.update(_paths(resource))
        if resource.builtin:
            name = definition_of(resource)
            if name is not None:
                builtin += [name, name + "List"]
        else:
            schemas[schema_name(resource)] = _custom_schema(resource)
            schemas[schema_name(resource) + "List"] = _custom_list_schema(resource)
            builtin += [_OBJECT_META, _LIST_META]
    schemas = {**_builtin_schemas(tuple(sorted(set(builtin)))), **schemas}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _hash(document: Obj) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


@functools.cache
def _builtin_hash(group: str, version: str) -> str:
    return _hash(_builtin_document(group, version))


def index(catalog: Catalog) -> Obj:
    paths = {}
    for group, versions in catalog.group_versions().items():
        for version in versions:
            where = f"apis/{group}/{version}" if group else f"api/{version}"
            if all(r.builtin for r in catalog.in_group_version(group, version)):
                digest = _builtin_hash(group, version)
            else:
                digest = _hash(group_version_document(catalog, group, version))
            paths[where] = {"serverRelativeURL": f"/openapi/v3/{where}?hash={digest}"}
    return {"paths": paths}
