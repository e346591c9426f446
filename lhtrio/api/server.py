"""``serve_api``: the admin API (:mod:`lhtrio.api.app`) on hypercorn's trio worker.

Resource handling: hypercorn binds the listening socket before :func:`serve_api` reports its URL
(``task_status.started("http://HOST:PORT")``, ``https://`` with TLS; port 0 picks a free port,
and the URL says which). TLS is hypercorn's: a certificate chain and its key in PEM files
(:func:`check_tls` reads them first, so a bad pair is a clear error before anything listens).
Every request is logged once, without its headers (:class:`lhtrio.api.access.AccessLog`; a watch
stream when it ends). The watch streams' feeders run in a :class:`~lhtrio.api.watch.WatchHub`
beside hypercorn.

Stopping. Setting ``stop`` is the graceful way: every watch stream ends at once (they would never
end by themselves), the listener closes, the requests in flight finish (within
:data:`GRACEFUL_TIMEOUT`, after which hypercorn cancels them), then :func:`serve_api` returns.
Cancellation is the hard way: the listener and every connection close at once; requests in
flight are cancelled with it (a store write is one transaction: it happened or not).
"""

from __future__ import annotations

import logging
import ssl
from typing import Final

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from lhtrio.api.access import AccessLog
from lhtrio.api.app import make_app
from lhtrio.api.observe import NodeFacts
from lhtrio.api.watch import WatchHub
from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.objects import Objects

__all__ = ["GRACEFUL_TIMEOUT", "check_tls", "serve_api"]

logger = logging.getLogger(__name__)

#: The longest a graceful stop waits for the requests in flight (seconds).
GRACEFUL_TIMEOUT: Final = 10.0


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_tls(certfile: str, keyfile: str) -> None:
    """InvalidArgumentError unless ``certfile`` and ``keyfile`` are a certificate chain and its
    private key (PEM) that a TLS server can use."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgumentError(
            f"cannot serve TLS with the certificate {certfile} and the key {keyfile}: {exc}"
        ) from None


async def serve_api(
    objects: Objects,
    host: str,
    port: int,
    *,
    token: str,
    read_anonymous: bool = False,
    tls: tuple[str, str] | None = None,
    node: NodeFacts | None = None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API over ``objects`` on ``host:port``; reports its URL. Returns once
    ``stop`` is set and the requests in flight are done; serves until cancelled without it.

    Calls need ``Authorization: Bearer <token>`` (reads too, unless ``read_anonymous``);
    ``tls``: ``(certificate file, key file)`` to serve HTTPS. ``node``: the node this API runs
    in (its readiness and its engines' metrics; :class:`~lhtrio.api.observe.NodeFacts`).
    """
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None  # lhtrio's own, without tokens (AccessLog)
    config.errorlog = logging.getLogger("lhtrio.api.hypercorn")
    config.include_server_header = False
    config.graceful_timeout = GRACEFUL_TIMEOUT
    if tls is not None:
        await trio.to_thread.run_sync(check_tls, *tls)
        config.certfile, config.keyfile = tls
    hub = WatchHub()
    app = make_app(objects, token=token, read_anonymous=read_anonymous, watches=hub, node=node)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)

        async def stopping() -> None:
            await (stop if stop is not None else trio.Event()).wait()
            logger.info("admin API stopping: ending its watch streams")
            hub.close()  # hypercorn closes its listener next, then waits for what is left

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(AccessLog(app), config, shutdown_trigger=stopping, task_status=task_status)
            nursery.cancel_scope.cancel()  # (the hub, closed already)

        binds: list[str] = await nursery.start(run)
        url = binds[0]
        logger.info("admin API on %s", url)
        task_status.started(url)
