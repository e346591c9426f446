"""``lhtrio ctl``: the operator's client for a running engine's control endpoint.

Every verb is one control call of :mod:`lhtrio.wire.calls.engine`, made through
:class:`~lhtrio.clients.engine.EngineClient`; the renderers take its records
(:mod:`lhtrio.models.engine`). ``-o json`` (before or after the verb) prints the record as it
travels on the wire, for scripts; the default is a readable table. Arguments are
checked before anything is sent (usage errors exit 2); errors of the engine go to stderr with exit
code 1. :mod:`lhtrio.output` has what this shares with ``lhtrio im``.
"""

from __future__ import annotations

import sys

import click

from lhtrio.clients.engine import EngineClient
from lhtrio.errors import NotFoundError
from lhtrio.models.engine import RebuildProgress, RebuildState, ReplicaLink, Snapshot, VolumeInfo
from lhtrio.models.names import validate_snapshot_name
from lhtrio.models.times import format_time
from lhtrio.net import RpcClient
from lhtrio.output import (
    Endpoint,
    check_address,
    check_labels,
    check_size,
    checked,
    group_output_option,
    output_option,
    table,
)
from lhtrio.units import format_size, human_size
from lhtrio.wire import Role

__all__ = ["ctl"]


ENGINE_ENV = "LHTRIO_ENGINE"
check_snapshot = checked(validate_snapshot_name)


def _render_info(info: VolumeInfo) -> str:
    frontend = info.frontend
    lines = [
        f"volume    {info.volume}",
        f"size      {format_size(info.size)} ({info.size} bytes)",
        f"state     {info.state.value}",
        f"frontend  {frontend.state.value} {frontend.address}".rstrip(),
        "",
        _render_replicas(info.replicas),
    ]
    return "\n".join(lines)


def _render_replicas(replicas: list[ReplicaLink]) -> str:
    return table(
        ["ADDRESS", "MODE", "LINK", "REBUILD", "ERROR"],
        [[r.address, r.mode.value, r.link, _rebuild_cell(r.rebuild), r.error] for r in replicas],
    )


def _rebuild_cell(rebuild: RebuildProgress | None) -> str:
    if rebuild is None:
        return ""
    total = rebuild.total_bytes
    percent = 100 * rebuild.done_bytes // total if total else 0
    if rebuild.state in (RebuildState.SYNCING, RebuildState.STARTING):
        return f"{rebuild.state.value} {percent}%"
    return str(rebuild.state.value)


def _render_rebuild(rebuild: RebuildProgress) -> str:
    kind = "delta" if rebuild.delta else "full"
    seconds = rebuild.seconds
    rate = f", {human_size(int(rebuild.sent_bytes / seconds))}/s" if seconds > 0 else ""
    lines = [
        f"replica   {rebuild.address}",
        f"source    {rebuild.source}",
        f"state     {rebuild.state.value} ({kind} rebuild)",
        f"synced    {human_size(rebuild.done_bytes)} of {human_size(rebuild.total_bytes)}"
        f" allocated ({rebuild.files_done} of {rebuild.files} files, "
        f"{rebuild.skipped_files} unchanged)",
        f"sent      {human_size(rebuild.sent_bytes)} in {seconds:.1f} s{rate}",
    ]
    # Why less was sent than synced: data the new replica already held.
    equal = [
        (rebuild.compared_bytes, "compared equal"),
        (rebuild.known_bytes, "known equal from the away log"),
        (rebuild.skipped_bytes, "in unchanged files"),
    ]
    if any(n for n, _ in equal):
        lines.append("kept      " + ", ".join(f"{human_size(n)} {why}" for n, why in equal if n))
    if rebuild.error:
        lines.append(f"error     {rebuild.error}")
    return "\n".join(lines)


def _render_snapshots(snapshots: list[Snapshot]) -> str:
    return table(
        ["NAME", "PARENT", "CREATED", "SIZE", "USER", "REMOVED", "LABELS"],
        [
            [
                s.name,
                s.parent,
                format_time(s.created),
                human_size(s.size),
                _yes(s.user_created),
                _yes(s.removed),
                ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
            ]
            for s in snapshots
        ],
    )


def _yes(flag: bool) -> str:
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
    engine.show(engine.run(lambda rpc: EngineClient(rpc).info()), _render_info)


@ctl.command()
@click.argument("size", metavar="SIZE", callback=check_size)
@output_option
@click.pass_obj
def expand(engine: Endpoint, size: int) -> None:
    """Grow the volume and every replica to SIZE (10Gi, 1T, bytes; a multiple of 4096)."""
    engine.show(engine.run(lambda rpc: EngineClient(rpc).expand(size)), _render_info)


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
    created = engine.run(lambda rpc: EngineClient(rpc).snapshot_create(name or "", labels))
    engine.show({"name": created}, lambda _: created)


@snapshot.command("ls")
@output_option
@click.pass_obj
def snapshot_ls(engine: Endpoint) -> None:
    """List the snapshots, oldest first."""
    engine.show(engine.run(lambda rpc: EngineClient(rpc).snapshot_ls()), _render_snapshots)


@snapshot.command("rm")
@click.argument("name", callback=check_snapshot)
@output_option
@click.pass_obj
def snapshot_rm(engine: Endpoint, name: str) -> None:
    """Mark snapshot NAME removed on every replica (snapshot purge reclaims its space)."""
    engine.run(lambda rpc: EngineClient(rpc).snapshot_rm(name))
    engine.show({"removed": name}, lambda _: f"snapshot {name} marked removed")


@snapshot.command("purge")
@output_option
@click.pass_obj
def snapshot_purge(engine: Endpoint) -> None:
    """Reclaim the space of removed and system snapshots; waits until done."""
    engine.run(lambda rpc: EngineClient(rpc).snapshot_purge())
    engine.show({"purged": True}, lambda _: "purged")


@snapshot.command("revert")
@click.argument("name", callback=check_snapshot)
@output_option
@click.pass_obj
def snapshot_revert(engine: Endpoint, name: str) -> None:
    """Revert the volume to snapshot NAME (stop the frontend first)."""
    engine.run(lambda rpc: EngineClient(rpc).snapshot_revert(name))
    engine.show({"reverted": name}, lambda _: f"reverted to snapshot {name}")


@ctl.group()
def frontend() -> None:
    """Stop or start serving the volume to clients."""


@frontend.command("stop")
@output_option
@click.pass_obj
def frontend_stop(engine: Endpoint) -> None:
    """Stop serving clients (in-flight requests finish, data is flushed)."""
    engine.show(engine.run(lambda rpc: EngineClient(rpc).frontend_stop()), _render_info)


@frontend.command("start")
@output_option
@click.pass_obj
def frontend_start(engine: Endpoint) -> None:
    """Serve clients again."""
    engine.show(engine.run(lambda rpc: EngineClient(rpc).frontend_start()), _render_info)


@ctl.group()
def replica() -> None:
    """List the volume's replicas, add one (rebuilt online) or remove one."""


@replica.command("ls")
@output_option
@click.pass_obj
def replica_ls(engine: Endpoint) -> None:
    """List the replicas with their mode (RW, WO, ERR) and rebuild progress."""
    engine.show(engine.run(lambda rpc: EngineClient(rpc).replica_ls()), _render_replicas)


@replica.command("rm")
@click.argument("address", callback=check_address)
@output_option
@click.pass_obj
def replica_rm(engine: Endpoint, address: str) -> None:
    """Remove the replica at ADDRESS from the volume (never the last RW one)."""
    engine.show(engine.run(lambda rpc: EngineClient(rpc).replica_rm(address)), _render_info)


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

    async def run(rpc: RpcClient) -> RebuildProgress:
        client = EngineClient(rpc)
        progress = await client.replica_add(address)
        if no_wait:
            return progress
        with _Bar(enabled=engine.output == "table" and sys.stderr.isatty()) as bar:
            while progress.running:
                bar.show(progress)
                latest = await client.rebuild_status(wait=1.0)
                if latest is None:  # the engine keeps its last rebuild: it was restarted
                    raise NotFoundError(
                        f"engine {rpc.peer} has no rebuild of {address} any more (restarted?): "
                        "see lhtrio ctl replica ls"
                    )
                progress = latest
            bar.show(progress)
        return progress

    result = engine.run(run)
    engine.show(result, _render_rebuild)
    if result.state is RebuildState.FAILED:
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

    def show(self, progress: RebuildProgress) -> None:
        if not self.enabled:
            return
        total, done = progress.total_bytes, progress.done_bytes
        fraction = done / total if total else 0.0
        filled = int(30 * fraction)
        click.echo(
            f"\r{progress.state.value:<9} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} "
            f"{human_size(done)}/{human_size(total)}, sent {human_size(progress.sent_bytes)}",
            err=True,
            nl=False,
        )


@ctl.command()
@output_option
@click.pass_obj
def salvage(engine: Endpoint) -> None:
    """Serve a faulted volume again from the replica with the newest data."""
    result = engine.run(lambda rpc: EngineClient(rpc).salvage())
    engine.show(result, lambda v: f"salvaged {v.address}: {v.reason}")
