"""What the operator clients (``lhtrio ctl``, ``lhtrio im``) share: running a call, printing.

``-o json`` prints a result as JSON for scripts; the default renders a readable table. An lhtrio
error is printed to stderr with exit code 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
import trio

from lhtrio.errors import LhtrioError

__all__ = ["run_client", "output_option", "show", "table"]


def run_client(run: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return trio.run(run)
    except LhtrioError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
    )(func)


def show(output: str, value: Any, render: Callable[[Any], str]) -> None:
    if output == "json":
        click.echo(json.dumps(value, indent=2, sort_keys=True))
    else:
        text = render(value)
        if text:
            click.echo(text)


def table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
