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
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import click
import trio

from lhtrio import __version__
from lhtrio.ctl import ctl
from lhtrio.errors import InvalidArgumentError, LhtrioError
from lhtrio.im import im
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.output import (
    check_address,
    check_size,
    checked,
    nbd_uri,
    replicas_option,
    size_option,
)
from lhtrio.process import tune_gc, tune_malloc

if TYPE_CHECKING:
    from lhtrio.manager.store.api import Store

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


_check_volume = checked(validate_volume_name)
_check_instance = checked(validate_instance_name)


def _port_range(text: str) -> object:
    from lhtrio.instances.ports import parse_port_range

    return parse_port_range(text)


def _store_url(text: str) -> object:
    from lhtrio.manager.store.open import check_store_url

    return check_store_url(text)


def _api_address(text: str) -> object:
    from lhtrio.net import parse_address

    if parse_address(text).is_unix:
        raise InvalidArgumentError(f"the API listens on TCP: give HOST:PORT, not {text!r}")
    return text


def _default_name(name: str, option: str, check: Callable[[str], object]) -> None:
    """A usage error if ``name`` (the directory's name, ``option``'s default) is not valid."""
    try:
        check(name)
    except LhtrioError as exc:
        raise click.UsageError(
            f"{exc} (the default of {option} is the directory's name): pass {option} NAME"
        ) from None


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--size",
    metavar="SIZE",
    callback=check_size,
    help="Volume size: 10Gi, 1T, bytes (a multiple of 4096); needed to create a replica.",
)
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    metavar="ADDRESS",
    callback=check_address,
    help="HOST:PORT, or unix:PATH for an engine on the same host (strict-local).",
)
@click.option(
    "--volume",
    metavar="VOLUME",
    callback=_check_volume,
    help="Volume name [default: the directory's name].",
)
@click.option(
    "--instance",
    metavar="NAME",
    callback=_check_instance,
    help="Replica instance name [default: the directory's name].",
)
def replica(
    directory: str, size: int | None, listen: str, volume: str | None, instance: str | None
) -> None:
    """Serve the replica in DIRECTORY (created if empty) until SIGTERM/SIGINT.

    Prints the address it listens on (tcp://HOST:PORT or unix:PATH) on the first line of stdout.
    """
    from lhtrio.net import parse_address
    from lhtrio.replica.server import serve_replica
    from lhtrio.units import parse_size

    name = os.path.basename(os.path.abspath(directory))
    for given, option, check in (
        (volume, "--volume", validate_volume_name),
        (instance, "--instance", validate_instance_name),
    ):
        if given is None:
            _default_name(name, option, check)
    address = parse_address(listen)

    async def run(stop: trio.Event) -> None:
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
            await stop.wait()
            nursery.cancel_scope.cancel()  # a replica closes cleanly when cancelled

    _run(_until_signalled, run)


@cli.command()
@click.argument("volume", callback=_check_volume)
@size_option
@replicas_option
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    callback=check_address,
    help="Where to listen for control calls (lhtrio ctl).",
)
@click.option(
    "--nbd",
    default="127.0.0.1:10809",
    show_default=True,
    metavar="ADDRESS",
    callback=check_address,
    help="Where to serve NBD clients: HOST:PORT or unix:/path.sock.",
)
@click.option(
    "--replica-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=8.0,
    metavar="SECONDS",
    show_default=True,
    help="Seconds a replica may stall before it is marked ERR (twice that for the last RW one).",
)
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
@click.option(
    "--intent-sweep",
    type=click.FloatRange(0.05, 3600),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help=(
        "How often the replicas' write-intent marks are cleared: a region stays marked (and is "
        "compared after a crash) for one to two of these after its last write."
    ),
)
def engine(
    volume: str,
    size: int,
    replicas: tuple[str, ...],
    listen: str,
    nbd: str,
    replica_timeout: float,
    salvage: bool,
    busy_poll: int,
    local_sockets: bool,
    intent_sweep: float,
) -> None:
    """Serve VOLUME over NBD, replicated to every --replica, until SIGTERM/SIGINT.

    Prints the control address (tcp://HOST:PORT) and the NBD URI on the first two lines.
    """
    from lhtrio.engine.server import LINGER, serve_engine
    from lhtrio.frontend.nbd.server import serve_nbd
    from lhtrio.net import parse_address
    from lhtrio.units import parse_size

    control = parse_address(listen)

    async def run(stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            host, port, frontend = await nursery.start(
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
                    sweep=intent_sweep,
                    stop=stop,  # a graceful stop: the engine returns once it has drained
                )
            )
            click.echo(f"tcp://{host}:{port}")
            click.echo(frontend)
            sys.stdout.flush()

    _run(_until_signalled, run)


cli.add_command(ctl)
cli.add_command(im)


@cli.command()
@click.option(
    "--name",
    required=True,
    metavar="NAME",
    callback=checked(functools.partial(validate_instance_name, what="node")),
    help="The node's name (its Kubernetes node name).",
)
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="The node's first disk, a directory (replicas go to DIR/replicas/NAME).",
)
@click.option(
    "--disk",
    "disks",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Another disk, a directory; repeat the option for each disk.",
)
@click.option(
    "--advertise",
    default="127.0.0.1",
    metavar="IP",
    show_default=True,
    help="This node's IP: where instances listen and what their addresses say.",
)
@click.option(
    "--port-range",
    default="10000-10999",
    show_default=True,
    metavar="LOW-HIGH",
    callback=checked(_port_range),
    help="Ports for the instances' control endpoints.",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    callback=check_address,
    help="Where to listen for control calls (lhtrio im) [default: ADVERTISE, any port].",
)
@click.option(
    "--nbd",
    metavar="HOST:PORT",
    callback=check_address,
    help="NBD HOST:PORT for every volume of the node [default: ADVERTISE:10809].",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    metavar="SECONDS",
    show_default=True,
    help="Seconds to stop cleanly on SIGTERM.",
)
@click.option(
    "--store",
    metavar="URL",
    envvar="LHTRIO_STORE",
    show_envvar=True,
    callback=checked(_store_url),
    help="Join the control plane: sqlite:PATH (one file shared by the nodes of a host) or "
    "memory:. The node registers itself and its disks there and keeps its lease.",
)
@click.option(
    "--api",
    metavar="HOST:PORT",
    callback=checked(_api_address),
    help="Serve the admin HTTP API (needs --store); :PORT binds ADVERTISE, port 0 a free port.",
)
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The bearer token the API's mutating calls need [default: DATA_DIR/api-token, made "
    "(mode 0600) on the first start].",
)
def node(
    name: str,
    data_dir: str,
    disks: tuple[str, ...],
    advertise: str,
    port_range: str,
    listen: str | None,
    nbd: str | None,
    grace: float,
    store: str | None,
    api: str | None,
    api_token_file: str | None,
) -> None:
    """Run this node's engines and replicas in one process until SIGTERM/SIGINT.

    Prints the control address (tcp://HOST:PORT, for lhtrio im) and the NBD address
    (nbd://HOST:PORT; each volume is the export nbd://HOST:PORT/VOLUME) on the first two lines of
    stdout, and with --api the API's URL (http://HOST:PORT) on the third.
    """
    from lhtrio.instances.ports import parse_port_range
    from lhtrio.manager.store.open import open_store
    from lhtrio.net import parse_address
    from lhtrio.node.server import serve_node

    if api is not None and store is None:
        raise click.UsageError("--api serves the control plane's objects: it needs --store")
    if api_token_file is not None and api is None:
        raise click.UsageError("--api-token-file is the token of --api: give --api too")
    low, high = parse_port_range(port_range)

    async def run(stop: trio.Event) -> None:
        token = None
        if api_token_file is not None:  # a bad token file stops the node before it starts
            from lhtrio.api import read_token

            token = await trio.to_thread.run_sync(read_token, api_token_file)
        async with AsyncExitStack() as stack:
            desired = await stack.enter_async_context(open_store(store)) if store else None
            nursery = await stack.enter_async_context(trio.open_nursery())
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
                    store=desired,
                )
            )
            click.echo(control)
            click.echo(nbd_uri(nbd_address))  # nbd://HOST:PORT: a volume is .../VOLUME
            if api is not None:
                assert desired is not None
                url = await nursery.start(_serve_api, desired, api, advertise, data_dir, token)
                click.echo(url)
            sys.stdout.flush()
            await stop.wait()
            nursery.cancel_scope.cancel()  # the node stops its instances in order, within --grace

    _run(_until_signalled, run)


async def _serve_api(
    store: Store,
    api: str,
    advertise: str,
    data_dir: str,
    token: str | None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The node's admin API on ``api``; its token given, or the node's (``DATA_DIR/api-token``)."""
    from lhtrio.api import node_token, serve_api
    from lhtrio.manager.objects import Objects
    from lhtrio.net import parse_address

    if token is None:
        token = await trio.to_thread.run_sync(node_token, data_dir)
    address = parse_address(api, default_host=advertise)  # ":PORT" binds the advertised IP
    await serve_api(
        Objects(store), address.host, address.port, token=token, task_status=task_status
    )


@cli.command()
@click.option(
    "--tour/--no-tour",
    default=None,
    help="Run the scripted tour and exit [default: without a terminal].",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Keep the nodes' data and the store here [default: a temporary directory].",
)
def cluster(tour: bool | None, directory: str | None) -> None:
    """Three nodes on this host (127.0.0.11-13) sharing one embedded store, with the admin API.

    On a terminal: prints the API URL, the token file and commands to try; Ctrl-C stops it.
    Without one (or with --tour): a scripted tour through the API — create, attach, write and
    read with qemu-io, lose a node, heal, detach, delete — then exits.
    """
    from lhtrio.cluster import run_cluster

    run_cluster(directory, tour=not sys.stdout.isatty() if tour is None else tour)


@cli.command()
def demo() -> None:
    """A replicated volume (3 replicas + engine) driven by real NBD clients on this machine.

    Until the control plane exists (a local cluster on the embedded store), this is the main job:
    it writes and reads through NBD, snapshots, loses a replica, reverts, and (on a terminal)
    keeps serving until Ctrl-C.
    """
    from lhtrio.demo import run_demo

    _run(_until_signalled, run_demo)


async def _until_signalled(main: Callable[[trio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until it returns.

    The first SIGINT or SIGTERM sets ``stop``: ``main`` stops gracefully (an engine drains its
    clients and flushes) and returns within its own deadline. A second signal cancels it at
    once (an engine still flushes, shielded, for a few seconds).
    """
    stop = trio.Event()
    log = logging.getLogger(__name__)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        log.warning("%s: stopping (send it again to stop at once)", name)
                        stop.set()
                    else:
                        log.warning("%s again: stopping at once", name)
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await main(stop)
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
