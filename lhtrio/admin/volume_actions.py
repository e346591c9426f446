"""The operations on one volume, under ``lhtrio volume``: expand, set-replicas, salvage,
rebuild-status, events, set-locality and label (the group and its first verbs are
:mod:`lhtrio.admin.volumes`).

``expand`` is one call that returns once every replica grew (the API may attach a detached
volume for it); a spinner shows it is under way. ``salvage --wait`` and ``rebuild-status
--wait`` follow the volume afterwards (:mod:`lhtrio.admin.waits`): bars for the rebuilds, with
rate and time left, on a terminal; plain lines without one. Ctrl-C leaves the operation running
and says how to follow it (exit 130).
"""

from __future__ import annotations

from typing import Any

import click

from lhtrio.admin.client import admin_client
from lhtrio.admin.documents import Document, dig, rebuild_text, size_text
from lhtrio.admin.groups import json_option
from lhtrio.admin.progress import open_display
from lhtrio.admin.tables import EVENTS, event_order
from lhtrio.admin.volumes import check_replica, check_volume, timeout_option, volume
from lhtrio.admin.waits import described, follow_rebuilds, interruptible, volume_path, wait_for
from lhtrio.admin.watch import watch_option, watch_until_interrupted
from lhtrio.output import check_labels, show, size_option, table

__all__ = ["render_rebuilds"]


def render_rebuilds(view: Document) -> str:
    """The volume's state and each replica's mode and rebuild (``rebuild-status``)."""
    volume = view["volume"]
    head = (
        f"volume {dig(volume, 'metadata', 'name')}: {dig(volume, 'status', 'state')}, "
        f"{dig(volume, 'status', 'robustness')}"
    )
    rows = [
        [r["name"], r["node"], r["mode"], rebuild_text(r["rebuild"]) or "-"]
        for r in view["replicas"]
    ]
    return "\n".join([head, "", table(["REPLICA", "NODE", "MODE", "REBUILD"], rows)])


@volume.command("expand")
@click.argument("name", callback=check_volume)
@size_option
@json_option
def expand(name: str, size: int, output: str) -> None:
    """Grow volume NAME and its replicas to --size SIZE (10Gi, 1T, bytes; never smaller).

    Returns once every replica grew (a detached volume is attached for it).
    """
    api = admin_client()
    with (
        interruptible(f"the expansion of volume {name}", f"lhtrio volume get {name} -w"),
        open_display() as display,
    ):
        display.status(f"volume {name}: expanding to {size_text(size)}")
        answer = api.post(volume_path(name), {"size": str(size)}, action="expand")
    show(output, answer, lambda v: f"volume {name} expanded to {size_text(dig(v, 'spec', 'size'))}")


@volume.command("set-replicas")
@click.argument("name", callback=check_volume)
@click.argument("count", type=click.IntRange(1, 20))
@json_option
def set_replicas(name: str, count: int, output: str) -> None:
    """Keep COUNT replicas (1 to 20) of volume NAME: more are placed, extra ones removed.

    New replicas are rebuilt while the volume is attached: lhtrio volume rebuild-status NAME
    --wait follows them.
    """
    answer = admin_client().post(
        volume_path(name), {"replicaCount": count}, action="updateReplicaCount"
    )
    show(output, answer, lambda _: f"volume {name}: {count} replicas wanted")


@volume.command("salvage")
@click.argument("name", callback=check_volume)
@click.argument("replicas", nargs=-1, required=True, callback=check_replica)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the volume serves again (when it is attached), showing its rebuilds.",
)
@timeout_option(0, "with --wait (0: no limit)")
@json_option
def salvage(name: str, replicas: tuple[str, ...], wait: bool, timeout: float, output: str) -> None:
    """Serve faulted volume NAME again from its failed REPLICA... (names: `volume get`).

    The engine starts by choosing the best of them. With --wait, follows the volume until it
    is healthy (a bar for each replica rebuilt meanwhile); a detached volume serves again once
    attached.
    """
    api = admin_client()
    answer = api.post(volume_path(name), {"names": list(replicas)}, action="salvage")
    if wait and dig(answer, "status", "state") in ("attached", "attaching"):
        with (
            interruptible(
                f"the salvage of volume {name}", f"lhtrio volume rebuild-status {name} --wait"
            ),
            open_display() as display,
        ):
            wait_for(
                api,
                name,
                "serving again",
                lambda v: dig(v, "status", "robustness") in ("healthy", "degraded"),
                timeout=timeout or float("inf"),
                display=display,
            )
            answer = follow_rebuilds(api, name, timeout, display)["volume"]
    elif wait:
        click.echo(
            f"volume {name} is {dig(answer, 'status', 'state') or 'not attached'}: it serves "
            f"again from the salvaged replicas once attached (lhtrio volume attach {name} "
            "--node NODE)",
            err=True,
        )
    show(
        output,
        answer,
        lambda _: f"volume {name}: salvage requested from {', '.join(replicas)}",
    )


@volume.command("rebuild-status")
@click.argument("name", callback=check_volume)
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the rebuilds until the volume is healthy: a bar for each, with rate and time "
    "left.",
)
@timeout_option(0, "with --wait (0: no limit)")
@json_option
def rebuild_status(name: str, wait: bool, timeout: float, output: str) -> None:
    """Show each replica of volume NAME with its mode and rebuild (progress, bytes).

    With --wait, follows the rebuilds until the volume is healthy (exit 1 if it cannot get
    there: detached, faulted, or after --timeout). With -o json: the document of `volume get -o
    json`.
    """
    api = admin_client()
    if wait:
        with (
            interruptible(
                f"the rebuild of volume {name}", f"lhtrio volume rebuild-status {name} --wait"
            ),
            open_display() as display,
        ):
            view = follow_rebuilds(api, name, timeout, display)
    else:
        view = described(api, name)
    show(output, view, render_rebuilds)


@volume.command("events")
@click.argument("name", callback=check_volume)
@watch_option
@json_option
def events(name: str, watch: bool, output: str) -> None:
    """List what happened to volume NAME (attached, degraded, rebuilt...), oldest first.

    With -w, then each new event (or a repeat counted on one) as it happens.
    """
    api = admin_client()
    listed: Any = api.get(f"{volume_path(name)}/events")  # 404 (exit 3) for no such volume
    if watch:
        params = {"kind": "Volume", "name": name}
        watch_until_interrupted(
            api, "/v1/events", params, output=output, columns=EVENTS, order=event_order
        )
    else:
        show(output, listed, EVENTS.render)


LOCALITIES = ("disabled", "best-effort", "strict-local")


@volume.command("set-locality")
@click.argument("name", callback=check_volume)
@click.argument("locality", type=click.Choice(LOCALITIES))
@json_option
def set_locality(name: str, locality: str, output: str) -> None:
    """Set volume NAME's data locality: disabled, best-effort, strict-local.

    strict-local keeps the one replica on the volume's node: it needs 1 replica (set-replicas
    NAME 1 first; exit 4 otherwise).
    """
    answer = admin_client().post(
        volume_path(name), {"dataLocality": locality}, action="updateDataLocality"
    )
    show(output, answer, lambda _: f"volume {name}: data locality {locality}")


def _check_label_changes(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[dict[str, str], list[str]]:
    """``KEY=VALUE`` (set) and ``KEY-`` (remove), kubectl's spelling; checked as labels."""
    removed = [text[:-1] for text in value if text.endswith("-") and "=" not in text]
    given = tuple(text for text in value if not (text.endswith("-") and "=" not in text))
    labels = check_labels(ctx, param, given)
    check_labels(ctx, param, tuple(f"{key}=x" for key in removed))  # the keys' rules
    both = sorted(set(labels) & set(removed))
    if both:
        raise click.BadParameter(f"label {both[0]!r} is both set and removed", ctx=ctx, param=param)
    return labels, removed


@volume.command("label")
@click.argument("name", callback=check_volume)
@click.argument("changes", nargs=-1, required=True, callback=_check_label_changes)
@json_option
def label(name: str, changes: tuple[dict[str, str], list[str]], output: str) -> None:
    """Set labels KEY=VALUE or remove them KEY- on volume NAME (the others stay).

    The labels are read, changed and sent back on condition of the version read: a change
    made meanwhile is a conflict (exit 4: run it again), never overwritten.
    """
    labels, removed = changes
    api = admin_client()
    read = api.get(volume_path(name))
    now = dig(read, "metadata", "labels", default={})
    wanted = {k: v for k, v in (now if isinstance(now, dict) else {}).items() if k not in removed}
    wanted.update(labels)
    version = dig(read, "metadata", "resourceVersion")
    answer = api.post(
        volume_path(name),
        {"labels": wanted},
        action="updateLabels",
        headers={"If-Match": f'"{version}"'} if version else None,
    )
    show(
        output,
        answer,
        lambda v: (
            f"volume {name}: labels "
            + (
                ",".join(f"{k}={v}" for k, v in sorted(dig(v, "metadata", "labels").items()))
                or "none"
            )
        ),
    )
