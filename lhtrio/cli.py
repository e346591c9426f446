"""The ``lhtrio`` command: the composition root, where parts are wired together.

Subcommands run one part in the foreground (``replica``, later ``engine`` and ``node``) or talk to
a running part (``ctl``). Everything here is thin: parse arguments, build the parts, run them
under ``trio.run`` with SIGINT/SIGTERM turned into a clean shutdown.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from typing import Any

import click
import trio

from lhtrio import __version__
from lhtrio.ctl import ctl
from lhtrio.errors import LhtrioError
from lhtrio.im import im
from lhtrio.process import tune_gc, tune_malloc

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lhtrio")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """lhtrio: distributed block storage for Kubernetes on trio."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--size", help="Volume size (bytes or 1Gi, 512Mi, ...); needed to create a replica.")
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    help="HOST:PORT, or unix:PATH for an engine on the same host (strict-local).",
)
@click.option("--volume", help="Volume name (default: the directory's name).")
@click.option("--instance", help="Replica instance name (default: the directory's name).")
def replica(
    directory: str, size: str | None, listen: str, volume: str | None, instance: str | None
) -> None:
    """Serve the replica in DIRECTORY (created if empty) until SIGTERM/SIGINT.

    Prints the address it listens on (tcp://HOST:PORT or unix:PATH) on the first line of stdout.
    """
    from lhtrio.net import parse_address
    from lhtrio.replica.server import serve_replica
    from lhtrio.units import parse_size

    name = os.path.basename(os.path.abspath(directory))
    address = parse_address(listen)

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                functools.partial(
                    serve_replica,
                    directory,
                    size=parse_size(size) if size is not None else None,
                    volume=volume or name,
                    instance=instance or name,
                    listen=address,
                    threaded=True,  # a process of its own: nothing else needs the GIL
                )
            )
            click.echo(bound)
            sys.stdout.flush()

    _run(_until_signalled, run)


@cli.command()
@click.argument("volume")
@click.option("--size", required=True, help="Volume size (bytes or 1Gi, 512Mi, ...).")
@click.option(
    "--replica", "replicas", multiple=True, required=True, help="tcp://HOST:PORT, repeatable."
)
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="Control HOST:PORT.")
@click.option(
    "--nbd", default="127.0.0.1:10809", show_default=True, help="NBD HOST:PORT or unix:/path.sock."
)
@click.option("--replica-timeout", default=8.0, show_default=True, help="Stall timeout, seconds.")
@click.option(
    "--salvage",
    is_flag=True,
    help="If every replica would start ERR, serve from the one with the newest data anyway.",
)
@click.option(
    "--busy-poll",
    type=click.IntRange(0, 10_000),
    default=250,
    show_default=True,
    metavar="MICROSECONDS",
    help=(
        "Poll this long for the client's next request, or for the replicas' answers to a lone "
        "single request, before sleeping (0: sleep at once)."
    ),
)
@click.option(
    "--local-sockets/--no-local-sockets",
    default=True,
    show_default=True,
    help="Reach replicas on this host through the Unix socket they offer instead of TCP.",
)
def engine(
    volume: str,
    size: str,
    replicas: tuple[str, ...],
    listen: str,
    nbd: str,
    replica_timeout: float,
    salvage: bool,
    busy_poll: int,
    local_sockets: bool,
) -> None:
    """Serve VOLUME over NBD, replicated to every --replica, until SIGTERM/SIGINT.

    Prints the control address (tcp://HOST:PORT) and the NBD URI on the first two lines.
    """
    from lhtrio.engine.server import LINGER, serve_engine
    from lhtrio.frontend.nbd.server import serve_nbd
    from lhtrio.net import parse_address
    from lhtrio.units import parse_size

    control = parse_address(listen)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(
                functools.partial(
                    serve_engine,
                    volume,
                    parse_size(size),
                    replicas,
                    host=control.host,
                    port=control.port,
                    frontend=functools.partial(serve_nbd, parse_address(nbd)),
                    short_timeout=replica_timeout,
                    salvage=salvage,
                    linger=LINGER,
                    spin=busy_poll / 1e6,
                    local=local_sockets,
                )
            )
            click.echo(f"tcp://{host}:{port}")
            sys.stdout.flush()

    _run(_until_signalled, run)


cli.add_command(ctl)
cli.add_command(im)


@cli.command()
@click.option("--name", required=True, help="The node's name (its Kubernetes node name).")
@click.option(
    "--data-dir", required=True, type=click.Path(file_okay=False), help="The node's first disk."
)
@click.option(
    "--disk", "disks", multiple=True, type=click.Path(file_okay=False), help="More disks."
)
@click.option("--advertise", default="127.0.0.1", show_default=True, help="This node's IP.")
@click.option("--port-range", default="10000-10999", show_default=True, help="Ports for instances.")
@click.option("--listen", help="Control HOST:PORT [default: ADVERTISE, any port].")
@click.option(
    "--nbd", help="NBD HOST:PORT for every volume of the node [default: ADVERTISE:10809]."
)
@click.option("--grace", default=30.0, show_default=True, help="Seconds to stop cleanly.")
def node(
    name: str,
    data_dir: str,
    disks: tuple[str, ...],
    advertise: str,
    port_range: str,
    listen: str | None,
    nbd: str | None,
    grace: float,
) -> None:
    """Run this node's engines and replicas in one process until SIGTERM/SIGINT.

    Prints the control address (tcp://HOST:PORT, for lhtrio im) and the NBD address on the first
    two lines of stdout.
    """
    from lhtrio.net import parse_address
    from lhtrio.node.ports import parse_port_range
    from lhtrio.node.server import serve_node

    low, high = parse_port_range(port_range)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            control, nbd_address = await nursery.start(
                functools.partial(
                    serve_node,
                    name,
                    data_dir,
                    disks=disks,
                    host=advertise,
                    listen=parse_address(listen) if listen else None,
                    nbd=parse_address(nbd) if nbd else None,
                    port_range=(low, high),
                    grace=grace,
                )
            )
            click.echo(control)
            click.echo(nbd_address)
            sys.stdout.flush()

    _run(_until_signalled, run)


@cli.command()
def demo() -> None:
    """A replicated volume (3 replicas + engine) driven by real NBD clients on this machine.

    Until the control plane exists (a local cluster on the embedded store), this is the main job:
    it writes and reads through NBD, snapshots, loses a replica, reverts, and (on a terminal)
    keeps serving until Ctrl-C.
    """
    from lhtrio.demo import run_demo

    _run(_until_signalled, run_demo)


async def _until_signalled(main: Any) -> None:
    """Run ``main`` until it returns or SIGINT/SIGTERM arrives; a signal cancels it cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    logging.getLogger(__name__).info(
                        "%s: shutting down", signal.Signals(signum).name
                    )
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await main()
            nursery.cancel_scope.cancel()


def _run(main: Any, *args: Any) -> None:
    """Run ``main`` under trio; LhtrioErrors are printed for the operator with exit code 1."""
    try:
        trio.run(functools.partial(main, *args))
    except BaseException as exc:
        errors = _leaves(exc)
        if not errors or not all(isinstance(e, LhtrioError) for e in errors):
            raise
        for error in errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def main() -> None:
    tune_gc()
    tune_malloc()
    cli()
