"""The node's port range, as pure logic."""

from __future__ import annotations

import contextlib

import pytest

from lhtrio.errors import InvalidArgumentError, NoSpaceError
from lhtrio.instances.ports import PortRange, parse_port_range


def test_parse_port_range() -> None:
    assert parse_port_range("10000-10999") == (10000, 10999)
    assert parse_port_range(" 5-5 ") == (5, 5)
    for bad in ("", "10000", "2-1", "0-10", "1-65536", "a-b", "1-2-3"):
        with pytest.raises(InvalidArgumentError):
            parse_port_range(bad)


def test_ports_are_proposed_round_robin_and_come_back_when_released() -> None:
    ports = PortRange(100, 102)
    first = next(ports.candidates())
    ports.take(first)
    second = next(ports.candidates())
    ports.take(second)
    assert (first, second) == (100, 101)
    ports.release(first)
    assert _all(ports) == [102, 100]  # round-robin: the released port comes last
    assert ports.used == {101}


def test_busy_ports_are_skipped_and_an_exhausted_range_says_so() -> None:
    ports = PortRange(100, 101)
    ports.skip(100)
    assert next(ports.candidates()) == 101
    ports.take(101)
    with pytest.raises(NoSpaceError, match="no free port left in 100-101 \\(1 in use, 1 taken"):
        next(ports.candidates())
    ports.release(101)  # other programs come and go: skipped ports get another chance
    assert sorted(_all(ports)) == [100, 101]


def _all(ports: PortRange) -> list[int]:
    """Every candidate until the range says it is exhausted."""
    found: list[int] = []
    with contextlib.suppress(NoSpaceError):
        found.extend(ports.candidates())
    return found
