"""``lhtrio node``: one process per Kubernetes node — instances, NBD, and (with ``--store``) the
control plane's manager and (with ``--api``) the admin API. The composition lives in
:func:`lhtrio.node.server.serve_node`; this is its command line."""

from __future__ import annotations

import functools
import logging
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import click
import trio

from lhtrio import running
from lhtrio.errors import InvalidArgumentError
from lhtrio.models.names import validate_instance_name
from lhtrio.output import check_address, checked, nbd_uri

if TYPE_CHECKING:
    from lhtrio.manager.store.api import Store
    from lhtrio.node.probe import NodeProbe

__all__ = ["node"]

#: The longest a stopping node waits for its API's graceful stop (lhtrio.api.server's
#: GRACEFUL_TIMEOUT for the requests in flight, and some).
API_STOP_DEADLINE = 15.0


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


@click.command()
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
    help="Join the control plane: sqlite:PATH (one file shared by the nodes of a host), "
    "etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (an etcd cluster shared by nodes on any hosts), "
    "kubernetes (the cluster this pod runs in) or kubernetes:KUBECONFIG, or memory:. The node "
    "registers itself and its disks there and keeps its lease.",
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
    help="The bearer token the API's calls need [default: DATA_DIR/api-token, made "
    "(mode 0600) on the first start].",
)
@click.option(
    "--api-read-anonymous",
    is_flag=True,
    help="Answer the API's reads (GET) without the token; changes still need it.",
)
@click.option(
    "--api-tls-cert",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Serve the API over HTTPS with this certificate chain (PEM); needs --api-tls-key.",
)
@click.option(
    "--api-tls-key",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The private key (PEM) of --api-tls-cert.",
)
@click.option(
    "--api-access-log/--no-api-access-log",
    default=True,
    show_default=True,
    help="Log one line per API request on stderr (client, method, path, status, time; never "
    "the token).",
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
    api_read_anonymous: bool,
    api_tls_cert: str | None,
    api_tls_key: str | None,
    api_access_log: bool,
) -> None:
    """Run this node's engines and replicas in one process until SIGTERM/SIGINT.

    Prints the control address (tcp://HOST:PORT, for lhtrio im) and the NBD address
    (nbd://HOST:PORT; each volume is the export nbd://HOST:PORT/VOLUME) on the first two lines of
    stdout, and with --api the API's URL (http://HOST:PORT, https:// with TLS) on the third.
    """
    from lhtrio.instances.ports import parse_port_range
    from lhtrio.manager.store.open import open_store
    from lhtrio.net import parse_address
    from lhtrio.node.probe import NodeProbe
    from lhtrio.node.server import serve_node

    if api is not None and store is None:
        raise click.UsageError("--api serves the control plane's objects: it needs --store")
    for option, given in (
        ("--api-token-file", api_token_file),
        ("--api-read-anonymous", api_read_anonymous or None),
        ("--api-tls-cert", api_tls_cert),
        ("--api-tls-key", api_tls_key),
    ):
        if given is not None and api is None:
            raise click.UsageError(f"{option} is an option of --api: give --api too")
    if (api_tls_cert is None) != (api_tls_key is None):
        raise click.UsageError("TLS needs both --api-tls-cert and --api-tls-key")
    tls = (api_tls_cert, api_tls_key) if api_tls_cert and api_tls_key else None
    low, high = parse_port_range(port_range)
    if api is not None and api_access_log:
        _access_log_to_stderr()

    async def run(stop: trio.Event) -> None:
        token = None
        # a bad token file or TLS pair stops the node before it starts
        if api_token_file is not None:
            from lhtrio.api import read_token

            token = await trio.to_thread.run_sync(read_token, api_token_file)
        if tls is not None:
            from lhtrio.api import check_tls

            await trio.to_thread.run_sync(check_tls, *tls)
        probe = NodeProbe(name)
        api_stop, api_done = trio.Event(), trio.Event()
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
                    probe=probe,
                )
            )
            click.echo(control)
            click.echo(nbd_uri(nbd_address))  # nbd://HOST:PORT: a volume is .../VOLUME
            if api is not None:
                assert desired is not None
                serve = functools.partial(
                    _serve_api,
                    desired,
                    api,
                    advertise,
                    data_dir,
                    token,
                    read_anonymous=api_read_anonymous,
                    tls=tls,
                    probe=probe,
                    stop=api_stop,
                    done=api_done,
                )
                url = await nursery.start(serve)
                click.echo(url)
            else:
                api_done.set()
            sys.stdout.flush()
            await stop.wait()
            api_stop.set()  # the API first, gracefully: its watch streams end, requests finish
            with trio.move_on_after(API_STOP_DEADLINE):
                await api_done.wait()
            nursery.cancel_scope.cancel()  # the node stops its instances in order, within --grace

    running.run(running.until_signalled, run)


def _access_log_to_stderr() -> None:
    """The API's access log on stderr at any ``-v`` (the node's console otherwise shows only
    warnings and up)."""
    access = logging.getLogger("lhtrio.api.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False  # once, not again through the root logger's console handler


async def _serve_api(
    store: Store,
    api: str,
    advertise: str,
    data_dir: str,
    token: str | None,
    *,
    read_anonymous: bool,
    tls: tuple[str, str] | None,
    probe: NodeProbe,
    stop: trio.Event,
    done: trio.Event,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The node's admin API on ``api``; its token given, or the node's (``DATA_DIR/api-token``).
    It stops gracefully once ``stop`` is set, then sets ``done``."""
    from lhtrio.api import node_token, serve_api
    from lhtrio.manager.objects import Objects
    from lhtrio.net import parse_address

    if token is None:
        token = await trio.to_thread.run_sync(node_token, data_dir)
    address = parse_address(api, default_host=advertise)  # ":PORT" binds the advertised IP
    try:
        await serve_api(
            Objects(store),
            address.host,
            address.port,
            token=token,
            read_anonymous=read_anonymous,
            tls=tls,
            node=probe,
            stop=stop,
            task_status=task_status,
        )
    finally:
        done.set()
