"""``lhtrio node ls|get`` and ``lhtrio setting`` against the real admin API."""

from __future__ import annotations

import json
import re

import attrs

from lhtrio.models.cluster import Node, ObjectMeta, Setting
from tests.admin.conftest import Lhtrio
from tests.manager.golden import GOLDEN


async def add_golden_node(lhtrio: Lhtrio) -> None:
    """``n3``: ready and schedulable, one disk of 100 GiB with 80 GiB free and 1 GiB scheduled."""
    node = GOLDEN["node"]
    assert isinstance(node, Node)
    await lhtrio.api.objects.create(attrs.evolve(node, meta=ObjectMeta(name="n3")))


def rows(text: str) -> list[list[str]]:
    """A table's cells (columns are two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


async def test_node_ls_shows_readiness_scheduling_and_disk_space(lhtrio: Lhtrio) -> None:
    await add_golden_node(lhtrio)
    result = await lhtrio("node", "ls")
    assert result.exit_code == 0, result.output
    assert rows(result.stdout) == [
        ["NAME", "READY", "SCHEDULABLE", "DISKS", "AVAILABLE", "MAXIMUM", "SCHEDULED"],
        # registered, no status yet: scheduling is allowed (the spec), readiness unknown
        ["n1", "unknown", "yes", "0", "0 B", "0 B", "0 B"],
        ["n2", "unknown", "yes", "0", "0 B", "0 B", "0 B"],
        ["n3", "yes", "yes", "1", "80.0 GiB", "100.0 GiB", "1.0 GiB"],
    ]
    listed = json.loads((await lhtrio("node", "ls", "-o", "json")).stdout)
    assert listed["data"] == [await lhtrio.document("Node", n) for n in ("n1", "n2", "n3")]


async def test_node_get_shows_each_disk(lhtrio: Lhtrio) -> None:
    await add_golden_node(lhtrio)
    result = await lhtrio("node", "get", "n3")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert ["ready", "yes"] in table
    assert ["zone", "zone-a"] in table
    assert ["default", "/var/lib/lhtrio/n1", "yes", "allowed", "80.0 GiB", "100.0 GiB",
            "1.0 GiB", "10.0 GiB", "1", "ssd"] in table  # fmt: skip
    printed = json.loads((await lhtrio("node", "get", "n3", "-o", "json")).stdout)
    assert printed == await lhtrio.document("Node", "n3")


async def test_node_get_of_an_unknown_node_exits_3(lhtrio: Lhtrio) -> None:
    result = await lhtrio("node", "get", "n9")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: ")
    assert "n9" in result.stderr


async def test_setting_ls_get_and_set(lhtrio: Lhtrio) -> None:
    listed = await lhtrio("setting", "ls")
    assert listed.exit_code == 0, listed.output
    assert ["default-replica-count", "3"] in rows(listed.stdout)  # the default, never set

    result = await lhtrio("setting", "set", "default-replica-count", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "setting default-replica-count = 2\n"
    stored = await lhtrio.api.objects.get(Setting, "default-replica-count")
    assert stored.spec.value == "2"

    got = await lhtrio("setting", "get", "default-replica-count")
    assert got.stdout == "2\n"
    as_json = json.loads(
        (await lhtrio("setting", "get", "default-replica-count", "-o", "json")).stdout
    )
    assert as_json == await lhtrio.document("Setting", "default-replica-count")
    documents = json.loads((await lhtrio("setting", "ls", "-o", "json")).stdout)["data"]
    assert as_json in documents


async def test_a_bad_setting_value_is_the_apis_message_and_changes_nothing(lhtrio: Lhtrio) -> None:
    before = await lhtrio.api.state()
    result = await lhtrio("setting", "set", "default-replica-count", "many")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "many" in result.stderr
    unknown = await lhtrio("setting", "set", "no-such-setting", "1")
    assert unknown.exit_code == 3
    assert "default-replica-count" in unknown.stderr  # the known ones are listed
    assert await lhtrio.api.state() == before
