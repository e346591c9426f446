"""``/metrics``: what a node's Prometheus scrape shows, built at scrape time from plain records.

Longhorn's metric names where they exist, under ``lhtrio_`` instead of ``longhorn_``, with their
labels and encodings (``docs/metrics.md`` lists every one): per volume (``volume``, ``node``)
size, capacity, state (1 creating, 2 attached, 3 detached, 4 attaching, 5 detaching, 6
deleting), robustness (0 unknown, 1 healthy, 2 degraded, 3 faulted), IOPS, throughput (bytes/s)
and latency (ns); per node and per disk capacity, usage and reservation; rebuild progress per
replica; plus lhtrio's own I/O counters (``..._total``: what Prometheus' ``rate()`` wants) and the
process's (prometheus-client's process collector, and trio's task count).

**Whose metrics.** A node shows the volumes it is responsible for (``status.ownerID``, the attach
node while it is up: where the engine runs, so its I/O is here too) and its own node and disks,
as Longhorn's managers do: scraping every node gives every series once. An API serving no node
shows the whole cluster and no I/O.

**Rates at scrape time.** The engines only count (:mod:`lhtrio.engine.iostats`); a scrape turns
two readings of the counters into rates (:class:`RateKeeper`): the difference from the newest
earlier reading at least :data:`MIN_WINDOW` old (or, on the second scrape, the first), divided
by the time between them. Several scrapers (a Prometheus pair) share the readings, so each sees
the rate over the last interval anyone scraped, never over less than :data:`MIN_WINDOW` once
there is history. The first scrape after a node starts shows zero rates. An engine that
restarted (its counters fell) counts from zero.

Pure: no trio, no I/O; the route (:mod:`lhtrio.api.observe`) reads the store and the node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lhtrio.models.cluster import Engine, Node, Replica, Volume
from lhtrio.models.cluster.volume import Robustness, VolumeState
from lhtrio.models.engine import RebuildProgress
from lhtrio.models.stats import EngineSample, IoTotals

__all__ = ["MIN_WINDOW", "ROBUSTNESS", "STATE", "RateKeeper", "Rates", "Scrape", "families"]

#: The shortest interval a rate is computed over, once two readings are that far apart.
MIN_WINDOW: Final = 1.0

#: Longhorn's numbers for a volume's state and robustness.
STATE: Final = {
    VolumeState.CREATING: 1,
    VolumeState.ATTACHED: 2,
    VolumeState.DETACHED: 3,
    VolumeState.ATTACHING: 4,
    VolumeState.DETACHING: 5,
    VolumeState.DELETING: 6,
}
ROBUSTNESS: Final = {
    Robustness.UNKNOWN: 0,
    Robustness.HEALTHY: 1,
    Robustness.DEGRADED: 2,
    Robustness.FAULTED: 3,
}


@attrs.frozen(kw_only=True)
class Rates:
    """A volume's I/O over an interval: per second, and the mean latency of its requests (ns)."""

    read_iops: float = 0.0
    write_iops: float = 0.0
    read_throughput: float = 0.0
    write_throughput: float = 0.0
    read_latency: float = 0.0
    write_latency: float = 0.0


def _rates(old: IoTotals, new: IoTotals, seconds: float) -> Rates:
    if new.read_ops < old.read_ops or new.write_ops < old.write_ops:
        old = IoTotals()  # the engine started again: its counters did too
    reads, writes = new.read_ops - old.read_ops, new.write_ops - old.write_ops
    return Rates(
        read_iops=reads / seconds,
        write_iops=writes / seconds,
        read_throughput=(new.read_bytes - old.read_bytes) / seconds,
        write_throughput=(new.write_bytes - old.write_bytes) / seconds,
        read_latency=(new.read_seconds - old.read_seconds) / reads * 1e9 if reads else 0.0,
        write_latency=(new.write_seconds - old.write_seconds) / writes * 1e9 if writes else 0.0,
    )


class RateKeeper:
    """The readings of each volume's counters that rates are computed from (see the module
    docstring): per volume, those newer than :data:`MIN_WINDOW` and the newest older one."""

    def __init__(self) -> None:
        self._readings: dict[str, list[tuple[float, IoTotals]]] = {}

    def rates(self, samples: Iterable[EngineSample], now: float) -> dict[str, Rates]:
        """Each sampled volume's rates at ``now`` (seconds, any monotonic clock)."""
        out: dict[str, Rates] = {}
        kept: dict[str, list[tuple[float, IoTotals]]] = {}
        for sample in samples:
            readings = self._readings.get(sample.volume, [])
            earlier = [r for r in readings if r[0] < now]
            old = [r for r in earlier if r[0] <= now - MIN_WINDOW]
            base = old[-1] if old else (earlier[0] if earlier else None)
            out[sample.volume] = (
                Rates() if base is None else _rates(base[1], sample.io, now - base[0])
            )
            recent = [r for r in earlier if r[0] > now - MIN_WINDOW]
            kept[sample.volume] = [*old[-1:], *recent, (now, sample.io)]
        self._readings = kept  # a volume whose engine went away is forgotten
        return out


@attrs.frozen(kw_only=True)
class Scrape:
    """What one scrape reads: the store's objects, the node's engines, the process' tasks.
    ``node``: whose metrics (None: the whole cluster's)."""

    node: str | None
    volumes: Sequence[Volume]
    nodes: Sequence[Node]
    replicas: Sequence[Replica]
    engines: Sequence[Engine]
    samples: Sequence[EngineSample]
    tasks_living: int
    tasks_runnable: int


def _gauge(name: str, text: str, labels: Sequence[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(f"lhtrio_{name}", text, labels=labels, unit=unit)


def families(scrape: Scrape, rates: Mapping[str, Rates]) -> list[Metric]:
    """Every metric of ``scrape`` (the I/O rates given by volume)."""
    return [
        *_volume_families(scrape, rates),
        *_node_families(scrape),
        *_rebuild_families(scrape),
        *_process_families(scrape),
    ]


def _volume_families(scrape: Scrape, rates: Mapping[str, Rates]) -> list[Metric]:
    labels = ["volume", "node"]
    actual = _gauge("volume_actual_size_bytes", "Bytes the volume's data takes", labels)
    capacity = _gauge("volume_capacity_bytes", "The volume's size in bytes", labels)
    state = _gauge(
        "volume_state",
        "State: 1 creating, 2 attached, 3 detached, 4 attaching, 5 detaching, 6 deleting",
        labels,
    )
    robustness = _gauge(
        "volume_robustness", "Robustness: 0 unknown, 1 healthy, 2 degraded, 3 faulted", labels
    )
    gauges = {
        "read_iops": _gauge("volume_read_iops", "Reads per second", labels),
        "write_iops": _gauge("volume_write_iops", "Writes per second", labels),
        "read_throughput": _gauge("volume_read_throughput", "Bytes read per second", labels),
        "write_throughput": _gauge("volume_write_throughput", "Bytes written per second", labels),
        "read_latency": _gauge("volume_read_latency", "Mean read latency (ns)", labels),
        "write_latency": _gauge("volume_write_latency", "Mean write latency (ns)", labels),
    }
    counters = {
        field: CounterMetricFamily(f"lhtrio_volume_{name}", text, labels=labels)
        for field, name, text in (
            ("read_ops", "read_ops", "Reads since the volume's engine started"),
            ("write_ops", "write_ops", "Writes since the volume's engine started"),
            ("read_bytes", "read_bytes", "Bytes read since the volume's engine started"),
            ("write_bytes", "write_bytes", "Bytes written since the volume's engine started"),
            ("read_seconds", "read_latency_seconds", "Summed latency of the reads (seconds)"),
            ("write_seconds", "write_latency_seconds", "Summed latency of the writes (seconds)"),
        )
    }
    io = {s.volume: s.io for s in scrape.samples}
    for volume in sorted(scrape.volumes, key=lambda v: v.meta.name):
        owner = volume.status.owner_id
        if scrape.node is not None and owner != scrape.node:
            continue
        values = [volume.meta.name, owner]
        actual.add_metric(values, volume.status.actual_size)
        capacity.add_metric(values, volume.spec.size)
        state.add_metric(values, STATE[volume.status.state])
        robustness.add_metric(values, ROBUSTNESS[volume.status.robustness])
        rate = rates.get(volume.meta.name, Rates())
        for field, gauge in gauges.items():
            gauge.add_metric(values, getattr(rate, field))
        totals = io.get(volume.meta.name)
        if totals is not None:
            for field, counter in counters.items():
                counter.add_metric(values, getattr(totals, field))
    return [actual, capacity, state, robustness, *gauges.values(), *counters.values()]


def _node_families(scrape: Scrape) -> list[Metric]:
    count = _gauge("node_count_total", "Nodes in the cluster", [])
    count.add_metric([], len(scrape.nodes))
    status = _gauge(
        "node_status",
        "A condition of the node: 1 true, 0 false",
        ["condition", "condition_reason", "node"],
    )
    node_labels, disk_labels = ["node"], ["node", "disk"]
    node_gauges = [
        _gauge("node_storage_capacity_bytes", "Bytes of the node's disks", node_labels),
        _gauge("node_storage_usage_bytes", "Bytes used on the node's disks", node_labels),
        _gauge("node_storage_reservation_bytes", "Bytes reserved on the node's disks", node_labels),
    ]
    disk_gauges = [
        _gauge("disk_capacity_bytes", "Bytes of the disk", disk_labels),
        _gauge("disk_usage_bytes", "Bytes used on the disk", disk_labels),
        _gauge("disk_reservation_bytes", "Bytes reserved on the disk for others", disk_labels),
    ]
    for node in sorted(scrape.nodes, key=lambda n: n.meta.name):
        name = node.meta.name
        if scrape.node is not None and name != scrape.node:
            continue
        for condition in node.status.conditions:
            status.add_metric(
                [condition.type.lower(), condition.reason, name], 1 if condition.status else 0
            )
        totals = [0, 0, 0]
        for disk, measured in sorted(node.status.disk_status.items()):
            spec = node.spec.disks.get(disk)
            reserved = spec.storage_reserved if spec is not None else 0
            values = (
                measured.storage_maximum,
                measured.storage_maximum - measured.storage_available,
                reserved,
            )
            for gauge, value in zip(disk_gauges, values, strict=True):
                gauge.add_metric([name, disk], value)
            totals = [t + v for t, v in zip(totals, values, strict=True)]
        for gauge, value in zip(node_gauges, totals, strict=True):
            gauge.add_metric([name], value)
    return [count, status, *node_gauges, *disk_gauges]


def _address(text: str) -> str:
    return text.split("://", 1)[-1]


def _rebuild_families(scrape: Scrape) -> list[Metric]:
    labels = ["volume", "replica", "node"]
    progress = _gauge(
        "replica_rebuild_progress_ratio", "How far the replica's rebuild is, 0 to 1", labels
    )
    done = _gauge("replica_rebuild_done_bytes", "Bytes of the rebuild done so far", labels)
    total = _gauge("replica_rebuild_total_bytes", "Bytes the rebuild goes through", labels)
    engines = {e.spec.volume_name: e for e in scrape.engines}
    nodes = {r.meta.name: r.spec.node_id for r in scrape.replicas}
    for sample in scrape.samples:
        engine = engines.get(sample.volume)
        names = {}
        if engine is not None:
            names = {_address(a): n for n, a in engine.spec.replica_address_map.items()}
        for rebuild in sample.rebuilds:
            if not rebuild.running:
                continue
            replica = names.get(_address(rebuild.address), _address(rebuild.address))
            values = [sample.volume, replica, nodes.get(replica, "")]
            progress.add_metric(values, _ratio(rebuild))
            done.add_metric(values, rebuild.done_bytes)
            total.add_metric(values, rebuild.total_bytes)
    return [progress, done, total]


def _ratio(rebuild: RebuildProgress) -> float:
    return min(1.0, rebuild.done_bytes / rebuild.total_bytes) if rebuild.total_bytes else 0.0


def _process_families(scrape: Scrape) -> list[Metric]:
    living = _gauge("trio_tasks_living", "trio tasks of the node process", [])
    living.add_metric([], scrape.tasks_living)
    runnable = _gauge("trio_tasks_runnable", "trio tasks ready to run, waiting for the loop", [])
    runnable.add_metric([], scrape.tasks_runnable)
    return [living, runnable]
