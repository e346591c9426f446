"""``lhtrio ctl``: the operator's client for a running engine's control endpoint.

Every verb is one control call (see :mod:`lhtrio.engine.service`). ``-o json`` (before or after
the verb) prints the result as JSON for scripts; the default is a readable table. Arguments are
checked before anything is sent (usage errors exit 2); errors of the engine go to stderr with exit
code 1. :mod:`lhtrio.output` has what this shares with ``lhtrio im``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lhtrio.models.names import validate_snapshot_name
from lhtrio.net import open_rpc_client
from lhtrio.output import (
    Endpoint,
    check_address,
    check_labels,
    check_size,
    checked,
    group_output_option,
    output_option,
    run_client,
    table,
)
from lhtrio.units import format_size, human_size
from lhtrio.wire import Role

__all__ = ["ctl"]


ENGINE_ENV = "LHTRIO_ENGINE"
check_snapshot = checked(validate_snapshot_name)


def _render_info(info: dict[str, Any]) -> str:
    frontend = info["frontend"]
    lines = [
        f"volume    {info['volume']}",
        f"size      {format_size(info['size'])} ({info['size']} bytes)",
        f"state     {info['state']}",
        f"frontend  {frontend['state']} {frontend['address']}".rstrip(),
        "",
        _render_replicas(info["replicas"]),
    ]
    return "\n".join(lines)


def _render_replicas(replicas: list[dict[str, Any]]) -> str:
    return table(
        ["ADDRESS", "MODE", "LINK", "REBUILD", "ERROR"],
        [
            [r["address"], r["mode"], r["link"], _rebuild_cell(r.get("rebuild")), r["error"]]
            for r in replicas
        ],
    )


def _rebuild_cell(rebuild: dict[str, Any] | None) -> str:
    if not rebuild:
        return ""
    total = rebuild["total_bytes"]
    percent = 100 * rebuild["done_bytes"] // total if total else 0
    if rebuild["state"] in ("syncing", "starting"):
        return f"{rebuild['state']} {percent}%"
    return str(rebuild["state"])


def _render_rebuild(rebuild: dict[str, Any]) -> str:
    kind = "delta" if rebuild.get("delta") else "full"
    seconds = rebuild["seconds"]
    rate = f", {human_size(int(rebuild['sent_bytes'] / seconds))}/s" if seconds > 0 else ""
    lines = [
        f"replica   {rebuild['address']}",
        f"source    {rebuild['source']}",
        f"state     {rebuild['state']} ({kind} rebuild)",
        f"synced    {human_size(rebuild['done_bytes'])} of {human_size(rebuild['total_bytes'])}"
        f" allocated ({rebuild['files_done']} of {rebuild['files']} files, "
        f"{rebuild['skipped_files']} unchanged)",
        f"sent      {human_size(rebuild['sent_bytes'])} in {seconds:.1f} s{rate}",
    ]
    # Why less was sent than synced: data the new replica already held.
    equal = [
        (rebuild.get("compared_bytes", 0), "compared equal"),
        (rebuild.get("known_bytes", 0), "known equal from the away log"),
        (rebuild.get("skipped_bytes", 0), "in unchanged files"),
    ]
    if any(n for n, _ in equal):
        lines.append("kept      " + ", ".join(f"{human_size(n)} {why}" for n, why in equal if n))
    if rebuild["error"]:
        lines.append(f"error     {rebuild['error']}")
    return "\n".join(lines)


def _render_snapshots(snapshots: list[dict[str, Any]]) -> str:
    return table(
        ["NAME", "PARENT", "CREATED", "SIZE", "USER", "REMOVED", "LABELS"],
        [
            [
                s["name"],
                s["parent"],
                s["created"],
                human_size(s["size"]),
                _yes(s["user_created"]),
                _yes(s["removed"]),
                ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())),
            ]
            for s in snapshots
        ],
    )


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


@click.group()
@click.option(
    "--engine",
    metavar="HOST:PORT",
    envvar=ENGINE_ENV,
    show_envvar=True,
    callback=check_address,
    help="The engine's control address (the first line `lhtrio engine` prints; `lhtrio im ls`).",
)
@group_output_option
@click.pass_context
def ctl(ctx: click.Context, engine: str | None, output: str) -> None:
    """Inspect and operate a running engine: lhtrio ctl --engine HOST:PORT [-o json] VERB.

    Every verb prints a table, or JSON with -o json (before or after the verb). Bad arguments
    exit with code 2 before anything is sent; errors of the engine go to stderr with code 1.
    """
    ctx.obj = Endpoint(
        address=engine,
        what="engine",
        command="ctl",
        envvar=ENGINE_ENV,
        role=Role.ENGINE,
        output=output,
    )


@ctl.command()
@output_option
@click.pass_obj
def info(engine: Endpoint) -> None:
    """Show the volume's size, state, frontend and replicas."""
    engine.show(engine.call("info"), _render_info)


@ctl.command()
@click.argument("size", metavar="SIZE", callback=check_size)
@output_option
@click.pass_obj
def expand(engine: Endpoint, size: int) -> None:
    """Grow the volume and every replica to SIZE (10Gi, 1T, bytes; a multiple of 4096)."""
    engine.show(engine.call("expand", size=size), _render_info)


@ctl.group()
def snapshot() -> None:
    """Create, list, remove, purge and revert the volume's snapshots."""


@snapshot.command("create")
@click.argument("name", callback=check_snapshot, required=False)
@click.option(
    "--label",
    "labels",
    metavar="KEY=VALUE",
    callback=check_labels,
    multiple=True,
    help="A label KEY=VALUE (Kubernetes label rules); repeat for more.",
)
@output_option
@click.pass_obj
def snapshot_create(engine: Endpoint, name: str | None, labels: dict[str, str]) -> None:
    """Take a consistent snapshot NAME on every replica (NAME defaults to a UUID)."""
    created = engine.call("snapshot_create", name=name or "", labels=labels)
    engine.show({"name": created}, lambda v: v["name"])


@snapshot.command("ls")
@output_option
@click.pass_obj
def snapshot_ls(engine: Endpoint) -> None:
    """List the snapshots, oldest first."""
    engine.show(engine.call("snapshot_ls"), _render_snapshots)


@snapshot.command("rm")
@click.argument("name", callback=check_snapshot)
@output_option
@click.pass_obj
def snapshot_rm(engine: Endpoint, name: str) -> None:
    """Mark snapshot NAME removed on every replica (snapshot purge reclaims its space)."""
    engine.call("snapshot_rm", name=name)
    engine.show({"removed": name}, lambda v: f"snapshot {name} marked removed")


@snapshot.command("purge")
@output_option
@click.pass_obj
def snapshot_purge(engine: Endpoint) -> None:
    """Reclaim the space of removed and system snapshots; waits until done."""
    engine.call("snapshot_purge")
    engine.show({"purged": True}, lambda v: "purged")


@snapshot.command("revert")
@click.argument("name", callback=check_snapshot)
@output_option
@click.pass_obj
def snapshot_revert(engine: Endpoint, name: str) -> None:
    """Revert the volume to snapshot NAME (stop the frontend first)."""
    engine.call("snapshot_revert", name=name)
    engine.show({"reverted": name}, lambda v: f"reverted to snapshot {name}")


@ctl.group()
def frontend() -> None:
    """Stop or start serving the volume to clients."""


@frontend.command("stop")
@output_option
@click.pass_obj
def frontend_stop(engine: Endpoint) -> None:
    """Stop serving clients (in-flight requests finish, data is flushed)."""
    engine.show(engine.call("frontend_stop"), _render_info)


@frontend.command("start")
@output_option
@click.pass_obj
def frontend_start(engine: Endpoint) -> None:
    """Serve clients again."""
    engine.show(engine.call("frontend_start"), _render_info)


@ctl.group()
def replica() -> None:
    """List the volume's replicas, add one (rebuilt online) or remove one."""


@replica.command("ls")
@output_option
@click.pass_obj
def replica_ls(engine: Endpoint) -> None:
    """List the replicas with their mode (RW, WO, ERR) and rebuild progress."""
    engine.show(engine.call("replica_ls"), _render_replicas)


@replica.command("rm")
@click.argument("address", callback=check_address)
@output_option
@click.pass_obj
def replica_rm(engine: Endpoint, address: str) -> None:
    """Remove the replica at ADDRESS from the volume (never the last RW one)."""
    engine.show(engine.call("replica_rm", address=address), _render_info)


@replica.command("add")
@click.argument("address", callback=check_address)
@click.option("--no-wait", is_flag=True, help="Return once the replica is WO (rebuilding).")
@output_option
@click.pass_obj
def replica_add(engine: Endpoint, address: str, no_wait: bool) -> None:
    """Add the replica at ADDRESS and rebuild it from a healthy one while I/O goes on.

    Without --no-wait, shows the progress (bytes synced of bytes to sync) and returns when the
    replica is RW (exit 0) or the rebuild failed (exit 1).
    """
    control = engine.require()

    async def run() -> dict[str, Any]:
        async with open_rpc_client(control, client=engine.client, role=engine.role) as client:
            progress: dict[str, Any] = await client.call_control("replica_add", address=address)
            if no_wait:
                return progress
            with _Bar(enabled=engine.output == "table" and sys.stderr.isatty()) as bar:
                while progress["state"] not in ("done", "failed"):
                    bar.show(progress)
                    progress = await client.call_control("rebuild_status", wait=1.0)
                bar.show(progress)
            return progress

    result = run_client(run)
    engine.show(result, _render_rebuild)
    if result["state"] == "failed":
        sys.exit(1)


class _Bar:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            click.echo("", err=True)

    def show(self, progress: dict[str, Any]) -> None:
        if not self.enabled:
            return
        total, done = progress["total_bytes"], progress["done_bytes"]
        fraction = done / total if total else 0.0
        filled = int(30 * fraction)
        click.echo(
            f"\r{progress['state']:<9} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} "
            f"{human_size(done)}/{human_size(total)}, sent {human_size(progress['sent_bytes'])}",
            err=True,
            nl=False,
        )


@ctl.command()
@output_option
@click.pass_obj
def salvage(engine: Endpoint) -> None:
    """Serve a faulted volume again from the replica with the newest data."""
    result = engine.call("salvage")
    engine.show(result, lambda v: f"salvaged {v['address']}: {v['reason']}")
