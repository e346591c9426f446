"""``lhtrio volume``: volumes through the admin API (create, list, get, remove, attach, detach,
expand, replica count, salvage).

Each verb is one call of ``docs/api.md`` (``get`` composes three, :func:`describe`); names and
sizes are checked first (usage errors, exit 2, before any request). ``attach`` (and ``detach``
or ``rm`` with ``--wait``) then follows the volume by polling it until it is where it was asked
to be, with a deadline, telling each change of its state on stderr.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Final

import click

from lhtrio.admin.client import ApiClient, ApiError, ApiGroup, Exit, admin_client, json_option
from lhtrio.admin.documents import (
    conditions,
    describe,
    dig,
    render_description,
    render_volumes,
    size_text,
)
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.output import checked, show, size_option

__all__ = ["check_volume", "volume", "volume_path"]

check_volume = checked(validate_volume_name)
check_node = checked(functools.partial(validate_instance_name, what="node"))
check_replica = checked(functools.partial(validate_instance_name, what="replica"))

#: Seconds between two looks at a volume being waited for: the first soon, then less often.
FIRST_POLL: Final = 0.05
MAX_POLL: Final = 1.0

Document = dict[str, Any]


def volume_path(name: str) -> str:
    return f"/v1/volumes/{name}"


def timeout_option(default: float, what: str) -> Callable[[Callable[..., Any]], Any]:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=default,
        show_default=True,
        metavar="SECONDS",
        help=f"How long to wait {what} before giving up (exit code 1).",
    )


def _where(volume: Document) -> str:
    """``attached on node n1, degraded``: the volume's state as the API reports it."""
    text = str(dig(volume, "status", "state") or "unknown")
    if node := dig(volume, "status", "currentNodeID"):
        text += f" on node {node}"
    if (robustness := dig(volume, "status", "robustness")) not in ("", "unknown"):
        text += f", {robustness}"
    if dig(volume, "metadata", "deletionTimestamp"):
        text += ", being deleted"
    return text


def wait_for(
    api: ApiClient, name: str, goal: str, done: Callable[[Document], bool], timeout: float
) -> Document:
    """The volume once ``done(volume)`` holds (``goal`` says what that is), polling it; each
    change of its state is a line on stderr. :class:`ApiError` (exit 1) after ``timeout``
    seconds, naming the state it is in and its conditions; 404 if it disappears."""
    deadline = time.monotonic() + timeout
    interval, shown = FIRST_POLL, ""
    while True:
        volume: Document = api.get(volume_path(name))
        where = _where(volume)
        if where != shown:
            click.echo(f"volume {name}: {where}", err=True)
            shown = where
        if done(volume):
            return volume
        left = deadline - time.monotonic()
        if left <= 0:
            raise ApiError(
                f"volume {name} is not {goal} after {timeout:g} s: it is {where}; "
                f"conditions: {conditions(volume)}",
                Exit.ERROR,
            )
        time.sleep(min(interval, left))
        interval = min(2 * interval, MAX_POLL)


def wait_gone(api: ApiClient, name: str, timeout: float) -> None:
    """Return once the volume is gone (404), else :class:`ApiError` after ``timeout``."""
    try:
        wait_for(api, name, "deleted", lambda _: False, timeout)
    except ApiError as exc:
        if exc.exit_code is not Exit.NOT_FOUND:
            raise
    click.echo(f"volume {name}: deleted", err=True)


def described(api: ApiClient, name: str, volume: Document | None = None) -> Document:
    """The volume with its replicas and engine (``lhtrio.admin.documents.describe``)."""
    if volume is None:
        volume = api.get(volume_path(name))
    replicas = api.get("/v1/replicas", volume=name)
    engines = api.get("/v1/engines", volume=name)
    return describe(volume, replicas, engines)


@click.group(cls=ApiGroup)
def volume() -> None:
    """Create, list, get, remove, attach, detach, expand, set-replicas and salvage volumes.

    Through the admin API of a node: lhtrio [--api URL] [--token-file FILE] volume VERB
    (LHTRIO_API, LHTRIO_TOKEN, LHTRIO_TOKEN_FILE). Exit codes: 2 bad arguments, 3 not found,
    4 conflict, 5 API unreachable, 6 unauthorized, 1 anything else.
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


@volume.command("ls")
@json_option
def ls(output: str) -> None:
    """List the volumes: size, replicas, state, robustness and node."""
    show(output, admin_client().get("/v1/volumes"), render_volumes)


@volume.command("get")
@click.argument("name", callback=check_volume)
@json_option
def get(name: str, output: str) -> None:
    """Show volume NAME with its replicas (node, mode) and its NBD endpoint.

    With -o json: {"volume": DOCUMENT, "engine", "endpoint", "replicas": [{"name", "node",
    "mode", "state", "failed"}]} (docs/cli.md).
    """
    show(output, described(admin_client(), name), render_description)


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
        wait_gone(api, name, timeout)
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
@timeout_option(120, "until the volume is attached")
@json_option
def attach(name: str, node: str, timeout: float, output: str) -> None:
    """Attach volume NAME to --node NODE; print its NBD URI once it is attached there.

    The volume's states go to stderr while it attaches. With -o json, the volume as
    `volume get -o json` shows it.
    """
    api = admin_client()
    api.post(volume_path(name), {"hostId": node}, action="attach")
    attached = wait_for(
        api,
        name,
        f"attached on node {node}",
        lambda v: (
            dig(v, "status", "state") == "attached" and dig(v, "status", "currentNodeID") == node
        ),
        timeout,
    )
    view = described(api, name, attached)
    if output == "json" or view["endpoint"]:
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
        answer = wait_for(
            api, name, "detached", lambda v: dig(v, "status", "state") == "detached", timeout
        )
    show(
        output,
        answer,
        lambda _: f"volume {name} detached" if wait else f"volume {name}: detach requested",
    )


@volume.command("expand")
@click.argument("name", callback=check_volume)
@size_option
@json_option
def expand(name: str, size: int, output: str) -> None:
    """Grow volume NAME and its replicas to --size SIZE (10Gi, 1T, bytes; never smaller)."""
    answer = admin_client().post(volume_path(name), {"size": str(size)}, action="expand")
    show(output, answer, lambda v: f"volume {name} expanded to {size_text(dig(v, 'spec', 'size'))}")


@volume.command("set-replicas")
@click.argument("name", callback=check_volume)
@click.argument("count", type=click.IntRange(1, 20))
@json_option
def set_replicas(name: str, count: int, output: str) -> None:
    """Keep COUNT replicas (1 to 20) of volume NAME: more are placed, extra ones removed."""
    answer = admin_client().post(
        volume_path(name), {"replicaCount": count}, action="updateReplicaCount"
    )
    show(output, answer, lambda _: f"volume {name}: {count} replicas wanted")


@volume.command("salvage")
@click.argument("name", callback=check_volume)
@click.argument("replicas", nargs=-1, required=True, callback=check_replica)
@json_option
def salvage(name: str, replicas: tuple[str, ...], output: str) -> None:
    """Serve faulted volume NAME again from its failed REPLICA... (names: `volume get`)."""
    answer = admin_client().post(volume_path(name), {"names": list(replicas)}, action="salvage")
    show(
        output,
        answer,
        lambda _: f"volume {name}: salvage requested from {', '.join(replicas)}",
    )
