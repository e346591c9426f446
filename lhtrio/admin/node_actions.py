"""``lhtrio node update`` and ``lhtrio node disk add|rm|update``: an operator's changes of a node
and its disks (the API's ``nodeUpdate`` and ``diskUpdate`` actions, Longhorn's).

* ``node update NAME`` sends only the fields given (``--scheduling/--no-scheduling``,
  ``--eviction/--no-eviction``, ``--tag`` repeated or ``--no-tags``, ``--zone``, ``--region``):
  the others stay. Eviction needs scheduling off (Longhorn's rule): ``--no-scheduling
  --eviction`` in one call.
* ``diskUpdate`` takes the node's **whole** set of disks (a name left out is a disk to remove), so
  the disk verbs read the node first and send its set back changed — on condition of the version
  they read (``If-Match``): a change that raced in between is a conflict (exit 4, read again),
  never written over. A known disk is sent as ``{}`` (it keeps every field); ``disk update``
  sends the fields given for its disk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from lhtrio.admin.client import ApiClient, ApiError, Exit, admin_client
from lhtrio.admin.documents import Document, dig, render_node
from lhtrio.admin.groups import json_option
from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import validate_instance_name
from lhtrio.output import checked, show
from lhtrio.units import parse_size

__all__ = ["disk", "update"]

check_node = checked(functools.partial(validate_instance_name, what="node"))
check_disk = checked(functools.partial(validate_instance_name, what="disk"))
check_tag = checked(functools.partial(validate_instance_name, what="tag"))


def _check_reserved(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except InvalidArgumentError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _tags_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--no-tags", is_flag=True, help="Remove every tag (instead of --tag).")(
        func
    )
    return click.option(
        "--tag",
        "tags",
        multiple=True,
        metavar="TAG",
        callback=check_tag,
        help="A tag; repeat for more: the tags given replace the old ones.",
    )(func)


def _tags(tags: tuple[str, ...], no_tags: bool) -> list[str] | None:
    if tags and no_tags:
        raise click.UsageError("give --tag TAG ... or --no-tags, not both")
    return [] if no_tags else (list(tags) if tags else None)


def _flag(name: str, what: str) -> Callable[[Callable[..., Any]], Any]:
    return click.option(
        f"--{name}/--no-{name}", default=None, help=f"{what} (left as it is when not given)."
    )


def _node_path(name: str) -> str:
    return f"/v1/nodes/{name}"


def _version(document: Document) -> dict[str, str]:
    version = dig(document, "metadata", "resourceVersion")
    return {"If-Match": f'"{version}"'} if version else {}


@click.command("update")
@click.argument("name", callback=check_node)
@_flag("scheduling", "Let new replicas be placed on the node, or not")
@_flag("eviction", "Ask for the node to be emptied (needs --no-scheduling)")
@_tags_options
@click.option("--zone", metavar="ZONE", help="The node's zone (empty: none).")
@click.option("--region", metavar="REGION", help="The node's region (empty: none).")
@json_option
def update(
    name: str,
    scheduling: bool | None,
    eviction: bool | None,
    tags: tuple[str, ...],
    no_tags: bool,
    zone: str | None,
    region: str | None,
    output: str,
) -> None:
    """Change node NAME's scheduling, eviction, tags, zone or region (only those given)."""
    given = {
        "allowScheduling": scheduling,
        "evictionRequested": eviction,
        "tags": _tags(tags, no_tags),
        "zone": zone,
        "region": region,
    }
    body = {key: value for key, value in given.items() if value is not None}
    if not body:
        raise click.UsageError("nothing to change: give --scheduling, --eviction, --tag, ...")
    node = admin_client().post(_node_path(name), body, action="nodeUpdate")
    show(output, node, render_node)


@click.group("disk")
def disk() -> None:
    """Add, remove or change a node's disks (lhtrio node disk add|rm|update NODE DISK)."""


def _disks_of(api: ApiClient, node: str) -> tuple[Document, dict[str, dict[str, object]]]:
    """The node as read now, and its set of disks as ``diskUpdate`` keeps them (``{}`` each)."""
    document: Document = api.get(_node_path(node))
    disks = dig(document, "spec", "disks", default={})
    return document, {name: {} for name in (disks if isinstance(disks, dict) else {})}


def _no_disk(node: str, name: str) -> ApiError:
    return ApiError(
        f"node {node} has no disk {name}: its disks are in lhtrio node get {node}", Exit.NOT_FOUND
    )


def _send_disks(
    api: ApiClient, node: str, read: Document, disks: dict[str, dict[str, object]]
) -> Any:
    return api.post(_node_path(node), {"disks": disks}, action="diskUpdate", headers=_version(read))


@disk.command("add")
@click.argument("node", callback=check_node)
@click.argument("name", callback=check_disk)
@click.option("--path", required=True, metavar="DIR", help="The disk's directory (absolute).")
@click.option(
    "--reserved", metavar="SIZE", callback=_check_reserved, help="Space kept free (10Gi, bytes)."
)
@click.option("--no-scheduling", is_flag=True, help="Add it without new replicas placed on it.")
@click.option(
    "--tag", "tags", multiple=True, metavar="TAG", callback=check_tag,
    help="A tag; repeat for more.",
)  # fmt: skip
@json_option
def disk_add(
    node: str,
    name: str,
    path: str,
    reserved: int | None,
    no_scheduling: bool,
    tags: tuple[str, ...],
    output: str,
) -> None:
    """Add disk NAME (its directory --path DIR) to NODE: the node opens it and places replicas on
    it."""
    if not path.startswith("/"):
        raise click.BadParameter(f"{path!r} is not an absolute path", param_hint="--path")
    api = admin_client()
    read, disks = _disks_of(api, node)
    if name in disks:
        raise ApiError(
            f"node {node} has a disk {name} already: change it with lhtrio node disk update "
            f"{node} {name}, or give the new one another name",
            Exit.CONFLICT,
        )
    new: dict[str, object] = {"path": path, "allowScheduling": not no_scheduling}
    if reserved is not None:
        new["storageReserved"] = reserved
    if tags:
        new["tags"] = list(tags)
    disks[name] = new
    show(output, _send_disks(api, node, read, disks), render_node)


@disk.command("rm")
@click.argument("node", callback=check_node)
@click.argument("name", callback=check_disk)
@json_option
def disk_rm(node: str, name: str, output: str) -> None:
    """Remove disk NAME from NODE: only once it takes no new replicas (disk update
    --no-scheduling) and holds none. Its data stays in its directory."""
    api = admin_client()
    read, disks = _disks_of(api, node)
    if disks.pop(name, None) is None:
        raise _no_disk(node, name)
    show(output, _send_disks(api, node, read, disks), render_node)


@disk.command("update")
@click.argument("node", callback=check_node)
@click.argument("name", callback=check_disk)
@_flag("scheduling", "Let new replicas be placed on the disk, or not")
@_flag("eviction", "Ask for the disk to be emptied (needs --no-scheduling)")
@click.option(
    "--reserved", metavar="SIZE", callback=_check_reserved, help="Space kept free (10Gi, bytes)."
)
@_tags_options
@json_option
def disk_update(
    node: str,
    name: str,
    scheduling: bool | None,
    eviction: bool | None,
    reserved: int | None,
    tags: tuple[str, ...],
    no_tags: bool,
    output: str,
) -> None:
    """Change disk NAME of NODE: scheduling, eviction, reserved space, tags (those given)."""
    given = {
        "allowScheduling": scheduling,
        "evictionRequested": eviction,
        "storageReserved": reserved,
        "tags": _tags(tags, no_tags),
    }
    change: dict[str, object] = {key: value for key, value in given.items() if value is not None}
    if not change:
        raise click.UsageError("nothing to change: give --scheduling, --reserved, --tag, ...")
    api = admin_client()
    read, disks = _disks_of(api, node)
    if name not in disks:
        raise _no_disk(node, name)
    disks[name] = change
    show(output, _send_disks(api, node, read, disks), render_node)
