"""The read verbs of the volumes' parts against the real API: ``engine``, ``replica`` and
``attachment`` ``ls``/``get``, ``event ls`` and ``volume events``, ``volume rebuild-status``,
``lhtrio status`` and ``lhtrio completion`` — what each prints (tables, the API's documents in
JSON or YAML), and bad arguments refused before any request (exit 2, the store unchanged)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import yaml

from lhtrio.manager import events, tickets
from lhtrio.models.cluster import Engine, ObjectMeta
from lhtrio.models.cluster.engine import EngineSpec, EngineStatus, RebuildStatus
from lhtrio.models.cluster.event import ObjectReference, Occurrence
from lhtrio.models.cluster.instance import InstanceState
from lhtrio.models.cluster.volume import Robustness, VolumeState
from lhtrio.models.volume import Mode
from tests.admin.conftest import Lhtrio, run_cli
from tests.admin.test_volumes import URI, GiB, make_replica, make_volume

REBUILD = RebuildStatus(
    is_rebuilding=True,
    progress=37,
    state="syncing",
    from_replica_address="tcp://127.0.0.11:10001",
    done_bytes=397_284_474,
    total_bytes=GiB,
)


async def make_parts(lhtrio: Lhtrio) -> None:
    """Volume db-1 attached on n1, degraded: replica db-1-r-1 RW on n1, db-1-r-2 rebuilt on n2."""
    await make_volume(
        lhtrio,
        state=VolumeState.ATTACHED,
        current_node_id="n1",
        robustness=Robustness.DEGRADED,
    )
    await make_replica(lhtrio, "db-1-r-1", "n1")
    await make_replica(lhtrio, "db-1-r-2", "n2")
    await lhtrio.api.objects.create(
        Engine(
            meta=ObjectMeta(name="db-1-e-0", labels={"volume": "db-1"}),
            spec=EngineSpec(
                volume_name="db-1",
                volume_size=GiB,
                node_id="n1",
                replica_address_map={
                    "db-1-r-1": "127.0.0.11:10001",
                    "db-1-r-2": "127.0.0.12:10001",
                },
            ),
            status=EngineStatus(
                current_state=InstanceState.RUNNING,
                endpoint=URI,
                replica_mode_map={"db-1-r-1": Mode.RW, "db-1-r-2": Mode.WO},
                rebuild_status={"db-1-r-2": REBUILD},
            ),
        )
    )


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


async def test_engine_and_replica_ls_and_get(lhtrio: Lhtrio) -> None:
    await make_parts(lhtrio)
    engines = await lhtrio("engine", "ls")
    assert engines.exit_code == 0, engines.output
    assert rows(engines.stdout) == [
        ["NAME", "VOLUME", "NODE", "STATE", "ENDPOINT", "REPLICAS", "REBUILDING"],
        ["db-1-e-0", "db-1", "n1", "running", URI, "RW:1", "WO:1", "db-1-r-2", "37%"],
    ]
    engine = await lhtrio("engine", "get", "db-1-e-0")
    assert ["db-1-r-2", "127.0.0.12:10001", "WO", "syncing", "37%", "(378.9", "MiB", "of", "1.0",
            "GiB)"] in rows(engine.stdout)  # fmt: skip

    replicas = await lhtrio("replica", "ls", "--volume", "db-1", "-o", "json")
    listed = json.loads(replicas.stdout)
    assert [r["metadata"]["name"] for r in listed["data"]] == ["db-1-r-1", "db-1-r-2"]
    replica = await lhtrio("replica", "get", "db-1-r-2", "-o", "yaml")
    assert yaml.safe_load(replica.stdout) == await lhtrio.document("Replica", "db-1-r-2")
    table = await lhtrio("replica", "get", "db-1-r-2")
    assert ["node", "n2"] in rows(table.stdout)

    missing = await lhtrio("engine", "get", "db-9-e-0")
    assert (missing.exit_code, missing.stdout) == (3, "")


async def test_rebuild_status_shows_each_replicas_mode_and_rebuild(lhtrio: Lhtrio) -> None:
    await make_parts(lhtrio)
    shown = await lhtrio("volume", "rebuild-status", "db-1")
    assert shown.exit_code == 0, shown.output
    assert rows(shown.stdout) == [
        ["volume", "db-1:", "attached,", "degraded"],
        [],
        ["REPLICA", "NODE", "MODE", "REBUILD"],
        ["db-1-r-1", "n1", "RW", "-"],
        ["db-1-r-2", "n2", "WO", "syncing", "37%", "(378.9", "MiB", "of", "1.0", "GiB)"],
    ]
    described = json.loads((await lhtrio("volume", "get", "db-1", "-o", "json")).stdout)
    assert described["replicas"][1]["rebuild"] == {
        "isRebuilding": True,
        "progress": 37,
        "state": "syncing",
        "error": "",
        "fromReplicaAddress": "tcp://127.0.0.11:10001",
        "doneBytes": 397_284_474,
        "totalBytes": GiB,
    }


async def test_a_wait_for_rebuilds_of_a_detached_volume_says_to_attach_it(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio, state=VolumeState.DETACHED)
    result = await lhtrio("volume", "rebuild-status", "db-1", "--wait")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: volume db-1 is detached: replicas are rebuilt only while it is attached; "
        "attach it (lhtrio volume attach db-1 --node NODE)"
    )


async def test_attachment_get_shows_the_tickets(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio)
    await tickets.add_ticket(lhtrio.api.objects, "db-1", "n1")
    shown = await lhtrio("attachment", "get", "db-1")
    assert shown.exit_code == 0, shown.output
    assert ["lhtrio-api", "longhorn-api", "n1", "no", "no", "1"] in rows(shown.stdout)
    printed = json.loads((await lhtrio("attachment", "get", "db-1", "-o", "json")).stdout)
    assert printed == await lhtrio.document("VolumeAttachment", "db-1")


async def test_events_of_the_cluster_and_of_one_volume(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio, "db-1")
    await make_volume(lhtrio, "db-2")
    now = dt.datetime.now(dt.UTC)
    for name, reason in (("db-1", "Attached"), ("db-2", "Degraded"), ("db-1", "Detached")):
        said = Occurrence(reason=reason, message=f"volume {name}: {reason.lower()}")
        await events.record(
            lhtrio.api.objects, ObjectReference(kind="Volume", name=name), said, node="n1", now=now
        )
    everything = await lhtrio("event", "ls")
    assert everything.exit_code == 0, everything.output
    assert [r[2:4] for r in rows(everything.stdout)[1:]] == [
        ["Attached", "volume/db-1"],
        ["Degraded", "volume/db-2"],
        ["Detached", "volume/db-1"],
    ]
    for args in (("event", "ls", "volume", "db-1"), ("event", "ls", "--volume", "db-1"),
                 ("volume", "events", "db-1")):  # fmt: skip
        mine = await lhtrio(*args)
        assert [r[2] for r in rows(mine.stdout)[1:]] == ["Attached", "Detached"], args
    printed = json.loads((await lhtrio("volume", "events", "db-1", "-o", "json")).stdout)
    assert [e["reason"] for e in printed["data"]] == ["Attached", "Detached"]
    gone = await lhtrio("volume", "events", "db-9")
    assert (gone.exit_code, gone.stdout) == (3, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("event", "ls", "Pod", "p1"), "'Pod' is not a kind events are about"),
        (("event", "ls", "volume"), "which volume? give KIND NAME"),
        (("event", "ls", "node", "n1", "--volume", "v"), "either --volume VOLUME or KIND NAME"),
        (("event", "ls", "volume", "a/b"), "invalid object name 'a/b'"),
        (("engine", "get", "../x"), "invalid engine name '../x'"),
        (("replica", "ls", "--volume", ""), "invalid volume name ''"),
        (("attachment", "get", "a b"), "invalid attachment name 'a b'"),
        (("volume", "rebuild-status", "x/y"), "invalid volume name 'x/y'"),
        (("volume", "events", "db-1", "-o", "xml"), "'xml' is not one of"),
        (("completion", "powershell"), "'powershell' is not one of"),
    ],
)
async def test_bad_arguments_are_usage_errors_that_change_nothing(
    lhtrio: Lhtrio, args: tuple[str, ...], message: str
) -> None:
    before = await lhtrio.api.state()
    result = await lhtrio(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert await lhtrio.api.state() == before


async def test_status_says_alive_and_ready(lhtrio: Lhtrio) -> None:
    shown = await lhtrio("status")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == f"admin API {lhtrio.api.url}: alive, ready\n"
    printed = json.loads((await lhtrio("status", "-o", "json")).stdout)
    assert printed == {
        "api": lhtrio.api.url,
        "ready": True,
        "healthz": {"status": 200, "message": "ok"},
        "readyz": {"status": 200, "message": "ok"},
    }
    lhtrio.api.store.broken = True
    broken = await lhtrio("status")
    assert broken.exit_code == 1
    assert broken.stdout.startswith(f"admin API {lhtrio.api.url}: alive, not ready (503: not ready")


def test_status_of_an_api_that_is_not_there_is_unreachable() -> None:
    result = run_cli("--api", "http://127.0.0.1:1", "status")
    assert result.exit_code == 5
    assert "cannot reach the admin API at http://127.0.0.1:1" in result.stderr


@pytest.mark.real
def test_completion_scripts_complete_the_verbs() -> None:
    for shell, mark in (("bash", "complete -o nosort -F"), ("zsh", "#compdef lhtrio"),
                        ("fish", "complete --no-files --command lhtrio")):  # fmt: skip
        script = run_cli("completion", shell)
        assert script.exit_code == 0, script.output
        assert mark in script.stdout
        assert "_LHTRIO_COMPLETE" in script.stdout
    env = {**os.environ, "_LHTRIO_COMPLETE": "bash_complete", "COMP_WORDS": "lhtrio volume reb",
           "COMP_CWORD": "2"}  # fmt: skip
    answer = subprocess.run(
        [sys.executable, "-m", "lhtrio"], env=env, capture_output=True, check=True, timeout=60
    )
    assert answer.stdout.decode().split() == ["plain,rebuild-status"]
