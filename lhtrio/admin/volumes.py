"""``lhtrio volume``: volumes through the admin API (create, list, get, remove, attach,
detach); the operations on one (expand, replica count, salvage, rebuilds, events) are in
:mod:`lhtrio.admin.volume_actions`.

Each verb is one call of ``docs/api.md`` (``get`` composes three, :func:`describe`); names and
sizes are checked first (usage errors, exit 2, before any request). ``attach`` (and ``detach``
or ``rm`` with ``--wait``) then follows the volume until it is where it was asked to be
(:mod:`lhtrio.admin.waits`), telling each of its states on stderr; ``ls -w`` and ``get -w``
follow the watch stream (:mod:`lhtrio.admin.watch`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from lhtrio.admin.client import admin_client
from lhtrio.admin.documents import VOLUMES, dig, render_description, render_volumes, size_text
from lhtrio.admin.groups import ApiGroup, json_option, list_params, selector_option
from lhtrio.admin.progress import open_display
from lhtrio.admin.waits import (
    described,
    interruptible,
    ticket_judged,
    volume_path,
    wait_for,
    wait_gone,
)
from lhtrio.admin.watch import watch_option, watch_until_interrupted
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.output import checked, show, size_option

__all__ = ["check_node", "check_replica", "check_volume", "timeout_option", "volume"]

check_volume = checked(validate_volume_name)
check_node = checked(functools.partial(validate_instance_name, what="node"))
check_replica = checked(functools.partial(validate_instance_name, what="replica"))


def timeout_option(default: float, what: str) -> Callable[[Callable[..., Any]], Any]:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=default,
        show_default=True,
        metavar="SECONDS",
        help=f"How long to wait {what} before giving up (exit code 1).",
    )


@click.group(cls=ApiGroup)
def volume() -> None:
    """Create, list, get, remove, attach, detach, expand, set-replicas, set-locality, label
    and salvage volumes; their rebuild-status and events.

    Through the admin API of a node: lhtrio [--api URL] [--token-file FILE] volume VERB
    (LHTRIO_API, LHTRIO_TOKEN, LHTRIO_TOKEN_FILE). Exit codes: 2 bad arguments, 3 not found,
    4 conflict, 5 API unreachable, 6 unauthorized, 130 interrupted, 1 anything else.
    """


@volume.command("create")
@click.argument("name", callback=check_volume)
@size_option
@click.option(
    "--replicas",
    type=click.IntRange(1, 20),
    metavar="N",
    help="How many replicas (1 to 20) [default: the default-replica-count setting].",
)
@json_option
def create(name: str, size: int, replicas: int | None, output: str) -> None:
    """Create volume NAME of --size SIZE (10Gi, 1T, bytes; a multiple of 4096)."""
    body: dict[str, object] = {"name": name, "size": str(size)}
    if replicas is not None:
        body["numberOfReplicas"] = replicas
    created = admin_client().post("/v1/volumes", body)
    show(
        output,
        created,
        lambda v: (
            f"volume {name} created: {size_text(dig(v, 'spec', 'size'))}, "
            f"{dig(v, 'spec', 'numberOfReplicas')} replicas"
        ),
    )


STATES = ("creating", "detached", "attaching", "attached", "detaching", "deleting")
ROBUSTNESS = ("healthy", "degraded", "faulted", "unknown")


@volume.command("ls")
@click.option("--state", type=click.Choice(STATES), help="Only the volumes in this state.")
@click.option("--robustness", type=click.Choice(ROBUSTNESS), help="Only those this robust.")
@selector_option
@watch_option
@json_option
def ls(
    state: str | None, robustness: str | None, selector: str | None, watch: bool, output: str
) -> None:
    """List the volumes: size, replicas, state, robustness and node.

    With -w, then a row for each change (-o json: one {"type", "object"} per line).
    """
    params = list_params({"state": state, "robustness": robustness, "selector": selector})
    api = admin_client()
    if watch:
        watch_until_interrupted(api, "/v1/volumes", params, output=output, columns=VOLUMES)
    else:
        show(output, api.get("/v1/volumes", **params), render_volumes)


@volume.command("get")
@click.argument("name", callback=check_volume)
@watch_option
@json_option
def get(name: str, watch: bool, output: str) -> None:
    """Show volume NAME with its replicas (node, mode, rebuild) and its NBD endpoint.

    With -o json: {"volume": DOCUMENT, "engine", "endpoint", "replicas": [{"name", "node",
    "mode", "state", "failed", "rebuild"}]} (docs/cli.md). With -w: the volume's row, then a
    row for each of its changes (-o json: one {"type", "object"} per line).
    """
    api = admin_client()
    if watch:
        api.get(volume_path(name))  # 404 (exit 3) for no such volume, as without -w
        watch_until_interrupted(api, "/v1/volumes", {}, output=output, columns=VOLUMES, name=name)
    else:
        show(output, described(api, name), render_description)


@volume.command("rm")
@click.argument("name", callback=check_volume)
@click.option("--wait", is_flag=True, help="Wait until the volume and its data are gone.")
@timeout_option(120, "with --wait")
@json_option
def rm(name: str, wait: bool, timeout: float, output: str) -> None:
    """Remove volume NAME: its engine, its replicas and their data."""
    api = admin_client()
    answer = api.delete(volume_path(name))
    if wait:
        with (
            interruptible(f"the deletion of volume {name}", f"lhtrio volume get {name} -w"),
            open_display() as display,
        ):
            wait_gone(api, name, timeout, display)
    gone = wait or not answer
    show(
        output,
        answer,
        lambda _: (
            f"volume {name} deleted"
            if gone
            else f"volume {name}: deletion requested (--wait waits until it is gone)"
        ),
    )


@volume.command("attach")
@click.argument("name", callback=check_volume)
@click.option("--node", required=True, metavar="NODE", callback=check_node, help="The node.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until it is attached there and print its NBD URI (else print the volume).",
)
@timeout_option(120, "until the volume is attached")
@json_option
def attach(name: str, node: str, wait: bool, timeout: float, output: str) -> None:
    """Attach volume NAME to --node NODE; print its NBD URI once it is attached there.

    The volume's states go to stderr while it attaches (a spinner on a terminal). With
    -o json, the volume as `volume get -o json` shows it. --no-wait returns once the API took
    the request (the volume as stored).
    """
    api = admin_client()
    answer = api.post(volume_path(name), {"hostId": node}, action="attach")
    if not wait:
        show(output, answer, lambda _: f"volume {name}: attach to node {node} requested")
        return
    with (
        interruptible(f"the attachment of volume {name}", f"lhtrio volume get {name} -w"),
        open_display() as display,
    ):
        attached = wait_for(
            api,
            name,
            f"attached on node {node}",
            lambda v: (
                dig(v, "status", "state") == "attached"
                and dig(v, "status", "currentNodeID") == node
                and ticket_judged(api, name)
            ),
            timeout=timeout,
            display=display,
        )
    view = described(api, name, attached)
    if output != "table" or view["endpoint"]:
        show(output, view, lambda v: str(v["endpoint"]))
    else:
        click.echo(f"volume {name} is attached on node {node} without a frontend", err=True)


@volume.command("detach")
@click.argument("name", callback=check_volume)
@click.option("--node", metavar="NODE", callback=check_node, help="Only if it is attached to NODE.")
@click.option("--wait", is_flag=True, help="Wait until the volume is detached.")
@timeout_option(120, "with --wait")
@json_option
def detach(name: str, node: str | None, wait: bool, timeout: float, output: str) -> None:
    """Detach volume NAME (from --node NODE only, if given)."""
    api = admin_client()
    answer = api.post(volume_path(name), {} if node is None else {"hostId": node}, action="detach")
    if wait:
        with (
            interruptible(f"the detachment of volume {name}", f"lhtrio volume get {name} -w"),
            open_display() as display,
        ):
            answer = wait_for(
                api,
                name,
                "detached",
                lambda v: dig(v, "status", "state") == "detached",
                timeout=timeout,
                display=display,
            )
    show(
        output,
        answer,
        lambda _: f"volume {name} detached" if wait else f"volume {name}: detach requested",
    )
