"""A node with a store joins the control plane: its Node (with its disks) and its lease appear;
a restart keeps what an operator set on the Node; disks added to the Node's spec (the API's
diskUpdate) are opened and measured at once, one that cannot be used says why, and a removed one
is forgotten (the node's own disks come back when it starts again)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio
from click.testing import CliRunner

from lhtrio.cli import cli
from lhtrio.manager.lease import available_nodes
from lhtrio.manager.node_update import DiskChange, update_disks
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.models.cluster import Node, ObjectMeta, Replica
from lhtrio.models.cluster.instance import DesireState, InstanceState
from lhtrio.models.cluster.meta import get_condition
from lhtrio.models.cluster.node import CONDITION_READY
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.net import Address
from lhtrio.node.server import serve_node
from tests.manager.waiting import until


def _node(store: MemoryStore, data: Path) -> Callable[..., Awaitable[None]]:
    return functools.partial(
        serve_node,
        "n1",
        str(data),
        host="127.0.0.1",
        nbd=Address(host="127.0.0.1", port=0),
        port_range=(42000, 42099),
        store=store,
    )


async def _run_node(store: MemoryStore, data: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(_node(store, data))
        nursery.cancel_scope.cancel()


async def test_a_node_registers_itself_and_its_disks_and_keeps_a_lease(tmp_path: Path) -> None:
    store = MemoryStore()
    await _run_node(store, tmp_path / "data")
    objects = Objects(store)
    node = await objects.get(Node, "n1")
    ((name, disk),) = node.spec.disks.items()
    assert disk.path == str(tmp_path / "data")
    status = node.status.disk_status[name]
    assert status.disk_uuid == name
    assert 0 < status.storage_available <= status.storage_maximum
    ready = get_condition(node.status.conditions, CONDITION_READY)
    assert ready is not None
    assert ready.status
    assert await available_nodes(store) == {"n1"}


async def test_a_node_records_the_replicas_placed_on_its_disks(tmp_path: Path) -> None:
    store = MemoryStore()
    objects = Objects(store)
    await _run_node(store, tmp_path / "data")
    (uuid,) = (await objects.get(Node, "n1")).status.disk_status
    for name, node in (("v-r-00000001", "n1"), ("v-r-00000002", "n2")):
        await objects.create(
            Replica(
                meta=ObjectMeta(name=name),
                spec=ReplicaSpec(volume_name="v", volume_size=1 << 30, node_id=node, disk_id=uuid),
            )
        )
    await _run_node(store, tmp_path / "data")  # (it records its disks when it starts)
    status = (await objects.get(Node, "n1")).status.disk_status[uuid]
    assert status.scheduled_replica == {"v-r-00000001": 1 << 30}
    assert status.storage_scheduled == 1 << 30


async def test_a_restarted_node_keeps_the_operators_settings(tmp_path: Path) -> None:
    store = MemoryStore()
    await _run_node(store, tmp_path / "data")
    objects = Objects(store)
    node = await objects.get(Node, "n1")
    ((name, disk),) = node.spec.disks.items()
    tuned = attrs.evolve(
        node,
        spec=attrs.evolve(
            node.spec,
            allow_scheduling=False,
            tags=("ssd",),
            disks={name: attrs.evolve(disk, storage_reserved=1 << 30)},
        ),
    )
    await objects.update(tuned)
    await _run_node(store, tmp_path / "data")
    again = await objects.get(Node, "n1")
    assert again.spec == tuned.spec


@pytest.mark.parametrize("url", ["kubernetes:", "kube", "sqlite:", "memory:x", "nope", "etcd:x"])
def test_an_unknown_store_is_a_usage_error(tmp_path: Path, url: str) -> None:
    result = CliRunner().invoke(
        cli, ["node", "--name", "n1", "--data-dir", str(tmp_path), "--store", url]
    )
    assert result.exit_code == 2
    assert "unknown store" in result.output


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("etcd://", "bad etcd member ''"),
        ("etcd://127.0.0.1", "bad etcd member '127.0.0.1'"),
        ("etcd://127.0.0.1:0", "bad etcd member"),
        ("etcd://127.0.0.1:65536", "bad etcd member"),
        ("etcd://127.0.0.1:2379,", "bad etcd member ''"),
        ("etcd://a@b:2379", "bad etcd member"),
        ("etcd://127.0.0.1:2379/../x", "bad key prefix"),
        ("etcd://127.0.0.1:2379/a b", "bad key prefix"),
    ],
)
def test_a_bad_etcd_url_is_a_usage_error_naming_the_problem(
    tmp_path: Path, url: str, says: str
) -> None:
    result = CliRunner().invoke(
        cli, ["node", "--name", "n1", "--data-dir", str(tmp_path), "--store", url]
    )
    assert result.exit_code == 2
    assert says in result.output
    assert not (tmp_path / "replicas").exists()  # nothing was started


def _ready(node: Node, disk: str) -> bool | None:
    status = node.status.disk_status.get(disk)
    condition = get_condition(status.conditions, CONDITION_READY) if status else None
    return None if condition is None else condition.status


async def test_disks_added_and_removed_through_the_spec(tmp_path: Path) -> None:
    store = MemoryStore()
    objects = Objects(store)
    (tmp_path / "a-file").write_text("not a directory\n")
    async with trio.open_nursery() as nursery:
        await nursery.start(_node(store, tmp_path / "data"))
        (first,) = (await objects.get(Node, "n1")).spec.disks
        more, broken = str(tmp_path / "more"), str(tmp_path / "a-file")
        await update_disks(
            objects,
            "n1",
            {first: DiskChange(), "more": DiskChange(path=more), "bad": DiskChange(path=broken)},
        )
        node = await until(
            objects, Node, "n1", lambda n: {"more", "bad"} <= set(n.status.disk_status)
        )
        status = node.status.disk_status["more"]
        assert _ready(node, "more") is True
        assert status.disk_uuid  # its identity, made when the node opened it
        assert (tmp_path / "more" / "lhtrio-disk.json").exists()
        assert 0 < status.storage_available <= status.storage_maximum
        # a replica placed there runs there
        await objects.create(
            Replica(
                meta=ObjectMeta(name="v-r-00000001"),
                spec=ReplicaSpec(
                    volume_name="v",
                    volume_size=1 << 20,
                    node_id="n1",
                    disk_id=status.disk_uuid,
                    desire_state=DesireState.RUNNING,
                ),
            )
        )
        await until(
            objects,
            Replica,
            "v-r-00000001",
            lambda r: r.status.current_state is InstanceState.RUNNING,
        )
        assert (tmp_path / "more" / "replicas" / "v-r-00000001").is_dir()
        await objects.delete(await objects.get(Replica, "v-r-00000001"))  # (no finalizer: gone)
        assert _ready(node, "bad") is False
        bad = get_condition(node.status.disk_status["bad"].conditions, CONDITION_READY)
        assert bad is not None
        assert bad.reason == "DiskUnavailable"
        assert broken in bad.message
        assert node.status.disk_status["bad"].storage_maximum == 0  # nothing is placed there

        # the first disk and "bad" go: scheduling off first, as the rules want
        off = DiskChange(allow_scheduling=False)
        await update_disks(objects, "n1", {first: off, "more": DiskChange(), "bad": off})
        await update_disks(objects, "n1", {"more": DiskChange()})
        node = await until(objects, Node, "n1", lambda n: set(n.status.disk_status) == {"more"})
        assert list(node.spec.disks) == ["more"]
        nursery.cancel_scope.cancel()

    # started again with its data directory: that disk is the node's again, "more" stays
    await _run_node(store, tmp_path / "data")
    node = await objects.get(Node, "n1")
    assert set(node.spec.disks) == {first, "more"}
    assert node.spec.disks[first].allow_scheduling  # a new disk, with the defaults
