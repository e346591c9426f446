"""Validation, pruning and defaulting of objects against their schemas.

**Built-in kinds** are checked against the upstream schemas that ``kubernetes-validate`` (PyPI)
ships, generated from Kubernetes' own OpenAPI: the *strict* flavour, whose objects refuse
unknown fields, for validation; the plain one for the OpenAPI documents (:mod:`.openapi`) and
the strategic-merge-patch strategies (:mod:`.patch`). No schema is written by hand.

**Custom resources** are checked against their CRD version's ``openAPIV3Schema``, turned into a
JSON Schema: ``nullable``, ``x-kubernetes-int-or-string``, ``x-kubernetes-preserve-unknown-fields``
and ``x-kubernetes-embedded-resource`` mean what they mean to the real server, objects with
``properties`` refuse other fields, and ``metadata`` is checked as the upstream ObjectMeta.
``default`` values are filled in before validation. CEL rules (``x-kubernetes-validations``)
and formats are not checked.

:func:`check` splits what is wrong into *unknown fields* (dropped from the object, as the real
server prunes them; with ``fieldValidation=Strict`` a 400, else a warning) and *invalid values*
(422 Invalid with one cause per field).
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources as importlib_resources
from typing import Any, Final

import jsonschema

from tests.kubeapi.resources import Resource
from tests.kubeapi.status import Obj

__all__ = [
    "KUBERNETES_VERSION",
    "Findings",
    "builtin_definitions",
    "check",
    "definition_of",
    "fill_defaults",
    "path_text",
]

#: The Kubernetes version whose built-in schemas are served (and the version ``/version`` says).
KUBERNETES_VERSION: Final = "1.32.0"
_OBJECT_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
#: CRD schema keywords that do not validate anything (or that the double does not check).
_DROPPED: Final = frozenset(
    {"nullable", "format", "default", "example", "description", "externalDocs"}
)


@functools.cache
def builtin_definitions(*, strict: bool) -> Obj:
    """The upstream ``$defs`` (definition name -> schema) of :data:`KUBERNETES_VERSION`."""
    flavour = f"v{KUBERNETES_VERSION}-local" + ("-strict" if strict else "")
    root = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema" / flavour
    defs: Obj = json.loads((root / "_definitions.json").read_text())["$defs"]
    return defs


@functools.cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    out = {}
    for name, schema in builtin_definitions(strict=False).items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            out[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return out


def definition_of(resource: Resource) -> str | None:
    """The upstream definition name of a built-in kind."""
    return _by_gvk().get((resource.group, resource.version, resource.kind))


@functools.cache
def _builtin_validator(name: str) -> jsonschema.protocols.Validator:
    defs = builtin_definitions(strict=True)
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})


def crd_json_schema(schema: Obj, *, root: bool = True) -> Obj:
    """A CRD ``openAPIV3Schema`` as a JSON Schema (see the module docstring)."""
    out: Obj = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: crd_json_schema(v, root=False) for k, v in value.items()}
        elif key in {"items", "additionalProperties", "not"} and isinstance(value, dict):
            out[key] = crd_json_schema(value, root=False)
        elif key in {"allOf", "anyOf", "oneOf"}:
            out[key] = [crd_json_schema(v, root=False) for v in value]
        elif key in _DROPPED or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    embedded = root or schema.get("x-kubernetes-embedded-resource")
    if embedded:
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {"$ref": f"#/$defs/{_OBJECT_META}"}
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = crd_json_schema(json.loads(schema_json))
    schema["$defs"] = builtin_definitions(strict=True)
    return jsonschema.Draft202012Validator(schema)


def fill_defaults(obj: Any, schema: Obj | None) -> None:
    """Fill in (in place) the ``default`` of every missing field the schema gives one."""
    if schema is None:
        return
    if isinstance(obj, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                fill_defaults(obj[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in obj.items():
                if key not in (schema.get("properties") or {}):
                    fill_defaults(value, extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            fill_defaults(item, schema["items"])


def path_text(path: Any) -> str:
    """``spec.containers[0].name``."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


class Findings:
    """What :func:`check` found: unknown fields (their paths) and invalid values."""

    def __init__(self) -> None:
        self.unknown: list[tuple[list[Any], str]] = []
        self.invalid: list[tuple[str, str]] = []

    def unknown_text(self) -> list[str]:
        return [path_text([*path, name]) for path, name in self.unknown]

    def prune(self, obj: Obj) -> None:
        """Drop the unknown fields from ``obj`` (in place)."""
        for path, name in self.unknown:
            node: Any = obj
            for step in path:
                node = node[step]
            node.pop(name, None)


def check(resource: Resource, obj: Obj) -> Findings:
    """Validate ``obj`` as ``resource`` (built-in or custom)."""
    if resource.builtin:
        name = definition_of(resource)
        if name is None:
            return Findings()
        validator = _builtin_validator(name)
    elif resource.schema is not None:
        validator = _crd_validator(json.dumps(resource.schema, sort_keys=True))
    else:
        return Findings()
    findings = Findings()
    for error in validator.iter_errors(obj):
        _sort(error, findings)
    return findings


def _sort(error: jsonschema.ValidationError, findings: Findings) -> None:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = set(schema.get("properties") or {})
        for name in sorted(set(error.instance) - known):
            findings.unknown.append((path, name))
        return
    if error.validator == "required" and isinstance(error.validator_value, list):
        present = error.instance if isinstance(error.instance, dict) else {}
        for name in error.validator_value:
            if name not in present:
                findings.invalid.append((path_text([*path, name]), "Required value"))
        return
    value = json.dumps(error.instance)
    if len(value) > 80:
        value = value[:77] + "..."
    findings.invalid.append(
        (path_text(path) or "<root>", f"Invalid value: {value}: {error.message[:200]}")
    )
