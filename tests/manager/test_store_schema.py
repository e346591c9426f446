"""The store documents' JSON Schemas follow the store format exactly: every golden document and
every valid object's document validates (both flavours), and documents the codec would refuse —
a count as a string, a size as a number, an unknown enum value, a hostile name, a missing key —
do not validate against the written flavour."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lhtrio.manager.store.codec import KINDS, RECORDS, to_document
from lhtrio.manager.store.schema import component_schemas, document_schema, record_schema
from lhtrio.models.cluster import meta
from tests.models.cluster_strategies import BY_KIND

DOCUMENTS = Path(__file__).parent / "documents"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def validator(kind: str, *, written: bool = True) -> jsonschema.Draft202012Validator:
    schema = document_schema(KINDS[kind], written=written)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


def golden() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DOCUMENTS.glob("*.json"))]


@pytest.mark.parametrize("written", [True, False])
@pytest.mark.parametrize("document", golden(), ids=lambda d: d["kind"])
def test_golden_documents_validate(document: dict[str, Any], written: bool) -> None:
    validator(document["kind"], written=written).validate(document)


@pytest.mark.parametrize("kind", sorted(BY_KIND))
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_valid_objects_document_validates(kind: str, data: st.DataObject) -> None:
    document = to_document(data.draw(BY_KIND[kind]))
    validator(kind).validate(document)
    validator(kind, written=False).validate(document)


def _golden(kind: str) -> dict[str, Any]:
    (document,) = [d for d in golden() if d["kind"] == kind]
    return document


def _set(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = changed
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return changed


REFUSED = [
    ("Volume", "spec.numberOfReplicas", "3"),
    ("Volume", "spec.numberOfReplicas", 0),
    ("Volume", "spec.numberOfReplicas", 21),
    ("Volume", "spec.size", 1073741824),
    ("Volume", "spec.size", "1Gi"),
    ("Volume", "spec.frontend", "iscsi"),
    ("Volume", "spec.nodeID", "../x"),
    ("Volume", "status.state", "Attached"),
    ("Volume", "status.conditions", [{"type": "Scheduled", "status": "true"}]),
    ("Volume", "status.lastDegradedAt", "yesterday"),
    ("Volume", "status.robustness", KeyError),
    ("Volume", "metadata.name", "x" * 64),
    ("Volume", "metadata.name", "a/b"),
    ("Volume", "metadata.resourceVersion", 42),
    ("Volume", "metadata.labels", {"app": "no spaces"}),
    ("Volume", "metadata.finalizers", ["Not/A Finalizer"]),
    ("Volume", "kind", "Engine"),
    ("Volume", "apiVersion", "longhorn.io/v1beta2"),
    ("Volume", "spec.numberOfReplica", 3),  # an unknown key
    ("Node", "spec.disks.default.path", "relative/path"),
    ("Node", "spec.disks.default.storageReserved", -1),
    ("Node", "spec.disks.default.tags", ["a b"]),
    ("Engine", "status.replicaModeMap", {"db-1-r-0a1b2c3d": "rw"}),
    ("Engine", "spec.volumeSize", 1073741824),
    ("Setting", "metadata.name", "no-such-setting"),
    ("VolumeAttachment", "spec.volume", ""),
]


@pytest.mark.parametrize(("kind", "path", "value"), REFUSED)
def test_what_the_codec_refuses_does_not_validate(kind: str, path: str, value: Any) -> None:
    document = _set(_golden(kind), path, value)
    with pytest.raises(jsonschema.ValidationError):
        validator(kind).validate(document)


def test_reading_lets_keys_with_defaults_be_missing_and_others_be_added() -> None:
    """What the codec reads: a newer node may add a key; an older document may lack one."""
    document = _set(_golden("Volume"), "status", {"ownerID": "n1"})
    document = _set(document, "spec.futureField", True)
    validator("Volume", written=False).validate(document)
    with pytest.raises(jsonschema.ValidationError):
        validator("Volume").validate(document)
    required = _set(_golden("Volume"), "spec.size", KeyError)  # no default: required anyway
    with pytest.raises(jsonschema.ValidationError):
        validator("Volume", written=False).validate(required)


def test_metadata_times_are_left_out_while_unset_never_null() -> None:
    document = _set(_golden("Volume"), "metadata.creationTimestamp", KeyError)
    validator("Volume").validate(document)
    with pytest.raises(jsonschema.ValidationError):
        validator("Volume").validate(_set(document, "metadata.deletionTimestamp", None))


def test_inlined_schemas_have_no_refs_for_crds() -> None:
    """Issue 20 makes CRDs of them: Kubernetes' structural schemas take no $ref."""
    for kind in KINDS.values():
        assert "$ref" not in json.dumps(document_schema(kind, written=False))


def test_components_refer_to_each_other() -> None:
    components = component_schemas(lambda name: {"$ref": f"#/components/schemas/{name}"})
    named = {cls.__name__ for cls in RECORDS} - {meta.ObjectMeta.__name__, meta.Condition.__name__}
    assert set(components) == named
    text = json.dumps(components)
    for ref in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in components
    with pytest.raises(TypeError):
        record_schema(dict)
