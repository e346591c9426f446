"""Sizes on the command line and in reports."""

from __future__ import annotations

import pytest

from lhtrio import units
from lhtrio.errors import InvalidArgumentError
from lhtrio.units import format_size, human_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("1Gi", 1 << 30), ("512Mi", 512 << 20), ("10G", 10 * 10**9), (7, 7)],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5Gi", "12 parsecs", "Gi", "1 2"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a number of bytes"):
        parse_size(text)


def test_parse_size_says_a_negative_size_is_negative() -> None:
    with pytest.raises(InvalidArgumentError, match="'-5' is negative"):
        parse_size("-5")


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("1Gi", 1 << 30), ("512MiB", 512 << 20), ("1T", 10**12), ("8Ki", 8192)],
)
def test_parse_volume_size_takes_positive_multiples_of_the_block(text: str, size: int) -> None:
    assert units.parse_volume_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "1G",
            "size 1G is 1000000000 bytes, not a multiple of 4096: "
            "use 1Gi (1073741824), 999997440 or 1000001536",
        ),
        (
            "1GB",
            "size 1GB is 1000000000 bytes, not a multiple of 4096: "
            "use 1Gi (1073741824), 999997440 or 1000001536",
        ),
        ("5000", "size 5000 bytes is not a multiple of 4096: use 4096 or 8192"),
        ("1k", "size 1k is 1000 bytes, not a multiple of 4096: use 4096"),
        ("8k", "size 8k is 8000 bytes, not a multiple of 4096: use 8Ki (8192) or 4096"),
    ],
)
def test_parse_volume_size_refuses_unaligned_sizes_naming_the_nearest_valid_ones(
    text: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        units.parse_volume_size(text)
    assert str(caught.value) == message
    for suggestion in message.split("use ")[1].replace(" or ", ", ").split(", "):
        assert units.parse_volume_size(suggestion.split(" (")[0]) % units.BLOCK == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [("0", "not positive"), (0, "not positive"), (-4096, "not positive"), ("-5", "negative")],
)
def test_parse_volume_size_refuses_sizes_that_are_not_positive(text: str | int, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        units.parse_volume_size(text)


def test_parse_volume_size_refuses_sizes_no_file_can_have() -> None:
    with pytest.raises(InvalidArgumentError, match="more than the largest volume size"):
        units.parse_volume_size("9000000Ti")


def test_every_example_a_size_error_gives_is_a_valid_volume_size() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_size("ten gigs")
    examples = str(caught.value).split("(e.g. ")[1].rstrip(")").replace(" or ", ", ").split(", ")
    assert len(examples) >= 3
    for example in examples:
        units.parse_volume_size(example)


def test_format_size_keeps_exact_units_only() -> None:
    assert format_size(1 << 30) == "1Gi"
    assert format_size(3 << 20) == "3Mi"
    assert format_size(4097) == "4097"


def test_human_size_rounds_for_reading() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(3355443) == "3.2 MiB"
    assert human_size(5 << 40) == "5.0 TiB"
