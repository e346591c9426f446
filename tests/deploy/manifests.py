"""What the deploy tests read: deploy/'s manifests (YAML streams), its CRDs' schemas as JSON Schema
(for jsonschema), and its Dockerfile's instructions."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = ROOT / "deploy"
EXAMPLES: Final = DEPLOY / "examples"
#: The Kubernetes version the manifests are checked against (kubernetes-validate's schemas).
KUBERNETES: Final = "1.32.0"


def documents(path: Path) -> list[dict[str, Any]]:
    """The objects of a YAML stream (empty documents left out)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifests() -> list[Path]:
    """deploy/'s manifests: every YAML file but the kustomization (examples are not installed)."""
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def installed() -> list[dict[str, Any]]:
    return [obj for path in manifests() for obj in documents(path)]


@functools.cache
def crd_of(kind: str) -> dict[str, Any]:
    (crd,) = [c for c in documents(DEPLOY / "crds.yaml") if c["spec"]["names"]["kind"] == kind]
    return crd


def _json_schema(schema: Any) -> Any:
    """An ``openAPIV3Schema`` as JSON Schema: ``nullable: true`` is ``null`` among the types."""
    if isinstance(schema, list):
        return [_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _json_schema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        out["type"] = [schema["type"], "null"]
    return out


@functools.cache
def cr_validator(kind: str) -> jsonschema.Draft202012Validator:
    """A validator of ``kind``'s custom resources by its CRD's schema in deploy/crds.yaml."""
    (version,) = crd_of(kind)["spec"]["versions"]
    schema = _json_schema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


_INSTRUCTION: Final = re.compile(r"^([A-Z]+)\s+(.*)$")


def dockerfile() -> list[tuple[str, str]]:
    """deploy/Dockerfile's instructions, ``(INSTRUCTION, arguments)``, continuation lines
    joined, comments left out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += line.removesuffix("\\").strip() + " "
        if line.endswith("\\"):
            continue
        match = _INSTRUCTION.match(pending.strip())
        assert match is not None, f"not a Dockerfile instruction: {pending!r}"
        out.append((match.group(1), match.group(2)))
        pending = ""
    return out


def role_grants() -> set[tuple[str, str, str]]:
    """``(group, resource, verb)`` of everything deploy/rbac.yaml's Role grants."""
    (role,) = [d for d in documents(DEPLOY / "rbac.yaml") if d["kind"] == "Role"]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
