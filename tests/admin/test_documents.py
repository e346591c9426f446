"""Reading the API's documents (no I/O): the engine a volume is described with, and documents
with keys missing (an older or newer server) rendered without failing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lhtrio.admin.documents import (
    conditions,
    describe,
    render_description,
    render_node,
    render_nodes,
    render_settings,
    render_snapshots,
    render_volumes,
)

DOCUMENTS = Path(__file__).parent.parent / "manager" / "documents"


def golden(kind: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DOCUMENTS / f"{kind}.json").read_text())
    return document


def engine(name: str, node: str, endpoint: str, modes: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"nodeID": node},
        "status": {"endpoint": endpoint, "replicaModeMap": modes},
    }


def test_the_engine_described_is_the_one_on_the_volumes_current_node() -> None:
    volume = golden("volume")  # attached on n1
    engines = {
        "data": [
            engine("db-1-e-0", "n2", "nbd://n2/db-1", {"r": "ERR"}),
            engine("db-1-e-1", "n1", "nbd://n1/db-1", {"r": "RW"}),
        ]
    }
    replicas = {"data": [golden("replica")]}
    described = describe(volume, replicas, engines)
    assert (described["engine"], described["endpoint"]) == ("db-1-e-1", "nbd://n1/db-1")
    assert described["replicas"] == [
        {
            "name": "db-1-r-0a1b2c3d",
            "node": "n1",
            "mode": "",
            "state": "running",
            "failed": False,
            "rebuild": {},
        }
    ]


def test_the_golden_documents_read_as_expected() -> None:
    described = describe(
        golden("volume"), {"data": [golden("replica")]}, {"data": [golden("engine")]}
    )
    assert described["replicas"][0]["mode"] == "RW"
    assert described["endpoint"] == "nbd://127.0.0.11:10809/db-1"
    text = render_description(described)
    assert "robustness  degraded" in text
    assert "Scheduled=False (ReplicaSchedulingFailure: no node of another zone" in text
    assert conditions(golden("node")) == "Ready=True; Schedulable=True"


def test_documents_missing_keys_render_without_failing() -> None:
    for bare in ({}, {"metadata": {"name": "x"}}, {"status": None, "spec": {"size": "junk"}}):
        assert render_volumes({"data": [bare]}).startswith("NAME")
        assert render_nodes({"data": [bare]}).startswith("NAME")
        assert render_node(bare).startswith("name")
        assert render_settings({"data": [bare]}).startswith("NAME")
        assert render_snapshots({"data": [bare]}).startswith("NAME")
        assert render_description(describe(bare, {}, {})).startswith("name")
    assert render_volumes({}) == "NAME  SIZE  REPLICAS  STATE  ROBUSTNESS  NODE"


def test_a_node_without_a_schedulable_condition_says_what_its_spec_allows() -> None:
    node = golden("node")
    node["status"]["conditions"] = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    node["spec"]["allowScheduling"] = False
    assert "schedulable no (disabled)" in render_node(node)
    assert render_nodes({"data": [node]}).splitlines()[1].split()[1:4] == [
        "yes",
        "no",
        "(disabled)",
    ]
