"""The verbs over the API's changes of nodes, disks, replicas and volumes, against the real API:
``node update``, ``node disk add|rm|update`` (the node's whole set of disks sent back on
condition of the version read), ``replica rm``, ``volume set-locality`` and ``volume label``
(with ``If-Match``: a change made meanwhile is a conflict, never overwritten), ``attachment ls``,
list filters; the token sent with reads; an ``https://`` API trusted through ``--ca-file``.
Every refusal exits with its code and changes nothing (the store checked)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import attrs
import httpx
import pytest
import trio
import trustme

from lhtrio.api import serve_api
from lhtrio.errors import NotFoundError
from lhtrio.manager import tickets
from lhtrio.models.cluster import Node, Replica, Volume
from lhtrio.models.cluster.node import DiskSpec
from lhtrio.models.cluster.volume import Robustness, VolumeState
from lhtrio.models.times import parse_time
from tests.admin.conftest import TOKEN, Lhtrio, run_cli
from tests.admin.test_volumes import make_replica, make_volume


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


async def test_node_update_changes_only_what_is_given(lhtrio: Lhtrio) -> None:
    result = await lhtrio("node", "update", "n1", "--no-scheduling", "--tag", "ssd",
                          "--tag", "fast", "--zone", "z1")  # fmt: skip
    assert result.exit_code == 0, result.output
    node = await lhtrio.api.objects.get(Node, "n1")
    assert (node.spec.allow_scheduling, node.spec.tags, node.spec.zone) == (
        False, ("fast", "ssd"), "z1",
    )  # fmt: skip
    assert ["schedulable", "no", "(disabled)"] in rows(result.stdout)

    evicted = await lhtrio("node", "update", "n1", "--eviction", "--no-tags")
    assert evicted.exit_code == 0, evicted.output
    node = await lhtrio.api.objects.get(Node, "n1")
    assert (node.spec.eviction_requested, node.spec.tags, node.spec.zone) == (True, (), "z1")

    before = await lhtrio.api.state()
    refused = await lhtrio("node", "update", "n2", "--eviction")  # scheduling still on
    assert refused.exit_code == 4, refused.output
    assert "scheduling" in refused.stderr
    assert await lhtrio.api.state() == before


async def test_disks_added_changed_and_removed(lhtrio: Lhtrio, tmp_path: Path) -> None:
    path = str(tmp_path / "ssd1")
    added = await lhtrio("node", "disk", "add", "n1", "ssd1", "--path", path,
                         "--reserved", "1Gi", "--tag", "ssd")  # fmt: skip
    assert added.exit_code == 0, added.output
    disks = (await lhtrio.api.objects.get(Node, "n1")).spec.disks
    assert disks["ssd1"] == DiskSpec(
        path=path, allow_scheduling=True, storage_reserved=1 << 30, tags=("ssd",)
    )

    again = await lhtrio("node", "disk", "add", "n1", "ssd1", "--path", path)
    assert (again.exit_code, again.stdout) == (4, "")
    assert "has a disk ssd1 already" in again.stderr

    before = await lhtrio.api.state()
    busy = await lhtrio("node", "disk", "rm", "n1", "ssd1")  # it still takes replicas
    assert busy.exit_code == 4, busy.output
    assert await lhtrio.api.state() == before

    changed = await lhtrio("node", "disk", "update", "n1", "ssd1", "--no-scheduling", "--no-tags")
    assert changed.exit_code == 0, changed.output
    disk = (await lhtrio.api.objects.get(Node, "n1")).spec.disks["ssd1"]
    assert (disk.allow_scheduling, disk.tags, disk.storage_reserved) == (False, (), 1 << 30)

    removed = await lhtrio("node", "disk", "rm", "n1", "ssd1")
    assert removed.exit_code == 0, removed.output
    assert "ssd1" not in (await lhtrio.api.objects.get(Node, "n1")).spec.disks

    missing = await lhtrio("node", "disk", "rm", "n1", "ssd1")
    assert (missing.exit_code, missing.stdout) == (3, "")
    assert "node n1 has no disk ssd1" in missing.stderr


async def test_replica_rm_asks_for_a_rebuild_but_never_of_the_last_healthy_one(
    lhtrio: Lhtrio,
) -> None:
    await make_volume(lhtrio, state=VolumeState.ATTACHED, current_node_id="n1",
                      robustness=Robustness.HEALTHY)  # fmt: skip
    await make_replica(lhtrio, "db-1-r-1", "n1")
    await make_replica(lhtrio, "db-1-r-2", "n2", failed=True)
    removed = await lhtrio("replica", "rm", "db-1-r-2")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == (
        "replica db-1-r-2: removal requested; follow its replacement with "
        "lhtrio volume rebuild-status db-1 --wait\n"
    )
    with pytest.raises(NotFoundError):  # (no finalizer here: it went at once)
        await lhtrio.api.objects.get(Replica, "db-1-r-2")

    await lhtrio.api.objects.change(Replica, "db-1-r-1", mark_healthy)
    before = await lhtrio.api.state()
    last = await lhtrio("replica", "rm", "db-1-r-1")
    assert (last.exit_code, last.stdout) == (4, "")
    assert await lhtrio.api.state() == before


def mark_healthy(replica: Replica) -> Replica:
    spec = attrs.evolve(replica.spec, healthy_at=parse_time("2026-01-02T03:04:05Z"))
    return attrs.evolve(replica, spec=spec)


async def test_set_locality_and_labels(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio)
    before = await lhtrio.api.state()
    refused = await lhtrio("volume", "set-locality", "db-1", "strict-local")  # 3 replicas
    assert refused.exit_code == 4, refused.output
    assert await lhtrio.api.state() == before
    local = await lhtrio("volume", "set-locality", "db-1", "best-effort")
    assert local.stdout == "volume db-1: data locality best-effort\n"
    assert (await lhtrio.api.objects.get(Volume, "db-1")).spec.data_locality.value == "best-effort"

    labelled = await lhtrio("volume", "label", "db-1", "app=db", "tier=gold")
    assert labelled.stdout == "volume db-1: labels app=db,tier=gold\n"
    relabelled = await lhtrio("volume", "label", "db-1", "tier-", "owner=ops")
    assert relabelled.stdout == "volume db-1: labels app=db,owner=ops\n"
    volume = await lhtrio.api.objects.get(Volume, "db-1")
    assert volume.meta.labels == {"app": "db", "owner": "ops"}

    selected = await lhtrio("volume", "ls", "-l", "app=db,owner", "-o", "json")
    assert [v["metadata"]["name"] for v in json.loads(selected.stdout)["data"]] == ["db-1"]
    none = await lhtrio("volume", "ls", "-l", "app!=db", "-o", "json")
    assert json.loads(none.stdout)["data"] == []
    attached = await lhtrio("volume", "ls", "--state", "attached", "-o", "json")
    assert json.loads(attached.stdout)["data"] == []

    for args, message in (
        (("volume", "label", "db-1", "app"), "not KEY=VALUE"),
        (("volume", "label", "db-1", "a/b/c=x"), "label"),
        (("volume", "label", "db-1", "app=x", "app-"), "both set and removed"),
        (("volume", "set-locality", "db-1", "nearby"), "'nearby' is not one of"),
        (("volume", "ls", "--state", "sleeping"), "'sleeping' is not one of"),
        (("volume", "ls", "-l", "app in (db)"), "--selector"),
        (("replica", "ls", "-l", "a=b=c"), "--selector"),
    ):
        before = await lhtrio.api.state()
        bad = await lhtrio(*args)
        assert bad.exit_code == 2, (args, bad.output)
        assert message in bad.stderr, (args, bad.stderr)
        assert await lhtrio.api.state() == before


async def test_attachment_ls_and_replica_filters(lhtrio: Lhtrio) -> None:
    await make_volume(lhtrio)
    await make_replica(lhtrio, "db-1-r-1", "n1")
    await make_replica(lhtrio, "db-1-r-2", "n2")
    await tickets.add_ticket(lhtrio.api.objects, "db-1", "n1")
    listed = await lhtrio("attachment", "ls")
    assert listed.exit_code == 0, listed.output
    assert rows(listed.stdout)[1] == ["db-1", "db-1", "1", "0/1", "n1"]
    on_n2 = await lhtrio("replica", "ls", "--node", "n2")
    assert [r[0] for r in rows(on_n2.stdout)[1:]] == ["db-1-r-2"]


async def test_reads_send_the_token_when_the_api_wants_it(
    lhtrio: Lhtrio, nursery: trio.Nursery
) -> None:
    closed = await nursery.start(
        functools.partial(serve_api, lhtrio.api.objects, "127.0.0.1", 0, token=TOKEN)
    )
    without = await trio.to_thread.run_sync(
        functools.partial(run_cli, "--api", closed, "volume", "ls")
    )
    assert without.exit_code == 6
    assert "no token was given" in without.stderr
    listed = await lhtrio("--api", closed, "volume", "ls")
    assert listed.exit_code == 0, listed.output


async def test_an_https_api_is_trusted_through_ca_file(
    lhtrio: Lhtrio, nursery: trio.Nursery, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    url = await nursery.start(
        functools.partial(
            serve_api, lhtrio.api.objects, "127.0.0.1", 0, token=TOKEN, tls=(str(chain), str(key))
        )
    )
    assert url.startswith("https://")
    untrusted = await lhtrio("--api", url, "volume", "ls")
    assert (untrusted.exit_code, untrusted.stdout) == (5, "")
    assert "is not trusted by the system's CAs" in untrusted.stderr
    assert "--ca-file FILE or LHTRIO_CA_FILE" in untrusted.stderr
    trusted = await lhtrio("--api", url, "--ca-file", str(ca_file), "status")
    assert trusted.exit_code == 0, trusted.output
    by_env = await lhtrio("--api", url, "volume", "ls", env={"LHTRIO_CA_FILE": str(ca_file)})
    assert by_env.exit_code == 0, by_env.output
    missing = await lhtrio("--api", url, "--ca-file", str(tmp_path / "nope.pem"), "status")
    assert missing.exit_code == 2
    async with httpx.AsyncClient(verify=False) as client:  # (the server is up, and TLS)
        assert (await client.get(f"{url}/healthz")).status_code == 200
