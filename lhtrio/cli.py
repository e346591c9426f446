"""The ``lhtrio`` command: the composition root, where parts are wired together.

Subcommands run one part in the foreground (``replica``, later ``engine`` and ``node``) or talk to
a running part (``ctl``). Everything here is thin: parse arguments, build the parts, run them
under ``trio.run`` with SIGINT/SIGTERM turned into a clean shutdown.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click
import trio

from lhtrio import __version__, running
from lhtrio.admin import (
    api_options,
    attachment,
    engine_group,
    event,
    install,
    node_group,
    replica_group,
    setting,
    snapshot,
    status,
    volume,
)
from lhtrio.ctl import ctl
from lhtrio.errors import InvalidArgumentError, LhtrioError
from lhtrio.im import im
from lhtrio.models.names import validate_instance_name, validate_volume_name
from lhtrio.node_command import node
from lhtrio.output import (
    check_address,
    check_size,
    checked,
    replicas_option,
    size_option,
)
from lhtrio.process import tune_gc, tune_malloc
from lhtrio.verify.command import verify_group

if TYPE_CHECKING:
    pass

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lhtrio")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@api_options
@click.pass_context
def cli(
    ctx: click.Context, verbose: int, api: str, token_file: str | None, ca_file: str | None
) -> None:
    """lhtrio: distributed block storage for Kubernetes on trio."""
    # the verbs over the admin API (volume, snapshot, ...) find it on the context
    install(ctx, api, token_file, ca_file)
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _shared_store_url(text: str) -> object:
    """A store several processes can share (not ``memory:``)."""
    from lhtrio.manager.store.open import check_store_url

    if text.startswith("memory:"):
        raise InvalidArgumentError("memory: is one process's: the cluster's nodes cannot share it")
    return check_store_url(text)


_check_volume = checked(validate_volume_name)
_check_instance = checked(validate_instance_name)


def _default_name(name: str, option: str, check: Callable[[str], object]) -> None:
    """A usage error if ``name`` (the directory's name, ``option``'s default) is not valid."""
    try:
        check(name)
    except LhtrioError as exc:
        raise click.UsageError(
            f"{exc} (the default of {option} is the directory's name): pass {option} NAME"
        ) from None


@click.command()
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

    running.run(running.until_signalled, run)


@click.command()
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
    from lhtrio.engine import mutations
    from lhtrio.engine.server import LINGER, serve_engine
    from lhtrio.frontend.nbd.server import serve_nbd
    from lhtrio.net import parse_address
    from lhtrio.units import parse_size

    control = parse_address(listen)
    try:
        broken = mutations.check()
    except InvalidArgumentError as exc:
        raise click.UsageError(str(exc)) from None
    if broken:
        logging.getLogger(__name__).warning(
            "test build: mutations %s are on; this engine breaks its guarantees on purpose",
            ", ".join(sorted(broken)),
        )

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

    running.run(running.until_signalled, run)


cli.add_command(ctl)
cli.add_command(im)
cli.add_command(node_group(node))  # lhtrio node [run] OPTIONS, lhtrio node ls|get
cli.add_command(replica_group(replica))  # lhtrio replica [run] DIRECTORY, lhtrio replica ls|get
cli.add_command(engine_group(engine))  # lhtrio engine [run] VOLUME, lhtrio engine ls|get
for command in (volume, snapshot, attachment, event, setting, status):
    cli.add_command(command)  # the verbs over the admin API
cli.add_command(verify_group)  # lhtrio verify run: the no-acknowledged-write-lost checker


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script of lhtrio for SHELL (click's).

    \b
    bash: eval "$(lhtrio completion bash)"  (in ~/.bashrc)
    zsh:  eval "$(lhtrio completion zsh)"   (in ~/.zshrc)
    fish: lhtrio completion fish > ~/.config/fish/completions/lhtrio.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    if completer is None:  # (click knows the three offered)
        raise click.UsageError(f"no completion for {shell}")
    click.echo(completer(cli, {}, "lhtrio", "_LHTRIO_COMPLETE").source())


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
@click.option(
    "--store",
    metavar="URL",
    callback=checked(_shared_store_url),
    help="The store the nodes share: etcd://HOST:PORT[,HOST:PORT...][/PREFIX] for an etcd you "
    "run [default: the SQLite file DIR/store.db].",
)
def cluster(tour: bool | None, directory: str | None, store: str | None) -> None:
    """Three nodes on this host (127.0.0.11-13) sharing one store, with the admin API.

    On a terminal: prints the API URL, the token file and commands to try; Ctrl-C stops it.
    Without one (or with --tour): a scripted tour through the API — create, attach, write and
    read with qemu-io, lose a node, heal, detach, delete — then exits.
    """
    from lhtrio.cluster import run_cluster

    run_cluster(directory, tour=not sys.stdout.isatty() if tour is None else tour, store=store)


@cli.command()
def demo() -> None:
    """A replicated volume (3 replicas + engine) driven by real NBD clients on this machine.

    Until the control plane exists (a local cluster on the embedded store), this is the main job:
    it writes and reads through NBD, snapshots, loses a replica, reverts, and (on a terminal)
    keeps serving until Ctrl-C.
    """
    from lhtrio.demo import run_demo

    running.run(running.until_signalled, run_demo)


def main() -> None:
    tune_gc()
    tune_malloc()
    cli(complete_var="_LHTRIO_COMPLETE")  # the same as `lhtrio` or `python -m lhtrio`
