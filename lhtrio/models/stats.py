"""What a node's engines report for monitoring: each volume's I/O totals and its rebuild.

Frozen records (no trio, no I/O). The engine counts (:mod:`lhtrio.engine.iostats`), the node
reads its engines' counts into these records (:mod:`lhtrio.node.probe`), and the admin API turns
them into Prometheus metrics (``/metrics``) without importing the engine.
"""

from __future__ import annotations

import attrs

from lhtrio.models.engine import RebuildProgress

__all__ = ["EngineSample", "IoTotals"]


@attrs.frozen(kw_only=True)
class IoTotals:
    """A volume's I/O since its engine started, per direction: requests, bytes, and the summed
    latency of those requests (seconds, from the engine receiving each batch to its answer)."""

    read_ops: int = 0
    read_bytes: int = 0
    read_seconds: float = 0.0
    write_ops: int = 0
    write_bytes: int = 0
    write_seconds: float = 0.0


@attrs.frozen(kw_only=True)
class EngineSample:
    """One engine of a node, read at one moment: its volume, its I/O totals and its rebuilds
    (the one under way or the last one, as ``lhtrio ctl`` shows them; by replica address)."""

    volume: str
    io: IoTotals
    rebuilds: tuple[RebuildProgress, ...] = ()
