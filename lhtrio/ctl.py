"""``lhtrio ctl``: the operator's client for a running engine's control endpoint.

Every verb is one control call (see :mod:`lhtrio.engine.service`). ``-o json`` prints the result as
JSON for scripts; the default is a readable table. Errors go to stderr with exit code 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from lhtrio.net import open_rpc_client
from lhtrio.output import output_option, run_client, show, table
from lhtrio.units import format_size, human_size, parse_size
from lhtrio.wire import Role

__all__ = ["ctl"]


def _call(engine: str, name: str, /, **args: Any) -> Any:
    async def run() -> Any:
        async with open_rpc_client(engine, client="lhtrio-ctl", role=Role.ENGINE) as client:
            return await client.call_control(name, **args)

    return run_client(run)


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
    lines = [
        f"replica   {rebuild['address']}",
        f"source    {rebuild['source']}",
        f"state     {rebuild['state']}",
        f"progress  {human_size(rebuild['done_bytes'])} of {human_size(rebuild['total_bytes'])}"
        f" allocated ({rebuild['files_done']}/{rebuild['files']} files, "
        f"{rebuild['skipped_files']} unchanged)",
        f"sent      {human_size(rebuild['sent_bytes'])} in {rebuild['seconds']:.1f} s",
    ]
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
                s["size"],
                s["user_created"],
                s["removed"],
                ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())),
            ]
            for s in snapshots
        ],
    )


@click.group()
@click.option("--engine", required=True, help="The engine's control endpoint, HOST:PORT.")
@click.pass_context
def ctl(ctx: click.Context, engine: str) -> None:
    """Inspect and operate a running engine."""
    ctx.obj = functools.partial(_call, engine)


@ctl.command()
@output_option
@click.pass_obj
def info(call: Callable[..., Any], output: str) -> None:
    """Volume, size, state, frontend and replicas."""
    show(output, call("info"), _render_info)


@ctl.command()
@click.argument("size")
@output_option
@click.pass_obj
def expand(call: Callable[..., Any], size: str, output: str) -> None:
    """Grow the volume to SIZE (bytes or 10Gi, ...)."""
    show(output, call("expand", size=parse_size(size)), _render_info)


@ctl.group()
def snapshot() -> None:
    """Create, list, remove, purge and revert snapshots."""


@snapshot.command("create")
@click.argument("name", required=False, default="")
@click.option("--label", "labels", multiple=True, help="k=v, repeatable.")
@output_option
@click.pass_obj
def snapshot_create(
    call: Callable[..., Any], name: str, labels: tuple[str, ...], output: str
) -> None:
    """Take a consistent snapshot on every replica (NAME defaults to a UUID)."""
    parsed = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"label {label!r} is not k=v", param_hint="--label")
        parsed[key] = value
    created = call("snapshot_create", name=name, labels=parsed)
    show(output, {"name": created}, lambda v: v["name"])


@snapshot.command("ls")
@output_option
@click.pass_obj
def snapshot_ls(call: Callable[..., Any], output: str) -> None:
    """List snapshots (oldest first)."""
    show(output, call("snapshot_ls"), _render_snapshots)


@snapshot.command("rm")
@click.argument("name")
@output_option
@click.pass_obj
def snapshot_rm(call: Callable[..., Any], name: str, output: str) -> None:
    """Mark snapshot NAME removed (purge reclaims its space)."""
    call("snapshot_rm", name=name)
    show(output, {"removed": name}, lambda v: "")


@snapshot.command("purge")
@output_option
@click.pass_obj
def snapshot_purge(call: Callable[..., Any], output: str) -> None:
    """Reclaim the space of removed and system snapshots; waits until done."""
    call("snapshot_purge")
    show(output, {"purged": True}, lambda v: "")


@snapshot.command("revert")
@click.argument("name")
@output_option
@click.pass_obj
def snapshot_revert(call: Callable[..., Any], name: str, output: str) -> None:
    """Revert the volume to snapshot NAME (stop the frontend first)."""
    call("snapshot_revert", name=name)
    show(output, {"reverted": name}, lambda v: "")


@ctl.group()
def frontend() -> None:
    """Stop or start the volume's frontend."""


@frontend.command("stop")
@output_option
@click.pass_obj
def frontend_stop(call: Callable[..., Any], output: str) -> None:
    """Stop serving clients (in-flight requests finish, data is flushed)."""
    show(output, call("frontend_stop"), _render_info)


@frontend.command("start")
@output_option
@click.pass_obj
def frontend_start(call: Callable[..., Any], output: str) -> None:
    """Serve clients again."""
    show(output, call("frontend_start"), _render_info)


@ctl.group()
def replica() -> None:
    """List or remove the volume's replicas."""


@replica.command("ls")
@output_option
@click.pass_obj
def replica_ls(call: Callable[..., Any], output: str) -> None:
    """Replicas with their mode (RW, WO, ERR)."""
    show(output, call("replica_ls"), _render_replicas)


@replica.command("rm")
@click.argument("address")
@output_option
@click.pass_obj
def replica_rm(call: Callable[..., Any], address: str, output: str) -> None:
    """Remove the replica at ADDRESS from the volume."""
    show(output, call("replica_rm", address=address), _render_info)


@replica.command("add")
@click.argument("address")
@click.option("--no-wait", is_flag=True, help="Return once the replica is WO (rebuilding).")
@output_option
@click.pass_context
def replica_add(ctx: click.Context, address: str, no_wait: bool, output: str) -> None:
    """Add the replica at ADDRESS and rebuild it from a healthy one while I/O goes on.

    Without --no-wait, shows the progress (bytes synced of bytes to sync) and returns when the
    replica is RW (exit 0) or the rebuild failed (exit 1).
    """
    engine = ctx.parent.parent.params["engine"] if ctx.parent and ctx.parent.parent else ""

    async def run() -> dict[str, Any]:
        async with open_rpc_client(engine, client="lhtrio-ctl", role=Role.ENGINE) as client:
            progress: dict[str, Any] = await client.call_control("replica_add", address=address)
            if no_wait:
                return progress
            with _Bar(enabled=output == "table" and sys.stderr.isatty()) as bar:
                while progress["state"] not in ("done", "failed"):
                    bar.show(progress)
                    progress = await client.call_control("rebuild_status", wait=1.0)
                bar.show(progress)
            return progress

    result = run_client(run)
    show(output, result, _render_rebuild)
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
def salvage(call: Callable[..., Any], output: str) -> None:
    """Serve a faulted volume again from the replica with the newest data."""
    result = call("salvage")
    show(output, result, lambda v: f"salvaged {v['address']}: {v['reason']}")
