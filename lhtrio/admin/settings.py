"""``lhtrio setting``: the cluster's settings through the admin API (Longhorn's names; a value
is text, checked by the API: ``lhtrio/models/cluster/setting.py``)."""

from __future__ import annotations

import functools

import click

from lhtrio.admin.client import admin_client
from lhtrio.admin.documents import SETTINGS, dig, render_settings
from lhtrio.admin.groups import ApiGroup, json_option
from lhtrio.admin.watch import watch_option, watch_until_interrupted
from lhtrio.models.names import validate_instance_name
from lhtrio.output import checked, show

__all__ = ["setting"]

check_setting = checked(functools.partial(validate_instance_name, what="setting"))


@click.group(cls=ApiGroup)
def setting() -> None:
    """List the settings, get one, or set one's value.

    Through the admin API: lhtrio [--api URL] [--token-file FILE] setting VERB (exit codes as
    for lhtrio volume).
    """


@setting.command("ls")
@watch_option
@json_option
def ls(watch: bool, output: str) -> None:
    """List every setting with its value (the default where none was set).

    With -w, then each change (only settings once set are objects the stream tells of).
    """
    api = admin_client()
    if watch:
        watch_until_interrupted(api, "/v1/settings", {}, output=output, columns=SETTINGS)
    else:
        show(output, api.get("/v1/settings"), render_settings)


@setting.command("get")
@click.argument("name", callback=check_setting)
@json_option
def get(name: str, output: str) -> None:
    """Print setting NAME's value."""
    show(output, admin_client().get(f"/v1/settings/{name}"), lambda s: dig(s, "spec", "value"))


@setting.command("set")
@click.argument("name", callback=check_setting)
@click.argument("value")
@json_option
def set_(name: str, value: str, output: str) -> None:
    """Set setting NAME to VALUE (text: 3, true, best-effort ...)."""
    written = admin_client().put(f"/v1/settings/{name}", {"value": value})
    show(output, written, lambda s: f"setting {name} = {dig(s, 'spec', 'value')}")
