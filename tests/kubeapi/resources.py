"""The resources the double serves: the built-in kinds lhtrio's manifests and store use, and
the custom resources each CustomResourceDefinition in etcd adds (at once: the catalog is built
from the CRDs stored when a request arrives, so a CRD is discoverable as soon as it exists).

A :class:`Resource` is one group/version/plural; a custom resource's versions share one
storage location (no conversion: the double serves each stored object under whichever served
version is asked for, as a CRD with ``conversion.strategy: None`` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

__all__ = ["BUILTINS", "CRD", "NAMESPACE", "Catalog", "Column", "Resource", "resources_of_crd"]

#: The verbs of every resource served (deletecollection is not implemented).
VERBS: Final = ("create", "delete", "get", "list", "patch", "update", "watch")
#: The verbs of a status subresource.
STATUS_VERBS: Final = ("get", "patch", "update")


@attrs.frozen(kw_only=True)
class Column:
    """A printer column (``additionalPrinterColumns``): ``json_path`` is a JSONPath subset."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@attrs.frozen(kw_only=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has the status subresource
    builtin: bool = True
    columns: tuple[Column, ...] = ()
    #: A custom resource's ``openAPIV3Schema`` (None for the built-ins).
    schema: dict[str, Any] | None = attrs.field(default=None, eq=False)
    #: Field selector labels beyond metadata.name and metadata.namespace.
    field_labels: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``volumes.lhtrio.io`` (``services`` for the core group): how errors name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_group(self) -> str:
        """``Volume.lhtrio.io``: how validation errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage(self) -> tuple[str, str]:
        """Where its objects live (every version of a resource shares it)."""
        return (self.group or "core", self.plural)


def _builtin(
    api_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    status: bool = False,
    fields: tuple[str, ...] = (),
) -> Resource:
    group, _, version = api_version.rpartition("/")
    return Resource(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=categories,
        status=status,
        field_labels=fields,
    )


_ALL = ("all",)
NAMESPACE: Final = _builtin(
    "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), status=True
)
CRD: Final = _builtin(
    "apiextensions.k8s.io/v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    short=("crd", "crds"),
    categories=("api-extensions",),
    status=True,
)

#: The built-in resources (what ``deploy/`` and the Kubernetes store use, and a few neighbours).
BUILTINS: Final = (
    NAMESPACE,
    _builtin("v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin("v1", "services", "Service", short=("svc",), categories=_ALL, status=True),
    _builtin("v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("v1", "secrets", "Secret", fields=("type",)),
    _builtin(
        "v1",
        "events",
        "Event",
        short=("ev",),
        fields=(
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ),
    ),
    _builtin(
        "v1",
        "pods",
        "Pod",
        short=("po",),
        categories=_ALL,
        status=True,
        fields=("spec.nodeName", "status.phase"),
    ),
    _builtin("v1", "nodes", "Node", namespaced=False, short=("no",), status=True),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin(
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    _builtin("apps/v1", "daemonsets", "DaemonSet", short=("ds",), categories=_ALL, status=True),
    _builtin(
        "apps/v1", "deployments", "Deployment", short=("deploy",), categories=_ALL, status=True
    ),
    _builtin(
        "storage.k8s.io/v1", "storageclasses", "StorageClass", namespaced=False, short=("sc",)
    ),
    _builtin("storage.k8s.io/v1", "csidrivers", "CSIDriver", namespaced=False),
    CRD,
)


def _columns(version: dict[str, Any]) -> tuple[Column, ...]:
    return tuple(
        Column(
            name=str(raw.get("name", "")),
            type=str(raw.get("type", "string")),
            json_path=str(raw.get("jsonPath", "")),
            description=str(raw.get("description", "")),
            priority=int(raw.get("priority", 0)),
            format=str(raw.get("format", "")),
        )
        for raw in version.get("additionalPrinterColumns") or ()
    )


def resources_of_crd(crd: dict[str, Any]) -> list[Resource]:
    """The served versions of a stored (hence valid) CRD."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            Resource(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec["scope"] == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in (version.get("subresources") or {}),
                builtin=False,
                columns=_columns(version),
                schema=schema,
            )
        )
    return out


@attrs.frozen
class Catalog:
    """Every resource served at one moment: the built-ins and the CRDs' resources."""

    resources: tuple[Resource, ...]

    @classmethod
    def of(cls, crds: Iterable[dict[str, Any]]) -> Catalog:
        builtin = {(r.group, r.plural) for r in BUILTINS}
        extra = [
            resource
            for crd in crds
            for resource in resources_of_crd(crd)
            if (resource.group, resource.plural) not in builtin
        ]
        return cls((*BUILTINS, *extra))

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        for resource in self.resources:
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> its versions, in the order served (the first is preferred)."""
        out: dict[str, list[str]] = {}
        for resource in self.resources:
            versions = out.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.resources if (r.group, r.version) == (group, version)]

    def kinds_of(self, group: str, plural: str) -> list[Resource]:
        """Every served version of one resource."""
        return [r for r in self.resources if (r.group, r.plural) == (group, plural)]
