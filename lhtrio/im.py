"""``lhtrio im``: the operator's client for a node's instance manager.

Every verb is one control call of :mod:`lhtrio.instances.service`. ``-o json`` (before or after the
verb) prints JSON with the node's raw values; the default is a table. Arguments are checked before
anything is sent (usage errors exit 2); errors of the node go to stderr with exit code 1.
"""

from __future__ import annotations

import sys

import click

from lhtrio.clients.node import NodeClient
from lhtrio.models.instance import Instance, InstanceKind, NodeInfo
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.net import RpcClient
from lhtrio.output import (
    Endpoint,
    check_address,
    checked,
    format_list,
    format_when,
    group_output_option,
    nbd_uri,
    output_option,
    replicas_option,
    size_option,
    table,
)
from lhtrio.units import format_size, human_size
from lhtrio.wire import Role
from lhtrio.wire.control import converter

__all__ = ["im"]

NODE_ENV = "LHTRIO_NODE"
check_instance = checked(validate_instance_name)
check_volume = checked(validate_volume_name)


def _render_instances(instances: list[Instance]) -> str:
    return table(
        ["NAME", "TYPE", "VOLUME", "STATE", "ADDRESS", "FRONTEND/DIRECTORY", "ERROR"],
        [
            [
                i.name,
                i.type.value,
                i.volume,
                i.state_text,
                i.address,
                i.frontend or i.directory or "",
                i.error,
            ]
            for i in instances
        ],
    )


def _render_instance(instance: Instance) -> str:
    fields = converter.unstructure(instance)
    return "\n".join(f"{key:<10} {_field(key, value)}".rstrip() for key, value in fields.items())


def _field(key: str, value: object) -> str:
    """One field of an instance, for reading: sizes with units, times with their age, lists."""
    if key == "size" and isinstance(value, int):
        return f"{format_size(value)} ({value} bytes)"
    if key == "started" and isinstance(value, int | float):
        return format_when(value)
    if isinstance(value, list | tuple):
        return format_list(value)
    return str(value)


def _render_node(info: NodeInfo) -> str:
    lines = [
        f"node       {info.name}",
        f"control    {info.address}",
        f"nbd        {nbd_uri(info.nbd)}",
        f"ports      {info.port_range} ({len(info.ports_in_use)} in use)",
        f"instances  {info.instances}",
        "",
        table(
            ["DISK", "PATH", "CAPACITY", "AVAILABLE", "SCHEDULED", "REPLICAS"],
            [
                [
                    d.uuid,
                    d.path,
                    human_size(d.capacity),
                    human_size(d.available),
                    human_size(d.scheduled),
                    len(d.replicas),
                ]
                for d in info.disks
            ],
        ),
    ]
    return "\n".join(lines)


@click.group()
@click.option(
    "--node",
    metavar="HOST:PORT",
    envvar=NODE_ENV,
    show_envvar=True,
    callback=check_address,
    help="The node's control address (the first line `lhtrio node` prints).",
)
@group_output_option
@click.pass_context
def im(ctx: click.Context, node: str | None, output: str) -> None:
    """Inspect and operate a node's instances: lhtrio im --node HOST:PORT [-o json] VERB.

    Every verb prints a table, or JSON with -o json (before or after the verb; log prints the
    log lines). Bad arguments exit with code 2 before anything is sent; errors of the node go
    to stderr with code 1.
    """
    ctx.obj = Endpoint(
        address=node, what="node", command="im", envvar=NODE_ENV, role=Role.NODE, output=output
    )


@im.command()
@output_option
@click.pass_obj
def info(node: Endpoint) -> None:
    """Show the node: its addresses, port range and disks."""
    node.show(node.run(lambda rpc: NodeClient(rpc).info()), _render_node)


@im.command("ls")
@output_option
@click.pass_obj
def ls(node: Endpoint) -> None:
    """List the node's instances with their state."""
    node.show(node.run(lambda rpc: NodeClient(rpc).instances()), _render_instances)


@im.command()
@click.argument("name", callback=check_instance)
@output_option
@click.pass_obj
def get(node: Endpoint, name: str) -> None:
    """Show instance NAME."""
    node.show(node.run(lambda rpc: NodeClient(rpc).get(name)), _render_instance)


@im.command()
@click.argument("name", callback=check_instance)
@output_option
@click.pass_obj
def rm(node: Endpoint, name: str) -> None:
    """Stop instance NAME cleanly and forget it (its data stays on disk)."""
    node.show(node.run(lambda rpc: NodeClient(rpc).delete(name)), _render_instance)


@im.command()
@click.argument("name", callback=check_instance)
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="How many of the last lines to show first (0: every line the node kept).",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until interrupted.")
@click.pass_obj
def log(node: Endpoint, name: str, tail: int, follow: bool) -> None:
    """Print the last log lines of instance NAME (as text, whatever -o says)."""

    async def run(rpc: RpcClient) -> None:
        client = NodeClient(rpc)
        after = 0
        found = await client.log(name, limit=tail)
        while True:
            for seq, text in found.lines:
                click.echo(text)
                after = seq
            sys.stdout.flush()
            if not follow:
                return
            found = await client.log(name, after=after, wait=30)

    node.run(run)


@im.group()
def create() -> None:
    """Start a replica or an engine instance (what the manager does; for operators and tests)."""


@create.command("replica")
@click.argument("name", callback=check_instance)
@click.option(
    "--volume",
    required=True,
    metavar="VOLUME",
    callback=check_volume,
    help="The volume the replica belongs to.",
)
@size_option
@click.option(
    "--disk",
    default="",
    metavar="UUID|PATH",
    help="The disk to put it on, by UUID or path [default: the node's data dir].",
)
@output_option
@click.pass_obj
def create_replica(node: Endpoint, name: str, volume: str, size: int, disk: str) -> None:
    """Start replica NAME of VOLUME in <disk>/replicas/NAME (reopened if it exists)."""
    instance = node.run(
        lambda rpc: NodeClient(rpc).create(
            name, InstanceKind.REPLICA, volume=volume, size=size, disk=disk
        )
    )
    node.show(instance, _render_instance)


@create.command("engine")
@click.argument("name", callback=check_instance)
@click.option(
    "--volume",
    required=True,
    metavar="VOLUME",
    callback=check_volume,
    help="The volume to serve (also its NBD export name).",
)
@size_option
@replicas_option
@click.option(
    "--salvage",
    is_flag=True,
    help="If every replica would start ERR, serve from the one with the newest data anyway.",
)
@output_option
@click.pass_obj
def create_engine(
    node: Endpoint, name: str, volume: str, size: int, replicas: tuple[str, ...], salvage: bool
) -> None:
    """Start engine NAME for VOLUME, served on the node's NBD port as export VOLUME."""
    instance = node.run(
        lambda rpc: NodeClient(rpc).create(
            name,
            InstanceKind.ENGINE,
            volume=volume,
            size=size,
            replicas=list(replicas),
            salvage=salvage,
        )
    )
    node.show(instance, _render_instance)
