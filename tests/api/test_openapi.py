"""The OpenAPI document is the API's contract: it lists exactly the app's routes, its schemas
are valid JSON Schema, the store documents and the request bodies the parsers accept validate
against them, and the served answers conform (property checks: ``test_schemathesis.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lhtrio.api import action_bodies, node_bodies, sse
from lhtrio.api.access import PUBLIC
from lhtrio.api.app import make_app
from lhtrio.api.bodies import CREATE_VOLUME, PUT_SETTING
from lhtrio.api.fields import Body
from lhtrio.api.openapi import openapi_document
from lhtrio.api.problems import FieldError
from lhtrio.api.surface import OPERATIONS
from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.codec import KINDS
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster.setting import SETTINGS, parse
from lhtrio.models.selector import parse_selector
from tests.api.conftest import Api

DOCUMENTS = Path(__file__).parents[1] / "manager" / "documents"
DOCUMENT = openapi_document()


def schema_of(name: str) -> jsonschema.Draft202012Validator:
    """A validator of the document's component ``name`` (its $refs resolved in the document)."""
    root = {**DOCUMENT, "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, in OpenAPI's spelling."""
    app = make_app(Objects(MemoryStore()), token="t")
    out = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        out |= {(m, path) for m in set(rule.methods or ()) - {"HEAD", "OPTIONS"}}
    return out


def test_the_document_lists_exactly_the_apps_routes() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
    }
    assert documented == routes()


def test_the_document_is_openapi_3_1_with_valid_schemas() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for name, schema in DOCUMENT["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert name
    text = json.dumps(DOCUMENT)
    for ref in set(re.findall(r'"#/components/(schemas|responses)/([^"]+)"', text)):
        assert ref[1] in DOCUMENT["components"][ref[0]], ref
    ids = [op["operationId"] for ops in DOCUMENT["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_every_error_an_operation_answers_has_the_error_shape() -> None:
    for operation in OPERATIONS:
        answers = DOCUMENT["paths"][operation.path][operation.method.lower()]["responses"]
        own = set(map(str, operation.responses))
        assert set(answers) == {str(operation.status), *map(str, operation.errors), *own, "431"}
        assert "content" not in DOCUMENT["components"]["responses"]["431"]  # (hypercorn's)
        for status in operation.errors:
            response = DOCUMENT["components"]["responses"][str(status)]
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
        if not operation.public:
            assert {"401", "503"} <= set(answers), operation.id


def test_the_public_operations_are_the_ones_the_app_lets_in() -> None:
    public = {path for path, ops in DOCUMENT["paths"].items() if ops["get"].get("security") == []}
    assert public == PUBLIC == {"/v1/openapi.json", "/healthz", "/readyz"}


def test_streams_and_text_have_their_media_types() -> None:
    def media(path: str) -> set[str]:
        return set(DOCUMENT["paths"][path]["get"]["responses"]["200"]["content"])

    watched = {path for path, ops in DOCUMENT["paths"].items() if "get" in ops and any(
        p["name"] == "watch" for p in ops["get"].get("parameters", ())
    )}  # fmt: skip
    assert watched == set(sse.COLLECTIONS)  # the collections the app watches
    for path in watched:
        assert media(path) == {"application/json", "text/event-stream"}, path
    assert media("/v1/watch") == {"text/event-stream"}
    for path in ("/healthz", "/readyz", "/metrics"):
        assert media(path) == {"text/plain"}
    unready = DOCUMENT["paths"]["/readyz"]["get"]["responses"]["503"]
    assert set(unready["content"]) == {"text/plain"}
    kinds = next(
        p for p in DOCUMENT["paths"]["/v1/watch"]["get"]["parameters"] if p["name"] == "kind"
    )
    assert kinds["required"]
    assert set(kinds["schema"]["enum"]) == set(KINDS)


@pytest.mark.parametrize("path", sorted(DOCUMENTS.glob("*.json")), ids=lambda p: p.stem)
def test_the_golden_documents_validate(path: Path) -> None:
    document = json.loads(path.read_text())
    schema_of(document["kind"]).validate(document)


BODIES: list[tuple[str, Body, dict[str, Any]]] = [
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": "10Gi", "numberOfReplicas": 3}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": 4096}),
    ("PutSettingBody", PUT_SETTING, {"value": "3"}),
    ("VolumeActionAttachBody", action_bodies.BODIES["attach"], {"hostId": "n1"}),
    ("VolumeActionDetachBody", action_bodies.BODIES["detach"], {"forceDetach": True}),
    ("VolumeActionSnapshotCreateBody", action_bodies.BODIES["snapshotCreate"],
     {"name": "s1", "labels": {"app": "db", "example.com/tier": ""}}),
    ("VolumeActionSalvageBody", action_bodies.BODIES["salvage"], {"names": ["v-r-1"]}),
    ("VolumeActionUpdateDataLocalityBody", action_bodies.BODIES["updateDataLocality"],
     {"dataLocality": "strict-local"}),
    ("VolumeActionUpdateLabelsBody", action_bodies.BODIES["updateLabels"], {"labels": {}}),
    ("NodeActionNodeUpdateBody", node_bodies.BODIES["nodeUpdate"],
     {"allowScheduling": False, "tags": ["ssd"], "zone": "zone-a", "region": ""}),
    ("NodeActionDiskUpdateBody", node_bodies.BODIES["diskUpdate"],
     {"disks": {"d1": {"path": "/mnt/d1", "storageReserved": "10Gi", "tags": ["fast"]}}}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "value"), BODIES, ids=lambda x: str(x)[:40])
def test_bodies_the_parser_takes_validate(name: str, body: Body, value: dict[str, Any]) -> None:
    body.parse(value)
    schema_of(name).validate(value)


REFUSED: list[tuple[str, Body, dict[str, Any]]] = [
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": "10Gi", "replicas": 3}),
    ("CreateVolumeBody", CREATE_VOLUME, {"size": "10Gi"}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "a/b", "size": "10Gi"}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": True}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": 4095}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": "1Gi", "numberOfReplicas": 21}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": "0Gi"}),
    ("CreateVolumeBody", CREATE_VOLUME, {"name": "v", "size": "-4096"}),
    ("PutSettingBody", PUT_SETTING, {"value": 3}),
    ("VolumeActionAttachBody", action_bodies.BODIES["attach"], {}),
    ("VolumeActionSalvageBody", action_bodies.BODIES["salvage"], {"names": []}),
    ("VolumeActionUpdateDataLocalityBody", action_bodies.BODIES["updateDataLocality"],
     {"dataLocality": "local"}),
    ("NodeActionNodeUpdateBody", node_bodies.BODIES["nodeUpdate"], {"tags": ["a b"]}),
    ("NodeActionDiskUpdateBody", node_bodies.BODIES["diskUpdate"],
     {"disks": {"d1": {"path": "relative"}}}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "value"), REFUSED, ids=lambda x: str(x)[:40])
def test_bodies_the_schema_refuses_the_parser_refuses(
    name: str, body: Body, value: dict[str, Any]
) -> None:
    with pytest.raises(jsonschema.ValidationError):
        schema_of(name).validate(value)
    with pytest.raises(FieldError):
        body.parse(value)


async def test_the_served_document_is_the_generated_one(api: Api) -> None:
    response = await api.bare.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(json.dumps(DOCUMENT))


@pytest.mark.parametrize("value", ["", " true", "True", "3 ", "0x10", "local"])
def test_a_setting_value_no_setting_takes_the_document_refuses(value: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        schema_of("PutSettingBody").validate({"value": value})
    for name in SETTINGS:
        with pytest.raises(InvalidArgumentError):
            parse(name, value)


SELECTOR = next(
    p["schema"]["pattern"]
    for p in DOCUMENT["paths"]["/v1/volumes"]["get"]["parameters"]
    if p["name"] == "labelSelector"
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(SELECTOR, fullmatch=True).filter(lambda t: len(t) <= 4096))
def test_a_label_selector_the_document_allows_is_taken(text: str) -> None:
    parse_selector(text)


@pytest.mark.parametrize("text", ["a in (b)", "a,", "=b", "Example.com/x", "a b", "a=b=c"])
def test_a_label_selector_the_parser_refuses_the_document_refuses(text: str) -> None:
    assert re.search(SELECTOR, text) is None
    with pytest.raises(InvalidArgumentError):
        parse_selector(text)
