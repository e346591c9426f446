"""``lhtrio engine``, ``lhtrio replica``, ``lhtrio attachment`` and ``lhtrio event``: the parts
of the volumes and what happened to them, read through the admin API (``docs/cli.md``).
``lhtrio engine`` and ``lhtrio replica`` still run an engine or a replica (their default verb
``run``, as ``lhtrio node``).

Each has ``ls`` (``--volume V`` keeps one volume's) and ``get NAME``; every one takes ``-w``
(the watch stream of the collection: :mod:`lhtrio.admin.watch`) and ``-o table|json|yaml``.
``event ls`` takes ``--volume V`` or ``KIND NAME`` (``volume db-1``, ``Node n1``) for one
object's events.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

import click

from lhtrio.admin.client import admin_client
from lhtrio.admin.documents import Columns, Document, dig
from lhtrio.admin.groups import ApiGroup, DefaultGroup, json_option, list_params, selector_option
from lhtrio.admin.tables import (
    ATTACHMENTS,
    ENGINES,
    EVENTS,
    REPLICAS,
    event_order,
    render_attachment,
    render_engine,
    render_replica,
)
from lhtrio.admin.watch import watch_option, watch_until_interrupted
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.output import checked, show

__all__ = ["attachment", "engine_group", "event", "replica_group"]

#: The kinds events are about, by the spelling an operator may type (any case).
KINDS: Final = {
    kind.lower(): kind
    for kind in ("Volume", "Engine", "Replica", "Node", "Setting", "VolumeAttachment")
}


def _volume_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--volume",
        metavar="VOLUME",
        callback=checked(validate_volume_name),
        help="Only those of volume VOLUME.",
    )(func)


def _node_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--node",
        metavar="NODE",
        callback=checked(functools.partial(validate_instance_name, what="node")),
        help="Only those on node NODE.",
    )(func)


def _member_group(
    name: str,
    path: str,
    columns: Columns,
    render: Callable[[Document], str],
    *,
    run: click.Command | None = None,
    placed: bool = True,
) -> click.Group:
    """The ``ls`` and ``get`` verbs of ``name`` (``engine``) at ``path`` (``/v1/engines``);
    with ``run``, that is the default verb (``lhtrio engine VOLUME ...`` runs an engine);
    ``placed``: ``ls`` takes ``--volume`` and ``--node``."""
    check = checked(functools.partial(validate_instance_name, what=name))
    reads = (
        f"List the {name}s or get one through the admin API (-w follows the changes): "
        f"lhtrio [--api URL] {name} ls [-w] | get NAME [-w]."
    )
    if run is None:
        group: click.Group = ApiGroup(name, help=reads)
    else:
        group = DefaultGroup(
            name,
            help=f"Run a{'n' if name[0] in 'aeiou' else ''} {name} (lhtrio {name} [run] ...: "
            f"see lhtrio {name} run --help), or {reads[0].lower()}{reads[1:]}",
        )
        group.add_command(run, "run")

    def ls(watch: bool, output: str, **filters: str | None) -> None:
        params = list_params(filters)
        api = admin_client()
        if watch:
            watch_until_interrupted(api, path, params, output=output, columns=columns)
        else:
            show(output, api.get(path, **params), columns.render)

    options = [selector_option, watch_option, json_option]
    if placed:
        options = [_volume_option, _node_option, *options]
    for option in reversed(options):
        ls = option(ls)
    ls_help = f"List the {name}s ({', '.join(h.lower() for h in columns.header[1:])})."
    group.command("ls", help=ls_help)(ls)

    @group.command("get")
    @click.argument("name", callback=check)
    @watch_option
    @json_option
    def get(name: str, watch: bool, output: str) -> None:
        api = admin_client()
        document = api.get(f"{path}/{name}")  # 404 (exit 3) for no such object
        if watch:
            watch_until_interrupted(api, path, {}, output=output, columns=columns, name=name)
        else:
            show(output, document, render)

    get.help = f"Show {name} NAME; with -w, its row and then a row for each of its changes."
    return group


def engine_group(run: click.Command) -> click.Group:
    """``lhtrio engine``: ``run`` (the default verb: serving a volume) and the API's ``ls`` and
    ``get``."""
    return _member_group("engine", "/v1/engines", ENGINES, render_engine, run=run)


def replica_group(run: click.Command) -> click.Group:
    """``lhtrio replica``: ``run`` (the default verb: serving a replica directory) and the
    API's ``ls``, ``get`` and ``rm``."""
    group = _member_group("replica", "/v1/replicas", REPLICAS, render_replica, run=run)
    group.add_command(replica_rm)
    group.help = (
        "Run a replica (lhtrio replica [run] DIRECTORY ...: see lhtrio replica run --help), or "
        "list the replicas, get one or remove one (to have it rebuilt) through the admin API: "
        "lhtrio [--api URL] replica ls [-w] | get NAME [-w] | rm NAME."
    )
    return group


@click.command("rm")
@click.argument("name", callback=checked(functools.partial(validate_instance_name, what="replica")))
@json_option
def replica_rm(name: str, output: str) -> None:
    """Remove replica NAME and its data, to have it rebuilt: its volume gets a new one.

    Never the last healthy replica of its volume (exit 4). Follow the new one with lhtrio volume
    rebuild-status VOLUME --wait.
    """
    api = admin_client()
    volume = dig(api.get(f"/v1/replicas/{name}"), "spec", "volumeName")
    answer = api.delete(f"/v1/replicas/{name}")
    follow = f"; follow its replacement with lhtrio volume rebuild-status {volume} --wait"
    show(output, answer, lambda _: f"replica {name}: removal requested{follow if volume else ''}")


attachment: Final = _member_group(
    "attachment", "/v1/volumeattachments", ATTACHMENTS, render_attachment, placed=False
)
attachment.help = (
    "List the volumes' attachment tickets or get one volume's: who wants it attached where, "
    "and whether it is (read-only; attach and detach are lhtrio volume attach|detach).\n\n"
    "lhtrio [--api URL] attachment ls [-w] | get VOLUME [-w]"
)


def _check_kind(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    kind = KINDS.get(value.lower())
    if kind is None:
        raise click.BadParameter(
            f"{value!r} is not a kind events are about: one of {', '.join(KINDS.values())}",
            ctx=ctx,
            param=param,
        )
    return kind


@click.group("event", cls=ApiGroup)
def event() -> None:
    """List what happened in the cluster (attached, degraded, rebuilt, failed...).

    lhtrio [--api URL] event ls [--volume VOLUME | KIND NAME] [-w]
    """


@event.command("ls")
@click.argument("kind", required=False, callback=_check_kind)
@click.argument(
    "name",
    required=False,
    callback=checked(functools.partial(validate_instance_name, what="object")),
)
@_volume_option
@watch_option
@json_option
def event_ls(
    kind: str | None, name: str | None, volume: str | None, watch: bool, output: str
) -> None:
    """List the events, oldest first: last seen, type, reason, object, count, message.

    KIND NAME (volume db-1, node n1) or --volume VOLUME keep one object's. With -w, then each
    new event (or a repeat counted on one) as it happens.
    """
    if volume is not None:
        if kind is not None:
            raise click.UsageError("give either --volume VOLUME or KIND NAME, not both")
        kind, name = "Volume", volume
    if kind is not None and name is None:
        raise click.UsageError(
            f"which {kind.lower()}? give KIND NAME (lhtrio event ls {kind} NAME)"
        )
    params = {} if kind is None or name is None else {"kind": kind, "name": name}
    api = admin_client()
    if watch:
        watch_until_interrupted(
            api, "/v1/events", params, output=output, columns=EVENTS, order=event_order
        )
    else:
        show(output, api.get("/v1/events", **params), EVENTS.render)
