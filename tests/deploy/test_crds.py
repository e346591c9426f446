"""The CRDs (deploy/crds.yaml) are the generator's output from the models, exactly; they are
valid apiextensions.k8s.io/v1 objects with structural schemas; every valid object of every custom
kind validates against its CRD's schema, and what the API and the codec refuse (sizes that are
not strings of digits, values outside an enum, counts out of range, over-long names, unknown
settings) does not."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lhtrio.manager.store.codec import to_document
from lhtrio.manager.store.crds import CATEGORY, CUSTOM_KINDS, GROUP, crds, render
from tests.deploy.manifests import DEPLOY, KUBERNETES, cr_validator, documents
from tests.models.cluster_strategies import BY_KIND

CUSTOM = [custom.kind for custom in CUSTOM_KINDS]


def test_the_committed_crds_are_the_generators_output() -> None:
    committed = (DEPLOY / "crds.yaml").read_text()
    assert committed == render(crds()), (
        "deploy/crds.yaml drifted from the models: run "
        "python -m lhtrio.manager.store.crds > deploy/crds.yaml"
    )


def test_every_custom_kind_has_a_crd_with_its_names_and_printer_columns() -> None:
    committed = documents(DEPLOY / "crds.yaml")
    assert [c["spec"]["names"]["kind"] for c in committed] == CUSTOM
    assert sorted(CUSTOM) == ["Engine", "Node", "Replica", "Setting", "Volume", "VolumeAttachment"]
    short = {c["spec"]["names"]["kind"]: c["spec"]["names"]["shortNames"] for c in committed}
    assert short == {
        "Volume": ["lhv"],
        "Engine": ["lhe"],
        "Replica": ["lhr"],
        "Node": ["lhn"],
        "Setting": ["lhs"],
        "VolumeAttachment": ["lhva"],
    }
    for crd in committed:
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{GROUP}"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["categories"] == [CATEGORY]
        (version,) = spec["versions"]
        assert version["subresources"] == {"status": {}}
        assert version["additionalPrinterColumns"][-1]["name"] == "Age"
    (volume,) = [c for c in committed if c["spec"]["names"]["kind"] == "Volume"]
    columns = volume["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("State", ".status.state"),
        ("Robustness", ".status.robustness"),
        ("Size", ".spec.size"),
        ("Node", ".status.currentNodeID"),
        ("Age", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["metadata"]["name"])
def test_each_crd_is_a_valid_kubernetes_object(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, KUBERNETES, strict=True)


def _walk(schema: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for key, sub in schema.get("properties", {}).items():
        out += _walk(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out += _walk(schema[key], f"{path}[{key}]")
    return out


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["metadata"]["name"])
def test_each_schema_is_structural(crd: dict[str, Any]) -> None:
    """What the API server demands of a CRD's schema: a type at every node (one type, no
    lists), no ``$ref``, ``const`` or ``additionalProperties: false``, and a metadata that
    restricts nothing but the name."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert isinstance(node.get("type"), str), path
        assert not {"$ref", "const", "anyOf", "oneOf", "title"} & node.keys(), path
        assert node.get("additionalProperties", {}) is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
    assert set(schema["properties"]["metadata"]["properties"]) == {"name"}


@pytest.mark.parametrize("kind", CUSTOM)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_valid_objects_document_validates_against_its_crd(
    kind: str, data: st.DataObject
) -> None:
    document: dict[str, Any] = to_document(data.draw(BY_KIND[kind]))
    document["metadata"] = {"name": document["metadata"]["name"]}  # the server's to check
    cr_validator(kind).validate(document)


def volume(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Volume",
        "metadata": {"name": "db-1"},
        "spec": {"size": "1073741824", "numberOfReplicas": 3, **spec},
    }


def test_a_good_volume_validates() -> None:
    cr_validator("Volume").validate(volume())


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"size": 1073741824}, "size"),
        ({"size": "1G"}, "size"),
        ({"size": "-1"}, "size"),
        ({"size": "01"}, "size"),
        ({"numberOfReplicas": 0}, "numberOfReplicas"),
        ({"numberOfReplicas": 21}, "numberOfReplicas"),
        ({"numberOfReplicas": "3"}, "numberOfReplicas"),
        ({"frontend": "iscsi"}, "frontend"),
        ({"dataLocality": "nearby"}, "dataLocality"),
        ({"nodeID": "../n1"}, "nodeID"),
        ({"diskSelector": ["ssd", ""]}, "diskSelector"),
        ({"staleReplicaTimeout": -1}, "staleReplicaTimeout"),
    ],
)
def test_a_volume_the_api_would_refuse_does_not_validate(
    change: dict[str, Any], where: str
) -> None:
    errors = list(cr_validator("Volume").iter_errors(volume(**change)))
    assert errors
    assert any(where in "/".join(map(str, e.absolute_path)) for e in errors)


def test_a_volume_without_a_size_or_with_a_long_name_does_not_validate() -> None:
    sizeless = volume()
    del sizeless["spec"]["size"]
    long_name = copy.deepcopy(volume())
    long_name["metadata"]["name"] = "v" * 64
    for bad in (sizeless, long_name):
        with pytest.raises(jsonschema.ValidationError):
            cr_validator("Volume").validate(bad)


def test_only_known_settings_with_text_values_validate() -> None:
    def setting(name: str, value: object) -> dict[str, Any]:
        return {
            "apiVersion": "lhtrio.io/v1",
            "kind": "Setting",
            "metadata": {"name": name},
            "spec": {"value": value},
        }

    cr_validator("Setting").validate(setting("default-replica-count", "2"))
    for bad in (setting("no-such-setting", "2"), setting("default-replica-count", 2)):
        with pytest.raises(jsonschema.ValidationError):
            cr_validator("Setting").validate(bad)


def test_engines_and_replicas_check_the_values_present_and_leave_presence_to_the_codec() -> None:
    partial = {
        "apiVersion": "lhtrio.io/v1",
        "kind": "Engine",
        "metadata": {"name": "e"},
        "spec": {},
    }
    cr_validator("Engine").validate(partial)
    with pytest.raises(jsonschema.ValidationError):
        cr_validator("Engine").validate({**partial, "spec": {"volumeSize": 5}})
    with pytest.raises(jsonschema.ValidationError):
        cr_validator("Replica").validate(
            {**partial, "kind": "Replica", "spec": {"desireState": "dancing"}}
        )
