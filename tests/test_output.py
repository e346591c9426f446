"""What ``lhtrio ctl`` and ``lhtrio im`` print: tables for reading, JSON with the raw values."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from lhtrio import ctl, im, output
from lhtrio.models.engine import RebuildProgress, Snapshot
from lhtrio.models.instance import Instance, NodeInfo
from lhtrio.wire.control import converter

WHEN = dt.datetime(2026, 12, 4, 18, 20, 1, 558469, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        *[(0, "0s"), (59.9, "59s"), (119, "119s"), (180, "3m"), (7199, "119m")],
        *[(7200, "2h"), (47 * 3600, "47h"), (3 * 86400, "3d")],
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert output.format_age(seconds) == text


def test_format_when_is_rfc3339_utc_and_an_age() -> None:
    assert output.format_when(WHEN, now=WHEN + 200) == "2026-12-04T18:20:01Z (3m ago)"
    assert (
        output.format_when(WHEN, now=WHEN - 5) == "2026-12-04T18:20:01Z (in 5s)"
    )  # a skewed clock
    assert output.format_when(0.0) == ""  # never started


@pytest.mark.parametrize(
    ("address", "export", "uri"),
    [
        ("tcp://127.0.0.1:10809", "", "nbd://127.0.0.1:10809"),
        ("tcp://10.0.0.3:10809", "vol1", "nbd://10.0.0.3:10809/vol1"),
        ("tcp://[::1]:10809", "", "nbd://[::1]:10809"),
        ("unix:/run/lhtrio.sock", "vol1", "nbd+unix:///vol1?socket=/run/lhtrio.sock"),
        ("nbd://10.0.0.3:10809", "", "nbd://10.0.0.3:10809"),  # not an address: as it is
    ],
)
def test_nbd_uri(address: str, export: str, uri: str) -> None:
    assert output.nbd_uri(address, export) == uri


def _engine_instance(started: float) -> dict[str, object]:
    return {
        "name": "e1",
        "type": "engine",
        "volume": "v",
        "size": 64 << 20,
        "state": "running",
        "error": "",
        "port": 32001,
        "address": "tcp://127.0.0.1:32001",
        "started": started,
        "replicas": ["tcp://127.0.0.1:32000", "tcp://127.0.0.2:32000"],
        "frontend": "nbd://127.0.0.1:10809/v",
    }


def test_im_get_shows_times_sizes_and_lists_for_reading() -> None:
    started = time.time() - 200
    text = im._render_instance(converter.structure(_engine_instance(started), Instance))
    lines = dict([*line.split(maxsplit=1), ""][:2] for line in text.splitlines())
    day = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%d")
    assert re.fullmatch(rf"{day}T\d\d:\d\d:\d\dZ \(3m ago\)", lines["started"])
    assert lines["replicas"] == "tcp://127.0.0.1:32000, tcp://127.0.0.2:32000"
    assert lines["size"] == "64Mi (67108864 bytes)"
    assert lines["error"] == ""
    assert lines["frontend"] == "nbd://127.0.0.1:10809/v"


def test_im_info_shows_the_nodes_nbd_address_as_an_nbd_uri() -> None:
    info = {
        "name": "n1",
        "address": "tcp://127.0.0.1:40000",
        "nbd": "tcp://127.0.0.1:10809",
        "port_range": "10000-10999",
        "ports_in_use": [10000],
        "instances": 1,
        "disks": [],
    }
    lines = im._render_node(converter.structure(info, NodeInfo)).splitlines()
    assert "nbd        nbd://127.0.0.1:10809" in lines
    assert "control    tcp://127.0.0.1:40000" in lines


def test_snapshot_sizes_are_human_sizes_like_every_other_table() -> None:
    snapshots = [
        {
            "name": "s1",
            "parent": "",
            "children": [],
            "created": "2026-12-04T18:20:01Z",
            "user_created": True,
            "removed": False,
            "size": 3355443,
            "labels": {"app": "db", "tier": "1"},
            "in_chain": True,
        }
    ]
    header, row = ctl._render_snapshots(converter.structure(snapshots, list[Snapshot])).splitlines()
    assert header.split() == ["NAME", "PARENT", "CREATED", "SIZE", "USER", "REMOVED", "LABELS"]
    assert row.split() == ["s1", "2026-12-04T18:20:01Z", "3.2", "MiB", "yes", "no", "app=db,tier=1"]


def test_rebuild_report_gives_every_amount_with_its_unit() -> None:
    rebuild = {
        "address": "tcp://127.0.0.1:9502",
        "source": "tcp://127.0.0.1:9501",
        "state": "done",
        "files": 3,
        "files_done": 3,
        "skipped_files": 1,
        "total_bytes": 360 << 20,
        "done_bytes": 360 << 20,
        "sent_bytes": 300 << 20,
        "seconds": 2.0,
        "delta": False,
        "error": "",
    }
    lines = ctl._render_rebuild(converter.structure(rebuild, RebuildProgress)).splitlines()
    assert lines[2:] == [
        "state     done (full rebuild)",
        "synced    360.0 MiB of 360.0 MiB allocated (3 of 3 files, 1 unchanged)",
        "sent      300.0 MiB in 2.0 s, 150.0 MiB/s",
    ]


def test_im_ls_shows_an_engine_whose_volume_is_not_healthy() -> None:
    faulted = {**_engine_instance(time.time()), "health": "faulted", "error": "volume faulted: x"}
    healthy = {**_engine_instance(time.time()), "name": "e2", "health": "healthy"}
    text = im._render_instances(converter.structure([faulted, healthy], list[Instance]))
    rows = text.splitlines()
    assert "running (faulted)" in rows[1]
    assert "volume faulted: x" in rows[1]
    assert "running (" not in rows[2]


def test_a_rebuild_that_sent_little_says_where_the_rest_was() -> None:
    # Issue 16: "sent 0 B" for 360 MiB synced read like a counting bug; the rest was kept.
    rebuild = {
        "address": "tcp://127.0.0.1:9502",
        "source": "tcp://127.0.0.1:9501",
        "state": "done",
        "files": 2,
        "files_done": 2,
        "skipped_files": 0,
        "total_bytes": 360 << 20,
        "done_bytes": 360 << 20,
        "sent_bytes": 0,
        "compared_bytes": 40 << 20,
        "known_bytes": 320 << 20,
        "skipped_bytes": 0,
        "seconds": 1.0,
        "delta": True,
        "error": "",
    }
    lines = ctl._render_rebuild(converter.structure(rebuild, RebuildProgress)).splitlines()
    assert lines[-1] == "kept      40.0 MiB compared equal, 320.0 MiB known equal from the away log"
