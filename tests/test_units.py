"""Sizes on the command line and in reports."""

from __future__ import annotations

import pytest

from lhtrio.errors import InvalidArgumentError
from lhtrio.units import format_size, human_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("1Gi", 1 << 30), ("512Mi", 512 << 20), ("10G", 10 * 10**9), (7, 7)],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5Gi", "-1", "12 parsecs", "Gi"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a number of bytes"):
        parse_size(text)


def test_format_size_keeps_exact_units_only() -> None:
    assert format_size(1 << 30) == "1Gi"
    assert format_size(3 << 20) == "3Mi"
    assert format_size(4097) == "4097"


def test_human_size_rounds_for_reading() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(3355443) == "3.2 MiB"
    assert human_size(5 << 40) == "5.0 TiB"
