"""The node in-process: instances as tasks, isolation, ports, logs, disks, one NBD port, 50 volumes.

I/O goes through the node's NBD listener with real clients (qemu-io).
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from lhtrio.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, StorageError
from lhtrio.instances import supervisor as instances_module
from lhtrio.instances.disks import IDENTITY_FILE
from lhtrio.net import Address, RpcClient, open_rpc_client
from lhtrio.node.server import serve_node
from lhtrio.replica.server import serve_replica
from tests.procs import run

MiB = 1 << 20


@attrs.define
class Node:
    client: RpcClient
    nbd: str  # tcp://HOST:PORT

    def uri(self, volume: str) -> str:
        return f"nbd://{self.nbd.removeprefix('tcp://')}/{volume}"

    async def call(self, name: str, /, **args: Any) -> Any:
        return await self.client.call_control(name, **args)

    async def volume(self, volume: str, size: int = 16 * MiB) -> tuple[dict[str, Any], Any]:
        """A replica and an engine for ``volume``."""
        replica = await self.call(
            "instance_create", name=f"{volume}-r", type="replica", volume=volume, size=size
        )
        engine = await self.call(
            "instance_create",
            name=f"{volume}-e",
            type="engine",
            volume=volume,
            size=size,
            replicas=[replica["address"]],
        )
        return replica, engine

    async def until(self, name: str, state: str) -> dict[str, Any]:
        version = 0
        with trio.fail_after(30):
            while True:
                found = await self.call("instance_watch", version=version, wait=5)
                version = found["version"]
                for instance in found["instances"]:
                    if instance["name"] == name and instance["state"] == state:
                        return dict(instance)


@asynccontextmanager
async def node(
    tmp_path: Path, port_range: tuple[int, int] = (31000, 31999), **extra: Any
) -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        control, nbd = await nursery.start(
            functools.partial(
                serve_node,
                "n1",
                str(tmp_path / "data"),
                host="127.0.0.1",
                nbd=Address(host="127.0.0.1", port=0),
                port_range=port_range,
                **extra,
            )
        )
        async with open_rpc_client(control, client="test") as client:
            yield Node(client, nbd)
        nursery.cancel_scope.cancel()


def qemu_io(uri: str, *commands: str) -> list[str]:
    args = ["qemu-io", "-f", "raw"]
    for command in commands:
        args += ["-c", command]
    return [*args, uri]


async def _write_and_check(uri: str, pattern: int) -> None:
    out = await run(*qemu_io(uri, f"write -P {pattern} 0 256k", f"read -P {pattern} 0 256k"))
    assert b"Pattern verification failed" not in out.stdout


async def test_volumes_are_served_by_export_name_on_the_node_port(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        _, engine = await n.volume("v1")
        await n.volume("v2")
        assert engine["state"] == "running"
        assert engine["frontend"] == n.uri("v1")
        await _write_and_check(n.uri("v1"), 1)
        await _write_and_check(n.uri("v2"), 2)
        out = await run(*qemu_io(n.uri("v1"), "read -P 1 0 256k"))
        assert b"Pattern verification failed" not in out.stdout
        listed = await run("nbdinfo", "--list", "--json", f"nbd://{n.nbd.removeprefix('tcp://')}")
        assert sorted(e["export-name"] for e in json.loads(listed.stdout)["exports"]) == [
            "v1",
            "v2",
        ]
        missing = await run(*qemu_io(n.uri("nope"), "read 0 4k"), check=False)
        assert missing.returncode != 0
        assert b"nope" in missing.stderr + missing.stdout
        # Deleting the engine unexports the volume: a clean NBD error, the rest keeps serving.
        await n.call("instance_delete", name="v1-e")
        gone = await run(*qemu_io(n.uri("v1"), "read 0 4k"), check=False)
        assert gone.returncode != 0
        await _write_and_check(n.uri("v2"), 3)


async def test_an_instance_that_raises_is_in_error_and_nothing_else_notices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crashing(path: str, *, instance: str, task_status: Any, **kwargs: Any) -> None:
        if instance != "boom":
            await serve_replica(path, instance=instance, task_status=task_status, **kwargs)
        task_status.started("tcp://127.0.0.1:9")
        await trio.lowlevel.checkpoint()
        raise RuntimeError("a bug in the instance")

    monkeypatch.setattr(instances_module, "serve_replica", crashing)
    async with node(tmp_path) as n:
        await n.volume("v1")
        await _write_and_check(n.uri("v1"), 1)
        await n.call("instance_create", name="boom", type="replica", volume="vb", size=MiB)
        failed = await n.until("boom", "error")
        assert failed["error"] == "RuntimeError: a bug in the instance"
        logged = await n.call("instance_log", name="boom")
        assert sum("a bug in the instance" in text for _, text in logged["lines"]) == 1
        await _write_and_check(n.uri("v1"), 2)
        states = {i["name"]: i["state"] for i in await n.call("instance_list")}
        assert states == {"v1-r": "running", "v1-e": "running", "boom": "error"}
        # An instance in error can be deleted and created again under its name.
        await n.call("instance_delete", name="boom")
        assert "boom" not in {i["name"] for i in await n.call("instance_list")}


async def test_an_instance_that_cannot_start_reports_why_and_frees_its_port(tmp_path: Path) -> None:
    async with node(tmp_path, port_range=(31500, 31500)) as n:
        data = tmp_path / "data" / "replicas" / "bad"
        data.mkdir(parents=True)
        (data / "stray-file").write_text("not a replica")
        with pytest.raises(StorageError):
            await n.call("instance_create", name="bad", type="replica", volume="v", size=MiB)
        bad = await n.call("instance_get", name="bad")
        assert bad["state"] == "error"
        assert "stray-file" in bad["error"] or "not empty" in bad["error"]
        assert (await n.call("node_info"))["ports_in_use"] == []
        # The only port of the range is free again.
        ok = await n.call("instance_create", name="good", type="replica", volume="v", size=MiB)
        assert ok["port"] == 31500


async def test_deleting_frees_the_port_and_a_taken_port_is_skipped(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 31600))  # another program holds the range's first port
        squatter.listen()
        async with node(tmp_path, port_range=(31600, 31601)) as n:
            first = await n.call("instance_create", name="r1", type="replica", volume="v", size=MiB)
            assert first["port"] == 31601
            with pytest.raises(StorageError, match="no free port"):
                await n.call("instance_create", name="r2", type="replica", volume="v", size=MiB)
            stopped = await n.call("instance_delete", name="r1")
            assert stopped["state"] == "stopped"
            assert (await n.call("node_info"))["ports_in_use"] == []
            again = await n.call("instance_create", name="r2", type="replica", volume="v", size=MiB)
            assert again["port"] == 31601


async def test_bad_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.volume("v1")
        bad: list[dict[str, Any]] = [
            {"name": "../x", "type": "replica", "volume": "v", "size": MiB},
            {"name": "x", "type": "replica", "volume": "../v", "size": MiB},
            {"name": "x", "type": "daemon", "volume": "v", "size": MiB},
            {"name": "x", "type": "replica", "volume": "v", "size": 1000},
            {"name": "x", "type": "engine", "volume": "v", "size": MiB, "replicas": []},
            {"name": "x", "type": "replica", "volume": "v", "size": "1Mi"},
            {"name": "x", "type": "replica", "volume": "v", "size": MiB, "disk": "/nowhere"},
        ]
        for args in bad:
            with pytest.raises((InvalidArgumentError, NotFoundError)):
                await n.call("instance_create", **args)
        with pytest.raises(AlreadyExistsError):
            await n.call("instance_create", name="v1-r", type="replica", volume="v1", size=MiB)
        with pytest.raises(AlreadyExistsError, match="already has engine"):
            await n.call(
                "instance_create",
                name="other",
                type="engine",
                volume="v1",
                size=16 * MiB,
                replicas=["tcp://127.0.0.1:9"],
            )
        with pytest.raises(NotFoundError):
            await n.call("instance_delete", name="nobody")
        assert sorted(i["name"] for i in await n.call("instance_list")) == ["v1-e", "v1-r"]
        assert not (tmp_path / "data" / "replicas" / "x").exists()
        await _write_and_check(n.uri("v1"), 5)


async def test_logs_are_kept_per_instance_and_can_be_followed(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.call("instance_create", name="a", type="replica", volume="va", size=MiB)
        await n.call("instance_create", name="b", type="replica", volume="vb", size=MiB)
        a = [text for _, text in (await n.call("instance_log", name="a"))["lines"]]
        assert any("replica a of volume va" in line for line in a)
        assert not any("volume vb" in line for line in a)
        last = (await n.call("instance_log", name="b"))["lines"][-1][0]
        async with trio.open_nursery() as nursery:
            followed: list[Any] = []

            async def follow() -> None:
                followed.append(await n.call("instance_log", name="b", after=last, wait=20))

            nursery.start_soon(follow)
            await n.call("instance_delete", name="b")  # b logs its clean close
        assert any("closed cleanly" in text for _, text in followed[0]["lines"])


async def test_disks_have_identities_and_report_capacity_and_replicas(tmp_path: Path) -> None:
    extra = tmp_path / "disk2"
    async with node(tmp_path, disks=[str(extra)]) as n:
        disks = await n.call("disk_list")
        assert [d["path"] for d in disks] == [str(tmp_path / "data"), str(extra)]
        second = disks[1]["uuid"]
        await n.call(
            "instance_create", name="r1", type="replica", volume="v", size=8 * MiB, disk=second
        )
        await n.call("instance_create", name="r2", type="replica", volume="w", size=4 * MiB)
        disks = await n.call("disk_list")
        assert disks[1]["scheduled"] == 8 * MiB
        assert disks[1]["replicas"] == {"r1": str(extra / "replicas" / "r1")}
        assert disks[0]["scheduled"] == 4 * MiB
        assert 0 < disks[0]["available"] <= disks[0]["capacity"]
        assert (extra / "replicas" / "r1" / "volume.meta").exists()
    identity = json.loads((extra / IDENTITY_FILE).read_text())["uuid"]
    assert identity == second
    async with node(tmp_path, disks=[str(extra)]) as n:
        assert (await n.call("disk_list"))[1]["uuid"] == second  # stable across restarts


async def test_fifty_volumes_on_one_node_all_serve_io(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        for i in range(50):
            await n.volume(f"v{i}", 8 * MiB)
        limiter = trio.CapacityLimiter(4)

        async def check(i: int) -> None:
            async with limiter:
                await _write_and_check(n.uri(f"v{i}"), i + 1)

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(check, i)
        info = await n.call("node_info")
        assert info["instances"] == 100
        assert len(info["ports_in_use"]) == 100


async def test_a_faulted_engine_is_reported_with_its_health_and_why(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        await n.call(
            "instance_create",
            name="e1",
            type="engine",
            volume="v1",
            size=16 * MiB,
            replicas=["tcp://127.0.0.1:1"],  # nothing answers there
        )
        engine = await n.call("instance_get", name="e1")
        assert engine["state"] == "running"  # the engine runs: its volume is faulted
        assert engine["health"] == "faulted"
        assert "volume faulted" in engine["error"]
        assert "tcp://127.0.0.1:1" in engine["error"]


async def test_a_replicas_data_is_removed_only_once_it_stopped(tmp_path: Path) -> None:
    from lhtrio.clients.node import NodeClient
    from lhtrio.errors import ConflictError
    from lhtrio.models.instance import InstanceKind

    async with node(tmp_path) as n:
        client = NodeClient(n.client)
        replica = await client.create("r1", InstanceKind.REPLICA, volume="v", size=4 * MiB)
        assert replica.directory is not None
        with pytest.raises(ConflictError, match="stop it first"):
            await client.remove_replica_data("r1")
        assert await trio.Path(replica.directory).is_dir()
        await client.delete("r1")
        assert await client.remove_replica_data("r1") is True
        assert not await trio.Path(replica.directory).exists()
        assert await client.remove_replica_data("r1") is False  # nothing left: idempotent
