"""``serve_api``: the admin API (:mod:`lhtrio.api.app`) on hypercorn's trio worker.

Resource handling: hypercorn binds the listening socket before :func:`serve_api` reports its URL
(``task_status.started("http://HOST:PORT")``, ``https://`` with TLS; port 0 picks a free port,
and the URL says which). TLS is hypercorn's: a certificate chain and its key in PEM files
(:func:`check_tls` reads them first, so a bad pair is a clear error before anything listens).
Every request is logged once, without its headers (:class:`lhtrio.api.access.AccessLog`).
Cancellation: cancelling the caller's scope closes the listener and every connection at once;
requests in flight are cancelled with it (a store write is one transaction: it happened or not).
"""

from __future__ import annotations

import functools
import logging
import ssl

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from lhtrio.api.access import AccessLog
from lhtrio.api.app import make_app
from lhtrio.errors import InvalidArgumentError
from lhtrio.manager.objects import Objects

__all__ = ["check_tls", "serve_api"]

logger = logging.getLogger(__name__)


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
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API over ``objects`` on ``host:port`` until cancelled; reports its URL.

    Calls need ``Authorization: Bearer <token>`` (reads too, unless ``read_anonymous``);
    ``tls``: ``(certificate file, key file)`` to serve HTTPS.
    """
    app = make_app(objects, token=token, read_anonymous=read_anonymous)
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None  # lhtrio's own, without tokens (AccessLog)
    config.errorlog = logging.getLogger("lhtrio.api.hypercorn")
    config.include_server_header = False
    if tls is not None:
        await trio.to_thread.run_sync(check_tls, *tls)
        config.certfile, config.keyfile = tls
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(functools.partial(serve, AccessLog(app), config))
        url = binds[0]
        logger.info("admin API on %s", url)
        task_status.started(url)
