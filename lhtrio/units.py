"""Sizes as operators write them: ``1073741824``, ``1Gi``, ``512Mi``, ``10G``, ``4k``."""

from __future__ import annotations

import re
from typing import Final

from lhtrio.errors import InvalidArgumentError

__all__ = ["parse_size", "format_size", "human_size"]

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
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*?)b?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: plain bytes, SI (k, M, G, T) or binary (Ki, Mi, Gi, Ti) units."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise InvalidArgumentError(
            f"size {text!r} is not a number of bytes with an optional unit (e.g. 1Gi, 512Mi, 10G)"
        )
    return int(match.group(1)) * _UNITS[unit]


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
