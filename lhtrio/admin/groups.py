"""The click side of the verbs over the API: the groups that turn an :class:`ApiError` into
``error: MESSAGE`` and its exit code, and the options every verb shares (``-o``, ``-l``).

* :class:`ApiGroup` / :class:`ApiCommand`: an :class:`ApiError` escaping a verb is printed on
  stderr and is the exit code (404: 3, 409 and 422: 4, unreachable: 5, 401: 6, else 1);
* :class:`DefaultGroup`: ``lhtrio node|engine|replica`` run a part when the first argument is
  not one of the API's verbs;
* :func:`json_option` (``-o table|json|yaml``), :func:`selector_option` (``-l SELECTOR``,
  checked by the API's own parser) and :func:`list_params` (a list's query).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from lhtrio.admin.client import ApiError
from lhtrio.models.selector import parse_selector
from lhtrio.output import checked, table_output_option

__all__ = [
    "ApiCommand",
    "ApiGroup",
    "DefaultGroup",
    "json_option",
    "list_params",
    "selector_option",
]


#: ``-o table|json|yaml``: a table, or the API's documents as received, in JSON or YAML (for
#: scripts: keys sorted).
json_option = table_output_option(
    "Print a table, or the API's documents in JSON or YAML for scripts."
)


def selector_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-l`` / ``--selector``: the API's ``?labelSelector=`` (``list_params`` spells it)."""
    return click.option(
        "-l",
        "--selector",
        metavar="SELECTOR",
        callback=checked(parse_selector),
        help="Only those whose labels match: app=db,tier!=cache,backup,!tmp (Kubernetes' "
        "equality-based selector).",
    )(func)


def list_params(filters: dict[str, str | None]) -> dict[str, str]:
    """A list's query from its verb's filter options (those given): ``selector`` is the API's
    ``labelSelector``."""
    names = {"selector": "labelSelector"}
    return {names.get(key, key): value for key, value in filters.items() if value is not None}


class ApiGroup(click.Group):
    """A group of verbs over the API: an :class:`ApiError` is ``error: MESSAGE`` on stderr and
    its exit code (404: 3, 409 and 422: 4, unreachable: 5, 401: 6, anything else: 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


class DefaultGroup(ApiGroup):
    """A group whose first argument, when it is not one of its verbs (nor ``--help``), is the
    start of the default verb's: ``lhtrio node --name n1 ...`` is ``lhtrio node run --name n1
    ...``, and ``lhtrio replica DIR`` is ``lhtrio replica run DIR``, as they were before the
    groups had the API's verbs (``run`` names a directory or volume called ``ls``)."""

    default = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)


class ApiCommand(click.Command):
    """A verb over the API outside a group (``lhtrio status``): errors as :class:`ApiGroup`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
