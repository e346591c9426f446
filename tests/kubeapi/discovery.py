"""Discovery: ``/version``, ``/api``, ``/apis``, ``/apis/GROUP`` and the resource lists of
``/api/v1`` and ``/apis/GROUP/VERSION``, from the catalog of the moment (built-ins and CRDs).

kubectl asks ``/api`` and ``/apis`` for the aggregated discovery format (v2) first; a plain
``APIVersions`` / ``APIGroupList`` answered as ``application/json`` is accepted, so that is all
the double serves.
"""

from __future__ import annotations

import hashlib

from tests.kubeapi.resources import STATUS_VERBS, VERBS, Catalog, Resource
from tests.kubeapi.schemas import KUBERNETES_VERSION
from tests.kubeapi.status import Obj

__all__ = ["api_group", "api_group_list", "api_versions", "resource_list", "version"]


def version() -> Obj:
    major, minor, _ = KUBERNETES_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions() -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def api_group(catalog: Catalog, group: str) -> Obj | None:
    versions = catalog.group_versions().get(group)
    if not group or not versions:
        return None
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": listed,
        "preferredVersion": listed[0],
    }


def api_group_list(catalog: Catalog) -> Obj:
    groups = [api_group(catalog, group) for group in catalog.group_versions() if group]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _storage_hash(resource: Resource) -> str:
    seed = f"{resource.group}/{resource.version}/{resource.kind}".encode()
    return hashlib.sha256(seed).hexdigest()[:11]


def _entry(resource: Resource) -> Obj:
    entry: Obj = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(VERBS),
        "storageVersionHash": _storage_hash(resource),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    return entry


def resource_list(catalog: Catalog, group: str, version: str) -> Obj | None:
    resources = catalog.in_group_version(group, version)
    if not resources:
        return None
    listed = []
    for resource in resources:
        listed.append(_entry(resource))
        if resource.status:
            listed.append(
                {
                    "name": f"{resource.plural}/status",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": resources[0].api_version,
        "resources": listed,
    }
