"""The metrics a scrape shows, pure: rates from two readings of the engines' counters, Longhorn's
numbers for state and robustness, a node's own volumes, nodes and disks, rebuild progress by
replica name; read back with prometheus-client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from lhtrio.api.metrics import MIN_WINDOW, RateKeeper, Rates, Scrape, families
from lhtrio.models.cluster import Engine, Node, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.engine import EngineSpec
from lhtrio.models.cluster.meta import Condition
from lhtrio.models.cluster.node import DiskSpec, DiskStatus, NodeSpec, NodeStatus
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState, VolumeStatus
from lhtrio.models.engine import RebuildProgress, RebuildState
from lhtrio.models.stats import EngineSample, IoTotals

GiB = 1 << 30


def sample(volume: str = "v", **totals: float) -> EngineSample:
    return EngineSample(volume=volume, io=IoTotals(**totals))  # type: ignore[arg-type]


def test_the_first_reading_has_no_rate_the_second_has_one() -> None:
    keeper = RateKeeper()
    assert keeper.rates([sample()], now=100.0) == {"v": Rates()}
    later = sample(
        read_ops=20,
        read_bytes=20 * 4096,
        read_seconds=0.002,
        write_ops=100,
        write_bytes=100 * 4096,
        write_seconds=0.03,
    )
    rates = keeper.rates([later], now=102.0)["v"]
    assert rates.read_iops == 10
    assert rates.write_iops == 50
    assert rates.read_throughput == 10 * 4096
    assert rates.write_throughput == 50 * 4096
    assert rates.read_latency == pytest.approx(100_000)  # ns: 2 ms over 20 reads
    assert rates.write_latency == pytest.approx(300_000)


def test_a_scrape_soon_after_another_keeps_the_older_reading() -> None:
    keeper = RateKeeper()
    keeper.rates([sample(write_ops=0)], now=0.0)
    keeper.rates([sample(write_ops=100)], now=10.0)
    # 0.1 s later (a second scraper): the rate over the 10.1 s since the first reading, not
    # over 0.1 s
    rates = keeper.rates([sample(write_ops=101)], now=10.1)["v"]
    assert rates.write_iops == pytest.approx(101 / 10.1)
    # once MIN_WINDOW has passed, the reading at 10.0 is the base
    rates = keeper.rates([sample(write_ops=111)], now=10.0 + MIN_WINDOW)["v"]
    assert rates.write_iops == pytest.approx(11 / MIN_WINDOW)


def test_an_engine_that_started_again_counts_from_zero() -> None:
    keeper = RateKeeper()
    keeper.rates([sample(write_ops=1000)], now=0.0)
    assert keeper.rates([sample(write_ops=30)], now=2.0)["v"].write_iops == 15


def test_a_volume_whose_engine_went_away_is_forgotten() -> None:
    keeper = RateKeeper()
    keeper.rates([sample(write_ops=10)], now=0.0)
    assert keeper.rates([], now=2.0) == {}
    assert keeper.rates([sample(write_ops=20)], now=4.0) == {"v": Rates()}


def volume(
    name: str, owner: str, state: VolumeState, robustness: Robustness, size: int = GiB
) -> Volume:
    return Volume(
        meta=ObjectMeta(name=name),
        spec=VolumeSpec(size=size, node_id=owner),
        status=VolumeStatus(
            owner_id=owner, state=state, robustness=robustness, actual_size=52428800
        ),
    )


def node(name: str) -> Node:
    return Node(
        meta=ObjectMeta(name=name),
        spec=NodeSpec(disks={f"{name}-d": DiskSpec(path="/d", storage_reserved=10 * GiB)}),
        status=NodeStatus(
            conditions=(
                Condition(type="Ready", status=True),
                Condition(type="Schedulable", status=False, reason="Disabled"),
            ),
            disk_status={
                f"{name}-d": DiskStatus(storage_maximum=100 * GiB, storage_available=60 * GiB)
            },
        ),
    )


SCRAPE = Scrape(
    node="n1",
    volumes=[
        volume("a", "n1", VolumeState.ATTACHED, Robustness.DEGRADED),
        volume("b", "n1", VolumeState.DETACHED, Robustness.UNKNOWN, size=2 * GiB),
        volume("c", "n2", VolumeState.ATTACHED, Robustness.HEALTHY),
    ],
    nodes=[node("n1"), node("n2")],
    replicas=[
        Replica(
            meta=ObjectMeta(name="a-r-1"),
            spec=ReplicaSpec(volume_name="a", volume_size=GiB, node_id="n3"),
        )
    ],
    engines=[
        Engine(
            meta=ObjectMeta(name="a-e-0"),
            spec=EngineSpec(
                volume_name="a",
                volume_size=GiB,
                node_id="n1",
                replica_address_map={"a-r-1": "127.0.0.13:10001"},
            ),
        )
    ],
    samples=[
        EngineSample(
            volume="a",
            io=IoTotals(write_ops=7, write_bytes=7 * 4096, write_seconds=0.5),
            rebuilds=(
                RebuildProgress(
                    address="tcp://127.0.0.13:10001",
                    state=RebuildState.SYNCING,
                    total_bytes=4 * GiB,
                    done_bytes=GiB,
                ),
                RebuildProgress(address="tcp://127.0.0.14:10001", state=RebuildState.DONE),
            ),
        )
    ],
    tasks_living=42,
    tasks_runnable=1,
)


class _Fixed:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def values(
    scrape: Scrape, rates: dict[str, Rates]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scrape's text, by (name, labels)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(scrape, rates)))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_nodes_volumes_with_longhorns_encodings() -> None:
    got = values(SCRAPE, {"a": Rates(write_iops=3.5, write_latency=70_000.0)})
    a = (("node", "n1"), ("volume", "a"))
    b = (("node", "n1"), ("volume", "b"))
    assert got["lhtrio_volume_state", a] == 2  # attached
    assert got["lhtrio_volume_state", b] == 3  # detached
    assert got["lhtrio_volume_robustness", a] == 2  # degraded
    assert got["lhtrio_volume_robustness", b] == 0  # unknown
    assert got["lhtrio_volume_capacity_bytes", b] == 2 * GiB
    assert got["lhtrio_volume_actual_size_bytes", a] == 52428800
    assert got["lhtrio_volume_write_iops", a] == 3.5
    assert got["lhtrio_volume_write_latency", a] == 70_000
    assert got["lhtrio_volume_read_iops", b] == 0  # no engine here: no I/O
    assert got["lhtrio_volume_write_ops_total", a] == 7
    assert got["lhtrio_volume_write_bytes_total", a] == 7 * 4096
    assert got["lhtrio_volume_write_latency_seconds_total", a] == 0.5
    assert ("lhtrio_volume_write_ops_total", b) not in got  # no engine, no counters
    assert not [k for k in got if ("volume", "c") in k[1]]  # n2's volume: n2 shows it


def test_a_nodes_own_node_and_disks() -> None:
    got = values(SCRAPE, {})
    assert got["lhtrio_node_count_total", ()] == 2
    assert got["lhtrio_node_storage_capacity_bytes", (("node", "n1"),)] == 100 * GiB
    assert got["lhtrio_node_storage_usage_bytes", (("node", "n1"),)] == 40 * GiB
    assert got["lhtrio_node_storage_reservation_bytes", (("node", "n1"),)] == 10 * GiB
    disk = (("disk", "n1-d"), ("node", "n1"))
    assert got["lhtrio_disk_capacity_bytes", disk] == 100 * GiB
    assert got["lhtrio_disk_usage_bytes", disk] == 40 * GiB
    assert got["lhtrio_disk_reservation_bytes", disk] == 10 * GiB
    ready = (("condition", "ready"), ("condition_reason", ""), ("node", "n1"))
    schedulable = (("condition", "schedulable"), ("condition_reason", "Disabled"), ("node", "n1"))
    assert got["lhtrio_node_status", ready] == 1
    assert got["lhtrio_node_status", schedulable] == 0
    assert ("lhtrio_node_storage_capacity_bytes", (("node", "n2"),)) not in got


def test_a_rebuild_under_way_by_replica_name() -> None:
    got = values(SCRAPE, {})
    replica = (("node", "n3"), ("replica", "a-r-1"), ("volume", "a"))
    assert got["lhtrio_replica_rebuild_progress_ratio", replica] == 0.25
    assert got["lhtrio_replica_rebuild_done_bytes", replica] == GiB
    assert got["lhtrio_replica_rebuild_total_bytes", replica] == 4 * GiB
    assert len([k for k in got if k[0] == "lhtrio_replica_rebuild_progress_ratio"]) == 1  # done


def test_the_process_and_without_a_node_the_whole_cluster() -> None:
    got = values(SCRAPE, {})
    assert got["lhtrio_trio_tasks_living", ()] == 42
    assert got["lhtrio_trio_tasks_runnable", ()] == 1
    cluster = values(
        Scrape(
            node=None,
            volumes=SCRAPE.volumes,
            nodes=SCRAPE.nodes,
            replicas=[],
            engines=[],
            samples=[],
            tasks_living=1,
            tasks_runnable=0,
        ),
        {},
    )
    assert cluster["lhtrio_volume_state", (("node", "n2"), ("volume", "c"))] == 2
    assert ("lhtrio_disk_capacity_bytes", (("disk", "n2-d"), ("node", "n2"))) in cluster
