"""What the operator commands share: parameter types, the endpoint of a call, printing.

* **Parameters** are checked while click parses them (:func:`check_size`, :func:`checked`,
  :func:`check_labels`, :data:`check_address`), by the rules the servers apply
  (:mod:`lhtrio.models.names`, :func:`lhtrio.units.parse_volume_size`), so a bad value is a
  one-line usage error with exit code 2 before anything starts or is sent.
* **The endpoint** (:class:`Endpoint`) is what one ``lhtrio ctl`` / ``lhtrio im`` invocation
  talks to. ``--engine`` / ``--node`` (or ``LHTRIO_ENGINE`` / ``LHTRIO_NODE``) are needed only
  when a call is made, so ``--help`` works anywhere without them.
* **Output:** ``-o json`` or ``-o yaml`` (before or after the verb) prints a result as JSON or
  YAML for scripts, with the server's raw values (bytes, epoch seconds, lists), keys sorted; the
  default renders a readable table (sizes with units, times as RFC 3339 UTC and an age, lists
  comma-joined). An lhtrio error is printed to stderr with exit code 1.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import attrs
import click
import trio
import yaml

from lhtrio.errors import InvalidArgumentError, LhtrioError
from lhtrio.models.names import validate_labels
from lhtrio.models.times import format_time
from lhtrio.net import RpcClient, open_rpc_client, parse_address
from lhtrio.units import parse_volume_size
from lhtrio.wire import Role
from lhtrio.wire.control import converter

__all__ = [
    "OUTPUTS",
    "Endpoint",
    "check_address",
    "check_labels",
    "check_size",
    "checked",
    "dump_yaml",
    "format_age",
    "format_list",
    "format_when",
    "nbd_uri",
    "output_option",
    "group_output_option",
    "size_option",
    "replicas_option",
    "run_client",
    "show",
    "table",
]

OUTPUTS = ("table", "json", "yaml")

T = TypeVar("T")


Callback = Callable[[click.Context, click.Parameter, Any], Any]


def _usage(check: Callable[[Any], Any], value: Any, ctx: click.Context, param: Any) -> Any:
    """``check(value)``, with its InvalidArgumentError turned into a usage error (exit code 2)."""
    try:
        return check(value)
    except InvalidArgumentError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def checked(check: Callable[[str], object]) -> Callback:
    """A click callback passing through the values ``check`` accepts (one, or each of several).

    ``check`` raises InvalidArgumentError for a bad value: a usage error naming the parameter.
    (Callbacks rather than ``click.ParamType`` subclasses: their typing differs across click 8.x.)
    """

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None:
                _usage(check, item, ctx, param)
        return value

    return callback


def check_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A volume size (``10Gi``, ``1T``, bytes) as an int: a positive multiple of 4096."""
    return None if value is None else int(_usage(parse_volume_size, value, ctx, param))


def check_labels(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` options as labels, under Kubernetes' rules; each key once."""
    labels: dict[str, str] = {}
    for text in value:
        key, sep, label = text.partition("=")
        if not sep:
            raise click.BadParameter(f"label {text!r} is not KEY=VALUE", ctx=ctx, param=param)
        if key in labels:
            raise click.BadParameter(
                f"label {key!r} is given twice ({labels[key]!r} and {label!r}): give it once",
                ctx=ctx,
                param=param,
            )
        labels[key] = label
    return dict(_usage(validate_labels, labels, ctx, param))


#: An endpoint address: ``HOST:PORT``, ``tcp://HOST:PORT`` or ``unix:PATH``.
check_address = checked(parse_address)


@attrs.define(kw_only=True)
class Endpoint:
    """The engine or node one ``lhtrio ctl`` / ``lhtrio im`` invocation talks to, and its output.

    ``address`` may be empty while click parses (``--help`` needs no endpoint); :meth:`require`
    turns a call without one into a usage error that says how to give it.
    """

    address: str | None
    what: str  # "engine", "node": also the name of the option that gives the address
    command: str  # "ctl", "im"
    envvar: str
    role: Role
    output: str = "table"

    @property
    def client(self) -> str:
        return f"lhtrio-{self.command}"

    def require(self) -> str:
        """The address; a usage error (exit code 2) if none was given."""
        if not self.address:
            raise click.UsageError(
                f"no {self.what} given: put --{self.what} HOST:PORT before the verb "
                f"(lhtrio {self.command} --{self.what} HOST:PORT VERB ...) or set {self.envvar}",
                click.get_current_context(silent=True),
            )
        return self.address

    def run(self, work: Callable[[RpcClient], Awaitable[T]]) -> T:
        """``await work(rpc)`` on a connection to the endpoint; an lhtrio error exits 1."""
        address = self.require()

        async def run() -> T:
            async with open_rpc_client(address, client=self.client, role=self.role) as client:
                return await work(client)

        result: T = run_client(run)
        return result

    def show(self, value: T, render: Callable[[T], str]) -> None:
        show(self.output, value, render)


def run_client(run: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return trio.run(run)
    except LhtrioError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-o table|json`` after the verb; it overrides the one given before the verb."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        expose_value=False,
        callback=_set_output,
        help="Print a table, or JSON or YAML for scripts (overrides -o given before the verb).",
    )(func)


def table_output_option(help: str) -> Callable[[Callable[..., Any]], Any]:
    """``-o table|json|yaml``, a table by default, saying ``help``."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        default="table",
        show_default=True,
        help=help,
    )


#: ``-o table|json|yaml`` before the verb (``lhtrio ctl -o json info``).
group_output_option = table_output_option(
    "Print tables, or JSON or YAML for scripts; also accepted after the verb."
)


def size_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--size SIZE``, required, checked where it is parsed (:func:`check_size`)."""
    return click.option(
        "--size",
        required=True,
        metavar="SIZE",
        callback=check_size,
        help="Volume size: 10Gi, 1T, bytes (a multiple of 4096).",
    )(func)


def replicas_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--replica ADDRESS``, repeated, at least once."""
    return click.option(
        "--replica",
        "replicas",
        multiple=True,
        required=True,
        metavar="ADDRESS",
        callback=check_address,
        help="A replica's address, tcp://HOST:PORT or unix:PATH; repeat it for each replica.",
    )(func)


def _set_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    endpoint = ctx.find_object(Endpoint)
    if value is not None and endpoint is not None:
        endpoint.output = value


def show(output: str, value: T, render: Callable[[T], str]) -> None:
    """``value`` rendered for reading, or as JSON or YAML (a record as it travels on the
    wire; keys sorted, so the text is stable for scripts)."""
    if output == "json":
        click.echo(json.dumps(converter.unstructure(value), indent=2, sort_keys=True))
    elif output == "yaml":
        click.echo(dump_yaml(converter.unstructure(value)), nl=False)
    else:
        text = render(value)
        if text:
            click.echo(text)


def dump_yaml(value: object) -> str:
    """``value`` (JSON-shaped) as one YAML document, keys sorted, block style, ending in a
    newline (PyYAML's safe dumper: only plain types)."""
    return str(yaml.safe_dump(value, sort_keys=True, default_flow_style=False, allow_unicode=True))


def table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def format_list(values: Iterable[Any]) -> str:
    """``['a', 'b']`` -> ``a, b``."""
    return ", ".join(str(v) for v in values)


def format_age(seconds: float) -> str:
    """``200`` -> ``3m``: seconds below 2 minutes, minutes below 2 hours, hours below 2 days."""
    seconds = int(seconds)
    for unit, size, limit in (("s", 1, 120), ("m", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def format_when(epoch: float, *, now: float | None = None) -> str:
    """``2026-12-04T18:20:01Z (3m ago)`` for seconds since the epoch; empty for 0 (never)."""
    if not epoch:
        return ""
    try:
        text = format_time(dt.datetime.fromtimestamp(epoch, dt.UTC))
    except (OverflowError, ValueError, OSError, LhtrioError):
        return str(epoch)
    age = (time.time() if now is None else now) - epoch
    return f"{text} ({format_age(age)} ago)" if age >= 0 else f"{text} (in {format_age(-age)})"


def nbd_uri(address: str, export: str = "") -> str:
    """The NBD URI a client uses for ``address`` (``tcp://H:P`` -> ``nbd://H:P[/EXPORT]``).

    A Unix socket becomes ``nbd+unix:///EXPORT?socket=PATH``; anything but ``tcp://`` and
    ``unix:`` addresses (as ``str(Address)`` writes them) is returned unchanged.
    """
    try:
        if not address.startswith(("tcp://", "unix:")):
            return address
        parsed = parse_address(address)
    except InvalidArgumentError:
        return address
    if parsed.is_unix:
        return f"nbd+unix:///{export}?socket={parsed.path}"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"nbd://{host}:{parsed.port}" + (f"/{export}" if export else "")
