"""``If-Match`` and the list filters, parsed (sans-I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhtrio.api.problems import FieldError
from lhtrio.api.query import enum_filter, name_filter, parse_if_match
from lhtrio.models.cluster.volume import VolumeState


@pytest.mark.parametrize(
    ("header", "version"),
    [(None, None), ("*", None), ('"42"', 42), ("42", 42), (' "7" ', 7), ('""', 0), ("0", 0)],
)
def test_if_match_gives_the_version(header: str | None, version: int | None) -> None:
    assert parse_if_match(header) == version


@pytest.mark.parametrize(
    "header", ["", '"', 'W/"1"', "1, 2", "01", "-1", "1.5", "x", '"1', "1" * 20, '"*"']
)
def test_a_malformed_if_match_names_the_header(header: str) -> None:
    with pytest.raises(FieldError) as refused:
        parse_if_match(header)
    assert refused.value.field == "If-Match"


@given(st.text(max_size=30))
def test_any_if_match_is_a_version_or_refused(header: str) -> None:
    try:
        version = parse_if_match(header)
    except FieldError:
        return
    assert version is None or 0 <= version < 10**19


def test_filters() -> None:
    assert enum_filter({"state": "attached"}, "state", VolumeState) is VolumeState.ATTACHED
    assert enum_filter({}, "state", VolumeState) is None
    with pytest.raises(FieldError, match="creating"):
        enum_filter({"state": "on"}, "state", VolumeState)
    assert name_filter({"node": "n1"}, "node", "node") == "n1"
    with pytest.raises(FieldError):
        name_filter({"volume": "x" * 64}, "volume", "volume")
