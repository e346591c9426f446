"""CustomResourceDefinitions: the checks the real server makes before it accepts one (beyond
its schema, which :mod:`.schemas` checks), and the status it gives it.

A CRD is ``Established`` the moment it is stored (there is no controller to wait for): its
resources are served from the next request on (:mod:`.resources`), its ``status`` says so
(conditions ``NamesAccepted`` and ``Established``, ``acceptedNames``, ``storedVersions``), so
``kubectl wait --for=condition=established`` returns at once.
"""

from __future__ import annotations

import re
from typing import Any, Final

from tests.kubeapi.resources import BUILTINS, CRD
from tests.kubeapi.status import Obj, invalid

__all__ = ["check_crd", "crd_status"]

_LOWER: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KIND: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_VERSION: Final = re.compile(r"v[0-9]+((alpha|beta)[0-9]+)?")
_BUILTIN_GROUPS: Final = frozenset(r.group for r in BUILTINS)
_LABEL_RULE: Final = "must be a lowercase RFC 1123 label"


def check_crd(crd: Obj) -> None:
    """422 Invalid naming every problem of a CRD that passed its schema."""
    name = str(crd["metadata"].get("name", ""))
    spec: Any = crd.get("spec") or {}
    names: Any = spec.get("names") or {}
    group, plural = str(spec.get("group", "")), str(names.get("plural", ""))
    causes: list[tuple[str, str]] = []

    def bad(field: str, value: object, why: str) -> None:
        causes.append((field, f"Invalid value: {value!r}: {why}"))

    if "." not in group:
        bad("spec.group", group, "should be a domain with at least one dot")
    elif group in _BUILTIN_GROUPS:
        bad("spec.group", group, "is a built-in group")
    if not _LOWER.fullmatch(plural):
        bad("spec.names.plural", plural, _LABEL_RULE)
    if name != f"{plural}.{group}":
        bad("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
    singular = names.get("singular")
    if singular is not None and not _LOWER.fullmatch(str(singular)):
        bad("spec.names.singular", singular, _LABEL_RULE)
    if not _KIND.fullmatch(str(names.get("kind", ""))):
        bad("spec.names.kind", names.get("kind"), "must be a CamelCase kind")
    for i, short in enumerate(names.get("shortNames") or ()):
        if not _LOWER.fullmatch(str(short)):
            bad(f"spec.names.shortNames[{i}]", short, _LABEL_RULE)
    if spec.get("scope") not in {"Namespaced", "Cluster"}:
        bad("spec.scope", spec.get("scope"), 'supported values: "Cluster", "Namespaced"')
    versions = spec.get("versions") or []
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        bad("spec.versions", len(storage), "must have exactly one version marked as storage")
    seen: set[str] = set()
    for i, version in enumerate(versions):
        vname = str(version.get("name", ""))
        if not _VERSION.fullmatch(vname):
            bad(f"spec.versions[{i}].name", vname, "must be a version like v1 or v1beta1")
        if vname in seen:
            bad(f"spec.versions[{i}].name", vname, "is a duplicate")
        seen.add(vname)
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        where = f"spec.versions[{i}].schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            causes.append((where, "Required value: schemas are required"))
        elif schema.get("type") != "object":
            bad(f"{where}.type", schema.get("type"), "must be object at the root")
    if causes:
        raise invalid(CRD.kind_group, name, causes)


def crd_status(crd: Obj, moment: str, previous: Obj | None) -> Obj:
    """The status of a stored CRD: established, its names accepted, its storage version kept."""
    spec = crd["spec"]
    stored = list(((previous or {}).get("status") or {}).get("storedVersions") or [])
    for version in spec["versions"]:
        if version.get("storage") and version["name"] not in stored:
            stored.append(version["name"])
    condition = {"status": "True", "lastTransitionTime": moment}
    return {
        "acceptedNames": spec["names"],
        "conditions": [
            {
                **condition,
                "type": "NamesAccepted",
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                **condition,
                "type": "Established",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": stored,
    }
