"""Names and labels: one rule for each, the same everywhere a name enters."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import (
    MAX_LABELS,
    MAX_SNAPSHOT_BYTES,
    snapshot_name_problem,
    validate_instance_name,
    validate_labels,
    validate_snapshot_name,
    validate_volume_name,
)


def test_the_longest_snapshot_file_name_fits_255_bytes() -> None:
    assert len(f"volume-snap-{'x' * MAX_SNAPSHOT_BYTES}.img.checksum.tmp".encode()) == 255


@given(st.text(max_size=80))
def test_an_accepted_snapshot_name_makes_file_names_that_fit(name: str) -> None:
    try:
        validate_snapshot_name(name)
    except InvalidArgumentError:
        assert snapshot_name_problem(name) is not None
        return
    assert len(f"volume-snap-{name}.img.checksum.tmp".encode()) <= 255
    assert "/" not in name
    assert ".." not in name
    assert not name.startswith("-")
    assert not any(unicodedata.category(c) == "Cc" for c in name)


@pytest.mark.parametrize(
    "name", ["\U0001f600" * 60, "a\x00b", "a\x1bb", "\ud800", "-rf", "a/../b", "x" * 65, ""]
)
def test_hostile_snapshot_names(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid snapshot name"):
        validate_snapshot_name(name)


def test_volume_and_instance_names() -> None:
    assert validate_volume_name("db-1.prod_a") == "db-1.prod_a"
    assert validate_instance_name("engine-" + "r" * 121) == "engine-" + "r" * 121
    for bad in ("", "-x", ".x", "a b", "é", "x" * 64, 5):
        with pytest.raises(InvalidArgumentError, match="invalid volume name"):
            validate_volume_name(bad)
    with pytest.raises(InvalidArgumentError, match="invalid node name"):
        validate_instance_name("x" * 129, what="node")


def test_labels_follow_kubernetes() -> None:
    good = {
        "app": "db",
        "example.com/tier": "gold",
        "empty": "",
        "replica-expansion": "1073741824",
        "a" * 63: "b" * 63,
    }
    assert validate_labels(good) == good
    bad: list[object] = [
        {"a": "\x01" * 100_000},
        {"x" * 64: "v"},
        {"k": "v" * 64},
        {"Example.COM/k": "v"},
        {"/k": "v"},
        {"k": "-v"},
        {"k k": "v"},
        {1: "v"},
        {"k": 1},
        {f"k{i}": "" for i in range(MAX_LABELS + 1)},
        ["k", "v"],
        None,
    ]
    for labels in bad:
        with pytest.raises(InvalidArgumentError):
            validate_labels(labels)


@given(st.dictionaries(st.text(max_size=300), st.text(max_size=300), max_size=80))
def test_accepted_labels_keep_a_snapshot_meta_small(labels: dict[str, str]) -> None:
    """Bounded by the rules, a .meta with labels stays a few KiB (the loader takes up to 1 MiB)."""
    try:
        validate_labels(labels)
    except InvalidArgumentError:
        return
    assert len(json.dumps(labels)) <= MAX_LABELS * (253 + 1 + 63 + 63 + 8)
