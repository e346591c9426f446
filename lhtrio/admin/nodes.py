"""``lhtrio node ls`` and ``lhtrio node get NAME``: the cluster's nodes through the admin API,
beside ``lhtrio node [run] OPTIONS``, which runs a node (:func:`node_group` puts them together).
"""

from __future__ import annotations

import functools
from typing import Any

import click

from lhtrio.admin.client import ApiGroup, admin_client, json_option
from lhtrio.admin.documents import render_node, render_nodes
from lhtrio.models.names import validate_instance_name
from lhtrio.output import checked, show

__all__ = ["NodeGroup", "node_group"]

check_node = checked(functools.partial(validate_instance_name, what="node"))


class NodeGroup(ApiGroup):
    """A group whose first argument, when it is not one of its verbs (nor ``--help``), is the
    start of the default verb's: ``lhtrio node --name n1 ...`` is ``lhtrio node run --name n1
    ...``, as it was before the group had other verbs."""

    default = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@click.command("ls")
@json_option
def ls(output: str) -> None:
    """List the nodes: ready, schedulable, their disks' space."""
    show(output, admin_client().get("/v1/nodes"), render_nodes)


@click.command("get")
@click.argument("name", callback=check_node)
@json_option
def get(name: str, output: str) -> None:
    """Show node NAME: conditions, scheduling, zone, tags and each disk's space."""
    show(output, admin_client().get(f"/v1/nodes/{name}"), render_node)


def node_group(run: click.Command) -> click.Group:
    """``lhtrio node``: ``run`` (the default verb: running a node) and the API's ``ls`` and
    ``get``."""
    group = NodeGroup(
        "node",
        help="Run a node (lhtrio node [run] OPTIONS), list the nodes or get one (through the "
        "admin API).\n\n"
        "lhtrio node --name NAME --data-dir DIR ... is lhtrio node run ...: see lhtrio node run "
        "--help. lhtrio [--api URL] node ls|get NAME ask the admin API.",
    )
    commands: dict[str, Any] = {"run": run, "ls": ls, "get": get}
    for name, command in commands.items():
        group.add_command(command, name)
    return group
