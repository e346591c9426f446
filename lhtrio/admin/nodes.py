"""``lhtrio node ls`` and ``lhtrio node get NAME``: the cluster's nodes through the admin API,
beside ``lhtrio node [run] OPTIONS``, which runs a node (:func:`node_group` puts them together).
"""

from __future__ import annotations

import functools
from typing import Any

import click

from lhtrio.admin import node_actions
from lhtrio.admin.client import admin_client
from lhtrio.admin.documents import NODES, render_node, render_nodes
from lhtrio.admin.groups import DefaultGroup, json_option, list_params, selector_option
from lhtrio.admin.watch import watch_option, watch_until_interrupted
from lhtrio.models.names import validate_instance_name
from lhtrio.output import checked, show

__all__ = ["node_group"]

check_node = checked(functools.partial(validate_instance_name, what="node"))


@click.command("ls")
@selector_option
@watch_option
@json_option
def ls(selector: str | None, watch: bool, output: str) -> None:
    """List the nodes: ready, schedulable, their disks' space (-w: then each change)."""
    params = list_params({"selector": selector})
    api = admin_client()
    if watch:
        watch_until_interrupted(api, "/v1/nodes", params, output=output, columns=NODES)
    else:
        show(output, api.get("/v1/nodes", **params), render_nodes)


@click.command("get")
@click.argument("name", callback=check_node)
@watch_option
@json_option
def get(name: str, watch: bool, output: str) -> None:
    """Show node NAME: conditions, scheduling, zone, tags and each disk's space.

    With -w: the node's row, then a row for each of its changes.
    """
    api = admin_client()
    node = api.get(f"/v1/nodes/{name}")
    if watch:
        watch_until_interrupted(api, "/v1/nodes", {}, output=output, columns=NODES, name=name)
    else:
        show(output, node, render_node)


def node_group(run: click.Command) -> click.Group:
    """``lhtrio node``: ``run`` (the default verb: running a node) and the API's ``ls`` and
    ``get``."""
    group = DefaultGroup(
        "node",
        help="Run a node (lhtrio node [run] OPTIONS); list the nodes, get one, update one or "
        "its disk (through the admin API).\n\n"
        "lhtrio node --name NAME --data-dir DIR ... is lhtrio node run ...: see lhtrio node run "
        "--help. lhtrio [--api URL] node ls | get NAME | update NAME ... | disk add|rm|update "
        "NODE DISK ... go to the admin API.",
    )
    commands: dict[str, Any] = {
        "run": run,
        "ls": ls,
        "get": get,
        "update": node_actions.update,
        "disk": node_actions.disk,
    }
    for name, command in commands.items():
        group.add_command(command, name)
    return group
