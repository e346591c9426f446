"""Sizes as operators write them: ``1073741824``, ``1Gi``, ``512Mi``, ``1T``, ``4k``.

A *volume* size (what ``replica --size``, ``engine --size``, ``ctl expand`` and ``im create``
take) is a positive multiple of :data:`BLOCK` bytes, checked where it is parsed
(:func:`parse_volume_size`), so a replica and an engine never disagree about a size one of them
cannot serve. SI units are powers of ten: ``1G`` is 1000000000 bytes, which is not a whole number
of blocks; the error says so and names the nearest sizes that are.
"""

from __future__ import annotations

import re
from typing import Final

from lhtrio.errors import InvalidArgumentError

__all__ = [
    "BLOCK",
    "MAX_VOLUME_SIZE",
    "parse_size",
    "parse_volume_size",
    "format_size",
    "human_size",
]

#: Every volume size is a multiple of this many bytes (the replicas' block and sector size).
BLOCK: Final = 4096
#: The largest volume size: the largest multiple of BLOCK a file offset (off_t) can reach.
MAX_VOLUME_SIZE: Final = (1 << 63) - BLOCK

_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1 << 10,
    "mi": 1 << 20,
    "gi": 1 << 30,
    "ti": 1 << 40,
}
_SIZE = re.compile(r"^\s*(-?)(\d+)\s*([a-z]*?)b?\s*$", re.IGNORECASE)
_EXAMPLES: Final = "e.g. 10Gi, 512Mi, 1T or 1073741824"


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: plain bytes, SI (k, M, G, T) or binary (Ki, Mi, Gi, Ti) units."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(3).lower() if match else None
    if match is None or unit not in _UNITS:
        raise InvalidArgumentError(
            f"size {text!r} is not a number of bytes with an optional unit ({_EXAMPLES})"
        )
    if match.group(1):
        raise InvalidArgumentError(f"size {text!r} is negative: sizes are positive ({_EXAMPLES})")
    return int(match.group(2)) * _UNITS[unit]


def parse_volume_size(text: str | int) -> int:
    """A volume size: ``text`` parsed, a positive multiple of :data:`BLOCK` up to the maximum.

    InvalidArgumentError otherwise, naming the nearest valid sizes: ``1G is 1000000000 bytes,
    not a multiple of 4096: use 1Gi (1073741824), 999997440 or 1000001536``.
    """
    size = parse_size(text)
    shown = text.strip() if isinstance(text, str) else str(text)
    if size <= 0:
        raise InvalidArgumentError(
            f"size {shown} is not positive: a volume size is a positive multiple of {BLOCK} bytes "
            f"({_EXAMPLES})"
        )
    if size > MAX_VOLUME_SIZE:
        raise InvalidArgumentError(
            f"size {shown} is {size} bytes, more than the largest volume size "
            f"{MAX_VOLUME_SIZE} (8 EiB minus 4 KiB)"
        )
    if size % BLOCK:
        what = f"{shown} is {size} bytes," if shown != str(size) else f"{shown} bytes is"
        raise InvalidArgumentError(
            f"size {what} not a multiple of {BLOCK}: use {_alternatives(text, size)}"
        )
    return size


def _alternatives(text: str | int, size: int) -> str:
    """The valid sizes nearest to ``size``: ``1Gi (1073741824), 999997440 or 1000001536``.

    First the same number in binary units if the operator wrote an SI unit (what they most
    likely meant), then the multiples of BLOCK just below and above, in bytes.
    """
    shown: dict[int, str] = {}
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match and match.group(3).lower() in ("k", "m", "g", "t"):
        binary = int(match.group(2)) * _UNITS[match.group(3).lower() + "i"]
        if binary % BLOCK == 0 and binary <= MAX_VOLUME_SIZE:
            shown[binary] = f"{match.group(2)}{match.group(3).upper()}i ({binary})"
    below = size - size % BLOCK
    for near in (below, below + BLOCK):
        if 0 < near <= MAX_VOLUME_SIZE:
            shown.setdefault(near, str(near))
    options = list(shown.values())
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def format_size(size: int) -> str:
    """``1073741824`` -> ``1Gi``; sizes that are not whole binary units stay in bytes."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        factor = _UNITS[unit.lower()]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def human_size(size: int) -> str:
    """``3355443`` -> ``3.2 MiB``: a readable approximation, for progress and reports."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
