"""``serve_api``: the admin API (:mod:`lhtrio.api.app`) on hypercorn's trio worker.

Resource handling: hypercorn binds the listening socket before :func:`serve_api` reports its URL
(``task_status.started("http://HOST:PORT")``; port 0 picks a free port, and the URL says which).
Cancellation: cancelling the caller's scope closes the listener and every connection at once;
requests in flight are cancelled with it (a store write is one transaction: it happened or not).
"""

from __future__ import annotations

import functools
import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from lhtrio.api.app import make_app
from lhtrio.manager.objects import Objects

__all__ = ["serve_api"]

logger = logging.getLogger(__name__)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_api(
    objects: Objects,
    host: str,
    port: int,
    *,
    token: str,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API over ``objects`` on ``host:port`` until cancelled; reports its URL.

    Mutating calls need ``Authorization: Bearer <token>``.
    """
    app = make_app(objects, token=token)
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None
    config.errorlog = logging.getLogger("lhtrio.api.hypercorn")
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(functools.partial(serve, app, config))
        url = binds[0]
        logger.info("admin API on %s", url)
        task_status.started(url)
