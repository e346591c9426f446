"""The volume operations through the CLI: on three in-process nodes (real engines and replicas)
behind the real API, a volume's life from ``volume create`` to ``volume rm --wait`` with its
snapshots; and against the API with no node up, what is decided without an engine (replica
count, salvage) and how an operation that needs one fails."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path

import pytest
import trio
from click.testing import Result

from lhtrio.api import serve_api
from lhtrio.errors import NotFoundError
from lhtrio.models.cluster import Engine, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import VolumeState
from tests.admin.conftest import TOKEN, Lhtrio, run_cli
from tests.manager.test_volume_lifecycle import three_nodes, until

MiB = 1 << 20


async def cli(url: str, *args: str) -> Result:
    env = {"LHTRIO_API": url, "LHTRIO_TOKEN": TOKEN}
    return await trio.to_thread.run_sync(functools.partial(run_cli, *args, env=env))


async def ok(url: str, *args: str) -> Result:
    result = await cli(url, *args)
    assert result.exit_code == 0, (args, result.output)
    return result


def names(result: Result) -> list[str]:
    return [snapshot["name"] for snapshot in json.loads(result.stdout)["data"]]


async def test_a_volumes_life_through_the_cli_on_three_nodes(tmp_path: Path) -> None:
    async with three_nodes(tmp_path) as cluster, trio.open_nursery() as nursery:
        objects = cluster.objects
        url = await nursery.start(
            functools.partial(serve_api, objects, "127.0.0.1", 0, token=TOKEN)
        )
        await ok(url, "volume", "create", "v", "--size", "16Mi", "--replicas", "2")
        await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)

        # a snapshot of a detached volume (the API attaches it for the call)
        taken = await ok(url, "snapshot", "create", "v", "s1", "--label", "app=db", "-o", "json")
        snapshot = json.loads(taken.stdout)
        assert (snapshot["name"], snapshot["labels"], snapshot["userCreated"]) == (
            "s1", {"app": "db"}, True,
        )  # fmt: skip
        await until(cluster, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)

        attached = await ok(url, "volume", "attach", "v", "--node", "n1", "--timeout", "60")
        engine = await objects.get(Engine, "v-e-0")
        assert attached.stdout == f"{engine.status.endpoint}\n"
        assert attached.stdout.startswith("nbd://127.0.0.1:")
        assert "attached on node n1" in attached.stderr

        described = json.loads((await ok(url, "volume", "get", "v", "-o", "json")).stdout)
        assert described["volume"]["status"]["state"] == "attached"
        assert described["endpoint"] == engine.status.endpoint
        replicas = described["replicas"]
        assert [r["mode"] for r in replicas] == ["RW", "RW"]
        assert len({r["node"] for r in replicas}) == 2
        assert all(r["state"] == "running" and not r["failed"] for r in replicas)

        created = await ok(url, "snapshot", "create", "v", "s2")
        assert created.stdout == "snapshot s2 of volume v created\n"
        listed = await ok(url, "snapshot", "ls", "v")
        assert listed.stdout.splitlines()[0].split() == [
            "NAME", "PARENT", "CREATED", "SIZE", "USER", "REMOVED", "LABELS",
        ]  # fmt: skip
        assert {"s1", "s2"} <= {line.split()[0] for line in listed.stdout.splitlines()}
        await ok(url, "snapshot", "rm", "v", "s1")
        await ok(url, "snapshot", "purge", "v")
        after = names(await ok(url, "snapshot", "ls", "v", "-o", "json"))
        assert "s1" not in after
        assert "s2" in after

        served = await cli(url, "snapshot", "revert", "v", "s2")
        assert served.exit_code == 4  # a volume served to a workload is not reverted
        assert "detach it first" in served.stderr

        await ok(url, "volume", "detach", "v", "--wait", "--timeout", "60")
        reverted = await ok(url, "snapshot", "revert", "v", "s2")
        assert reverted.stdout == "volume v reverted to snapshot s2\n"
        expanded = await ok(url, "volume", "expand", "v", "--size", "32Mi")
        assert expanded.stdout == "volume v expanded to 32Mi\n"
        assert (await objects.get(Volume, "v")).spec.size == 32 * MiB
        await ok(url, "volume", "set-replicas", "v", "3")
        assert (await objects.get(Volume, "v")).spec.number_of_replicas == 3

        await ok(url, "volume", "rm", "v", "--wait", "--timeout", "60")
        with pytest.raises(NotFoundError):
            await objects.get(Volume, "v")
        nursery.cancel_scope.cancel()


# --- no node up: what needs no engine, and what does ---------------------------------------


FAILED = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


async def add_replica(lhtrio: Lhtrio, name: str, *, failed: bool) -> None:
    await lhtrio.api.objects.create(
        Replica(
            meta=ObjectMeta(name=name),
            spec=ReplicaSpec(
                volume_name="v",
                volume_size=1 << 30,
                node_id="n1",
                failed_at=FAILED if failed else None,
            ),
        )
    )


async def test_set_replicas_changes_the_spec(lhtrio: Lhtrio) -> None:
    assert (await lhtrio("volume", "create", "v", "--size", "1Gi")).exit_code == 0
    result = await lhtrio("volume", "set-replicas", "v", "2", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == await lhtrio.document("Volume", "v")
    assert (await lhtrio.api.objects.get(Volume, "v")).spec.number_of_replicas == 2


async def test_salvage_unfails_the_named_replicas_and_refuses_with_working_ones(
    lhtrio: Lhtrio,
) -> None:
    assert (await lhtrio("volume", "create", "v", "--size", "1Gi")).exit_code == 0
    await add_replica(lhtrio, "v-r-1", failed=True)
    await add_replica(lhtrio, "v-r-2", failed=False)
    working = await lhtrio("volume", "salvage", "v", "v-r-1")
    assert working.exit_code == 4
    assert "v-r-2" in working.stderr
    unknown = await lhtrio("volume", "salvage", "v", "v-r-9")
    assert unknown.exit_code == 3
    assert (await lhtrio.api.objects.get(Replica, "v-r-1")).spec.failed_at == FAILED

    await lhtrio.api.objects.delete(await lhtrio.api.objects.get(Replica, "v-r-2"))
    salvaged = await lhtrio("volume", "salvage", "v", "v-r-1")
    assert salvaged.exit_code == 0, salvaged.output
    assert salvaged.stdout == "volume v: salvage requested from v-r-1\n"
    replica = await lhtrio.api.objects.get(Replica, "v-r-1")
    assert replica.spec.failed_at is None
    assert replica.spec.salvage_requested


async def test_an_operation_needing_an_engine_with_no_node_up_is_an_error(lhtrio: Lhtrio) -> None:
    assert (await lhtrio("volume", "create", "v", "--size", "1Gi")).exit_code == 0
    before = await lhtrio.api.state()
    for args in (("snapshot", "create", "v", "s1"), ("snapshot", "ls", "v"),
                 ("volume", "expand", "v", "--size", "2Gi")):  # fmt: skip
        result = await lhtrio(*args)
        assert result.exit_code == 1, result.output
        assert "no node is up" in result.stderr
    shrink = await lhtrio("volume", "expand", "v", "--size", "512Mi")
    assert shrink.exit_code == 4  # 422: the volume rules it out
    assert "cannot shrink" in shrink.stderr
    assert await lhtrio.api.state() == before
