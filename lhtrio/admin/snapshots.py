"""``lhtrio snapshot``: a volume's snapshots through the admin API (the ``snapshot*`` actions of
``POST /v1/volumes/NAME``), as ``lhtrio ctl snapshot`` does through one engine.

A snapshot object is ``{"name", "parent", "children", "created" (RFC 3339), "size" (bytes as a
string), "userCreated", "removed", "labels"}``; ``snapshot ls`` lists ``{"data": [...]}``.
"""

from __future__ import annotations

from typing import Any

import click

from lhtrio.admin.client import admin_client
from lhtrio.admin.documents import dig, render_snapshots
from lhtrio.admin.groups import ApiGroup, json_option
from lhtrio.admin.volumes import check_volume
from lhtrio.admin.waits import volume_path
from lhtrio.models.names import validate_snapshot_name
from lhtrio.output import check_labels, checked, show

__all__ = ["snapshot"]

check_snapshot = checked(validate_snapshot_name)


def _action(volume: str, action: str, body: dict[str, object]) -> Any:
    return admin_client().post(volume_path(volume), body, action=action)


@click.group(cls=ApiGroup)
def snapshot() -> None:
    """Create, list, remove, revert and purge a volume's snapshots.

    Through the admin API: lhtrio [--api URL] [--token-file FILE] snapshot VERB VOLUME ...
    (exit codes as for lhtrio volume).
    """


@snapshot.command("create")
@click.argument("volume", callback=check_volume)
@click.argument("name", callback=check_snapshot, required=False)
@click.option(
    "--label",
    "labels",
    metavar="KEY=VALUE",
    callback=check_labels,
    multiple=True,
    help="A label KEY=VALUE (Kubernetes label rules); repeat for more.",
)
@json_option
def create(volume: str, name: str | None, labels: dict[str, str], output: str) -> None:
    """Take a snapshot NAME (without it, the engine names it) of VOLUME.

    A detached volume is attached for the length of the call.
    """
    body: dict[str, object] = {}
    if name is not None:
        body["name"] = name
    if labels:
        body["labels"] = labels
    created = _action(volume, "snapshotCreate", body)
    show(output, created, lambda s: f"snapshot {dig(s, 'name')} of volume {volume} created")


@snapshot.command("ls")
@click.argument("volume", callback=check_volume)
@json_option
def ls(volume: str, output: str) -> None:
    """List VOLUME's snapshots: parent, creation time, size, labels."""
    show(output, _action(volume, "snapshotList", {}), render_snapshots)


@snapshot.command("rm")
@click.argument("volume", callback=check_volume)
@click.argument("name", callback=check_snapshot)
@json_option
def rm(volume: str, name: str, output: str) -> None:
    """Mark snapshot NAME of VOLUME removed (snapshot purge reclaims its space)."""
    answer = _action(volume, "snapshotDelete", {"name": name})
    show(output, answer, lambda _: f"snapshot {name} of volume {volume} marked removed")


@snapshot.command("revert")
@click.argument("volume", callback=check_volume)
@click.argument("name", callback=check_snapshot)
@json_option
def revert(volume: str, name: str, output: str) -> None:
    """Revert VOLUME to snapshot NAME (detach it from its workload first)."""
    answer = _action(volume, "snapshotRevert", {"name": name})
    show(output, answer, lambda _: f"volume {volume} reverted to snapshot {name}")


@snapshot.command("purge")
@click.argument("volume", callback=check_volume)
@json_option
def purge(volume: str, output: str) -> None:
    """Reclaim the space of VOLUME's removed and system snapshots."""
    answer = _action(volume, "snapshotPurge", {})
    show(output, answer, lambda _: f"volume {volume}: snapshots purged")
