"""The CustomResourceDefinitions of the control plane's kinds, generated from the models.

One source of truth: each CRD's ``openAPIV3Schema`` is the store document's schema
(:mod:`lhtrio.manager.store.schema`, the *read* flavour, every record inlined) turned into
Kubernetes' structural dialect, so the API server refuses what the codec would refuse — names
past their length, values outside their enums, sizes that are not decimal strings, counts out of
range — before anything is stored. ``deploy/crds.yaml`` is this module's output
(``python -m lhtrio.manager.store.crds > deploy/crds.yaml``); ``tests/deploy`` fails when the
committed file drifts from it.

**Which kinds.** Volume, Engine, Replica, Node, Setting and VolumeAttachment are custom
resources of group ``lhtrio.io``, version ``v1``, namespaced (lhtrio keeps every object in one
namespace, ``lhtrio-system`` by default), each with a ``status`` subresource (the manager writes
status there, an operator's ``kubectl apply`` writes the spec), short names after Longhorn's
(``lhv``, ``lhe``, ``lhr``, ``lhn``, ``lhs``, ``lhva``), the category ``lhtrio`` (``kubectl get
lhtrio`` lists them all) and printer columns (``kubectl get volumes.lhtrio.io``: state,
robustness, size, node, age). A node's heartbeat (NodeLease) and events (Event) are Kubernetes'
own ``coordination.k8s.io/v1`` Leases and ``core/v1`` Events on the Kubernetes store
(:mod:`lhtrio.manager.store.kube_format` maps them): they get no CRD.

**From JSON Schema to a structural schema.** ``type: [T, "null"]`` becomes ``type: T,
nullable: true``; ``const`` (``apiVersion``, ``kind``) and ``title`` go (the API server checks
those itself); ``metadata`` keeps only the rule on ``name`` (a CRD may restrict nothing else of
it): 63 characters for a volume and its attachment, the known names for a setting. No field
preserves unknown fields: a newer node's new field arrives with the newer CRD, applied with it.

**What is required.** The kinds an operator creates (Volume, Setting, VolumeAttachment, Node)
keep every key the codec cannot default as required. Engines and replicas are written only by the
managers, which validate every object before writing it and read it back through the codec;
their CRDs check the shape and the values of the fields present and leave their presence to the
codec, so the Kubernetes store remains a store of documents of any shape (the store conformance
suite stores partial Engines) while still refusing a wrong value.

Pure: no I/O; :func:`render` is the YAML of :func:`crds`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

import attrs
import yaml

from lhtrio.manager.store.schema import document_schema
from lhtrio.models.cluster import Engine, Node, Replica, Setting, Volume, VolumeAttachment
from lhtrio.models.cluster.validate import ClusterObject

__all__ = [
    "CATEGORY",
    "CUSTOM_KINDS",
    "GROUP",
    "VERSION",
    "Column",
    "CustomKind",
    "crd",
    "crds",
    "main",
    "open_api_schema",
    "render",
]

GROUP: Final = "lhtrio.io"
VERSION: Final = "v1"
#: ``kubectl get lhtrio`` lists every kind of the group.
CATEGORY: Final = "lhtrio"

Schema = dict[str, Any]


@attrs.frozen(kw_only=True)
class Column:
    """A printer column: ``kubectl get`` shows ``json_path`` of each object under ``name``."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_dict(self) -> Schema:
        out: Schema = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


_AGE: Final = Column(
    name="Age", type="date", json_path=".metadata.creationTimestamp", description="Age"
)


@attrs.frozen(kw_only=True)
class CustomKind:
    """How one kind of :mod:`lhtrio.models.cluster` is served as a custom resource."""

    model: type[ClusterObject]
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[Column, ...]
    #: Whether an operator creates objects of this kind (their required keys stay required).
    operator_created: bool

    @property
    def kind(self) -> str:
        return self.model.KIND

    @property
    def name(self) -> str:
        """The CRD's name, ``PLURAL.GROUP``."""
        return f"{self.plural}.{GROUP}"


def _state(path: str, what: str) -> Column:
    return Column(name="State", type="string", json_path=path, description=what)


def _node(path: str, what: str) -> Column:
    return Column(name="Node", type="string", json_path=path, description=what)


def _volume(path: str) -> Column:
    return Column(name="Volume", type="string", json_path=path, description="The volume")


CUSTOM_KINDS: Final[tuple[CustomKind, ...]] = (
    CustomKind(
        model=Volume,
        plural="volumes",
        short_names=("lhv",),
        operator_created=True,
        columns=(
            _state(".status.state", "The volume's state (attached, detached, ...)"),
            Column(
                name="Robustness",
                type="string",
                json_path=".status.robustness",
                description="healthy, degraded or faulted",
            ),
            Column(name="Size", type="string", json_path=".spec.size", description="Bytes"),
            _node(".status.currentNodeID", "The node the volume is attached to"),
            _AGE,
        ),
    ),
    CustomKind(
        model=Engine,
        plural="engines",
        short_names=("lhe",),
        operator_created=False,
        columns=(
            _state(".status.currentState", "The engine instance's state"),
            _node(".spec.nodeID", "The node the engine runs on"),
            _volume(".spec.volumeName"),
            Column(
                name="Endpoint",
                type="string",
                json_path=".status.endpoint",
                description="Where the volume is served",
                priority=1,
            ),
            _AGE,
        ),
    ),
    CustomKind(
        model=Replica,
        plural="replicas",
        short_names=("lhr",),
        operator_created=False,
        columns=(
            _state(".status.currentState", "The replica instance's state"),
            _node(".spec.nodeID", "The node the replica lives on"),
            _volume(".spec.volumeName"),
            Column(
                name="Disk",
                type="string",
                json_path=".spec.diskPath",
                description="The disk the replica lives on",
                priority=1,
            ),
            _AGE,
        ),
    ),
    CustomKind(
        model=Node,
        plural="nodes",
        short_names=("lhn",),
        operator_created=True,
        columns=(
            Column(
                name="AllowScheduling",
                type="boolean",
                json_path=".spec.allowScheduling",
                description="Whether new replicas may be placed on the node",
            ),
            Column(
                name="Evicting",
                type="boolean",
                json_path=".spec.evictionRequested",
                description="Whether the node's replicas are being moved off it",
            ),
            Column(name="Zone", type="string", json_path=".status.zone", description="Zone"),
            _AGE,
        ),
    ),
    CustomKind(
        model=Setting,
        plural="settings",
        short_names=("lhs",),
        operator_created=True,
        columns=(
            Column(name="Value", type="string", json_path=".spec.value", description="Value"),
            Column(
                name="Applied",
                type="boolean",
                json_path=".status.applied",
                description="Whether the value is in effect",
            ),
            _AGE,
        ),
    ),
    CustomKind(
        model=VolumeAttachment,
        plural="volumeattachments",
        short_names=("lhva",),
        operator_created=True,
        columns=(_volume(".spec.volume"), _AGE),
    ),
)


def _structural(schema: Mapping[str, Any]) -> Schema:
    """``schema`` (JSON Schema, inlined) in the dialect of a CRD's ``openAPIV3Schema``."""
    out: Schema = {}
    for key, value in schema.items():
        if key in ("const", "title", "$schema"):
            continue
        if key == "type" and isinstance(value, list):
            (kind,) = [t for t in value if t != "null"]
            out["type"] = kind
            out["nullable"] = True
        elif key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = _structural(value)
        else:
            out[key] = value
    return out


def open_api_schema(custom: CustomKind) -> Schema:
    """The ``openAPIV3Schema`` of ``custom``'s objects (see the module docstring)."""
    document = document_schema(custom.model, written=False, ref=None)
    schema = _structural(document)
    properties = schema["properties"]
    name = properties["metadata"]["properties"]["name"]
    properties["metadata"] = {"type": "object", "properties": {"name": name}}
    required = [
        k for k in schema.get("required", []) if k not in ("apiVersion", "kind", "metadata")
    ]
    if not custom.operator_created:
        properties["spec"] = {k: v for k, v in properties["spec"].items() if k != "required"}
    schema.pop("required", None)
    if required:
        schema["required"] = required
    return schema


def crd(custom: CustomKind) -> Schema:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of ``custom``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": custom.name,
            "labels": {"app.kubernetes.io/name": "lhtrio", "app.kubernetes.io/part-of": "lhtrio"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": custom.kind,
                "listKind": f"{custom.kind}List",
                "plural": custom.plural,
                "singular": custom.kind.lower(),
                "shortNames": list(custom.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_dict() for c in custom.columns],
                    "schema": {"openAPIV3Schema": open_api_schema(custom)},
                }
            ],
        },
    }


def crds() -> list[Schema]:
    """Every CRD, in :data:`CUSTOM_KINDS`' order."""
    return [crd(custom) for custom in CUSTOM_KINDS]


_HEADER: Final = """\
# The CustomResourceDefinitions of lhtrio's control plane (group lhtrio.io).
# Generated from the models: python -m lhtrio.manager.store.crds > deploy/crds.yaml
# Do not edit by hand (tests/deploy/test_crds.py fails when this file drifts); see docs/deploy.md.
"""


def render(documents: list[Schema]) -> str:
    """``documents`` as one YAML stream, with the header saying where it comes from."""
    body = yaml.safe_dump_all(documents, sort_keys=False, width=100, explicit_start=True)
    return _HEADER + body


def main() -> None:
    """Print :func:`render` of :func:`crds` (``python -m lhtrio.manager.store.crds``)."""
    sys.stdout.write(render(crds()))


if __name__ == "__main__":
    main()
