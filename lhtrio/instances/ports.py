"""The node's port range: which ports instances listen on (sans-I/O).

Longhorn's instance manager hands each process ports from a range (``longhorn-facts.md`` §6.5);
so does the node. A port goes back to the pool when its instance stops. A port that turns out to
be taken by someone else is skipped for a while (it is *busy*), not fatal: the caller tries the
next candidate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lhtrio.errors import InvalidArgumentError, NoSpaceError

__all__ = ["PortRange", "parse_port_range"]

_RANGE = re.compile(r"^(\d{1,5})-(\d{1,5})$")


def parse_port_range(text: str) -> tuple[int, int]:
    """``"10000-10999"`` -> ``(10000, 10999)``; InvalidArgumentError if it is not a range."""
    match = _RANGE.match(text.strip())
    low, high = (int(match.group(1)), int(match.group(2))) if match else (0, -1)
    if not match or not 1 <= low <= high <= 65535:
        raise InvalidArgumentError(f"port range {text!r} is not LOW-HIGH within 1-65535")
    return low, high


class PortRange:
    """Ports ``low..high``; :meth:`candidates` proposes free ones, round-robin."""

    def __init__(self, low: int, high: int) -> None:
        if not 1 <= low <= high <= 65535:
            raise InvalidArgumentError(f"port range {low}-{high} is not within 1-65535")
        self.low = low
        self.high = high
        self._used: set[int] = set()
        self._busy: set[int] = set()
        self._next = low

    @property
    def used(self) -> frozenset[int]:
        return frozenset(self._used)

    def candidates(self) -> Iterator[int]:
        """Every port neither in use by an instance nor known busy, once, from where the last
        allocation stopped; NoSpaceError at the end (the range is exhausted)."""
        size = self.high - self.low + 1
        start = self._next
        for i in range(size):
            port = self.low + (start - self.low + i) % size
            if port not in self._used and port not in self._busy:
                yield port
        raise NoSpaceError(
            f"no free port left in {self.low}-{self.high} ({len(self._used)} in use, "
            f"{len(self._busy)} taken by other programs)"
        )

    def take(self, port: int) -> None:
        self._used.add(port)
        self._next = port + 1 if port < self.high else self.low

    def skip(self, port: int) -> None:
        """``port`` is taken by another program: do not propose it again (until a release)."""
        self._busy.add(port)

    def release(self, port: int) -> None:
        self._used.discard(port)
        self._busy.clear()  # other programs come and go: give those ports another chance
