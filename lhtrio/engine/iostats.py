"""The volume's I/O counters: what ``/metrics`` turns into IOPS, throughput and latency.

Counted on the data path, so kept to a few integer and float additions per *batch* (a frontend's
receive), never an allocation per request: :class:`IoCounters` is a slotted object the volume and
its fan-out add to. Reads and writes only (Longhorn counts those): flushes, trims and zeroing are
not I/O a client waits on for data. The latency of a request is the time from the engine taking
its batch to the batch's answer (every replica acknowledged it, or was failed), counted once per
request of the batch; a read that fails over to another replica counts from the last attempt.
Reading the counters (:meth:`IoCounters.totals`) copies them into a record of
:mod:`lhtrio.models.stats`; rates are computed by whoever reads them twice.
"""

from __future__ import annotations

from lhtrio.models.stats import IoTotals

__all__ = ["IoCounters"]


class IoCounters:
    """Totals since the volume started (see the module docstring)."""

    __slots__ = (
        "read_bytes",
        "read_ops",
        "read_seconds",
        "write_bytes",
        "write_ops",
        "write_seconds",
    )

    def __init__(self) -> None:
        self.read_ops = 0
        self.read_bytes = 0
        self.read_seconds = 0.0
        self.write_ops = 0
        self.write_bytes = 0
        self.write_seconds = 0.0

    def totals(self) -> IoTotals:
        return IoTotals(
            read_ops=self.read_ops,
            read_bytes=self.read_bytes,
            read_seconds=self.read_seconds,
            write_ops=self.write_ops,
            write_bytes=self.write_bytes,
            write_seconds=self.write_seconds,
        )
