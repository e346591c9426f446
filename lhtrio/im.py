"""``lhtrio im``: the operator's client for a node's instance manager.

Every verb is one control call of :mod:`lhtrio.node.service`. ``-o json`` prints JSON; the default
is a table. Errors go to stderr with exit code 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from lhtrio.net import open_rpc_client
from lhtrio.output import output_option, run_client, show, table
from lhtrio.units import human_size, parse_size
from lhtrio.wire import Role

__all__ = ["im"]


def _call(node: str, name: str, /, **args: Any) -> Any:
    async def run() -> Any:
        async with open_rpc_client(node, client="lhtrio-im", role=Role.NODE) as client:
            return await client.call_control(name, **args)

    return run_client(run)


def _render_instances(instances: list[dict[str, Any]]) -> str:
    return table(
        ["NAME", "TYPE", "VOLUME", "STATE", "ADDRESS", "FRONTEND/DIRECTORY", "ERROR"],
        [
            [
                i["name"],
                i["type"],
                i["volume"],
                i["state"],
                i["address"],
                i.get("frontend") or i.get("directory", ""),
                i["error"],
            ]
            for i in instances
        ],
    )


def _render_instance(instance: dict[str, Any]) -> str:
    return "\n".join(f"{key:<10} {value}" for key, value in instance.items())


def _render_node(info: dict[str, Any]) -> str:
    lines = [
        f"node       {info['name']}",
        f"control    {info['address']}",
        f"nbd        {info['nbd']}",
        f"ports      {info['port_range']} ({len(info['ports_in_use'])} in use)",
        f"instances  {info['instances']}",
        "",
        table(
            ["DISK", "PATH", "CAPACITY", "AVAILABLE", "SCHEDULED", "REPLICAS"],
            [
                [
                    d["uuid"],
                    d["path"],
                    human_size(d["capacity"]),
                    human_size(d["available"]),
                    human_size(d["scheduled"]),
                    len(d["replicas"]),
                ]
                for d in info["disks"]
            ],
        ),
    ]
    return "\n".join(lines)


@click.group()
@click.option("--node", required=True, help="The node's control endpoint, HOST:PORT.")
@click.pass_context
def im(ctx: click.Context, node: str) -> None:
    """Inspect and operate a node's engine and replica instances."""
    ctx.obj = functools.partial(_call, node)


@im.command()
@output_option
@click.pass_obj
def info(call: Callable[..., Any], output: str) -> None:
    """The node: addresses, port range, disks."""
    show(output, call("node_info"), _render_node)


@im.command("ls")
@output_option
@click.pass_obj
def ls(call: Callable[..., Any], output: str) -> None:
    """Instances with their state."""
    show(output, call("instance_list"), _render_instances)


@im.command()
@click.argument("name")
@output_option
@click.pass_obj
def get(call: Callable[..., Any], name: str, output: str) -> None:
    """One instance."""
    show(output, call("instance_get", name=name), _render_instance)


@im.command()
@click.argument("name")
@output_option
@click.pass_obj
def rm(call: Callable[..., Any], name: str, output: str) -> None:
    """Stop instance NAME cleanly and forget it (its data stays on disk)."""
    show(output, call("instance_delete", name=name), _render_instance)


@im.command()
@click.argument("name")
@click.option("--tail", default=100, show_default=True, help="Lines to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.pass_context
def log(ctx: click.Context, name: str, tail: int, follow: bool) -> None:
    """The last log lines of instance NAME."""
    node = ctx.parent.params["node"] if ctx.parent else ""

    async def run() -> None:
        async with open_rpc_client(node, client="lhtrio-im", role=Role.NODE) as client:
            after = 0
            found = await client.call_control("instance_log", name=name, limit=tail)
            while True:
                for seq, text in found["lines"]:
                    click.echo(text)
                    after = seq
                sys.stdout.flush()
                if not follow:
                    return
                found = await client.call_control("instance_log", name=name, after=after, wait=30)

    run_client(run)


@im.group()
def create() -> None:
    """Start an instance (what the manager does; for operators and tests)."""


@create.command("replica")
@click.argument("name")
@click.option("--volume", required=True)
@click.option("--size", required=True, help="Volume size (bytes or 1Gi, ...).")
@click.option("--disk", default="", help="Disk UUID or path [default: the data dir].")
@output_option
@click.pass_obj
def create_replica(
    call: Callable[..., Any], name: str, volume: str, size: str, disk: str, output: str
) -> None:
    """A replica of VOLUME in <disk>/replicas/NAME."""
    instance = call(
        "instance_create",
        name=name,
        type="replica",
        volume=volume,
        size=parse_size(size),
        disk=disk,
    )
    show(output, instance, _render_instance)


@create.command("engine")
@click.argument("name")
@click.option("--volume", required=True)
@click.option("--size", required=True, help="Volume size (bytes or 1Gi, ...).")
@click.option("--replica", "replicas", multiple=True, required=True, help="Replica address.")
@click.option("--salvage", is_flag=True)
@output_option
@click.pass_obj
def create_engine(
    call: Callable[..., Any],
    name: str,
    volume: str,
    size: str,
    replicas: tuple[str, ...],
    salvage: bool,
    output: str,
) -> None:
    """An engine for VOLUME, served on the node's NBD port as export VOLUME."""
    instance = call(
        "instance_create",
        name=name,
        type="engine",
        volume=volume,
        size=parse_size(size),
        replicas=list(replicas),
        salvage=salvage,
    )
    show(output, instance, _render_instance)
