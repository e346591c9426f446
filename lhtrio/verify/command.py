"""``lhtrio verify run``: the checker against any NBD export (docs/reliability.md).

Exit codes: 0 when every block read back is one the model allows, 1 on a violation (each one
printed) or an operator error (a URI that does not answer, too many blocks), 2 on bad usage.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import click
import trio

from lhtrio.errors import LhtrioError
from lhtrio.verify.model import Report

if TYPE_CHECKING:
    from lhtrio.verify.workload import Progress

__all__ = ["format_report", "verify_group"]


def format_report(report: Report, progress: Progress | None = None, *, limit: int = 20) -> str:
    """The report as the operator reads it: the counts, then each violation (at most ``limit``)."""
    lines = [
        f"blocks checked   {report.blocks}",
        f"writes           {report.writes} ({report.acked_writes} acknowledged, "
        f"{report.durable_writes} flushed)",
        f"flushes          {report.flushes} ({report.acked_flushes} acknowledged)",
    ]
    if progress is not None:
        lines.append(
            f"connections      {progress.connections} ({progress.broken} broke with requests "
            "in flight)"
        )
    lines.append(f"violations       {len(report.violations)}")
    lines.extend(
        f"  block {v.block}: {v.kind.value}: {v.detail}" for v in report.violations[:limit]
    )
    if len(report.violations) > limit:
        lines.append(f"  ... and {len(report.violations) - limit} more")
    return "\n".join(lines)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


@click.group(name="verify")
def verify_group() -> None:
    """The no-acknowledged-write-lost checker: lhtrio verify run --uri URI writes, reads back and
    checks a volume (docs/reliability.md)."""


@verify_group.command(name="run")
@click.option(
    "--uri",
    required=True,
    metavar="URI",
    help="The export: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH.",
)
@click.option(
    "--blocks",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="How many 4 KiB blocks (from offset 0) the writers use: every one is a register.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to write before reading back.",
)
@click.option(
    "--writers", type=click.IntRange(min=1), default=4, show_default=True, help="Connections."
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests in flight per connection.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds each lane's choices.")
def run(uri: str, blocks: int, duration: float, writers: int, depth: int, seed: int) -> None:
    """Write stamped blocks through NBD, read them back, check them; exit 1 on a violation.

    Run faults against the volume meanwhile (kill, stop, cut what you like): afterwards every
    block must read its last acknowledged-and-flushed value or a later one, never an older, a
    torn or a foreign one. The volume's first BLOCKS blocks are overwritten.
    """
    from lhtrio.verify.nbd import parse_uri  # (lazily: every lhtrio command loads this module)
    from lhtrio.verify.workload import WorkloadConfig, verify

    try:
        target = parse_uri(uri)
    except LhtrioError as exc:
        raise click.BadParameter(str(exc), param_hint="--uri") from None
    config = WorkloadConfig(blocks=blocks, writers=writers, depth=depth, seed=seed)
    failed: list[BaseException] = []
    try:
        _, report, progress = trio.run(
            lambda: verify(target, config, duration=duration, run=secrets.randbits(63))
        )
    except* LhtrioError as group:  # (inside nurseries, errors come in groups)
        failed.extend(_leaves(group))
    if failed:
        for error in failed:
            click.echo(f"error: {error}", err=True)
        raise SystemExit(1)
    click.echo(format_report(report, progress))
    if not report.ok:
        raise SystemExit(1)
