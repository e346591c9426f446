"""``serve_kubeapi``: the double (:mod:`.app`) on hypercorn's trio worker, over one key prefix
of an etcd.

Resource handling: hypercorn binds the listening socket before :func:`serve_kubeapi` reports its
URL (``task_status.started("http://HOST:PORT")``; port 0 picks a free one); the etcd client is
the server's until it returns. It serves until cancelled: cancellation closes the listener and
every connection, watches included, at once (a write in flight is one etcd transaction: it
happened or not).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from lhtrio.manager.store.etcd_client import open_etcd_client
from tests.kubeapi.app import KubeApp
from tests.kubeapi.etcd import EtcdObjects
from tests.kubeapi.handlers import Call, Handlers
from tests.kubeapi.resources import NAMESPACE
from tests.kubeapi.rules import now, prepare_create

__all__ = ["BOOKMARK_INTERVAL", "DEFAULT_NAMESPACES", "serve_kubeapi"]

#: Seconds between the heartbeats that become BOOKMARK events (the real server: about a minute).
BOOKMARK_INTERVAL: Final = 60.0
#: The namespaces a new cluster has.
DEFAULT_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")


async def _create_namespaces(handlers: Handlers) -> None:
    for name in DEFAULT_NAMESPACES:
        if await handlers.objects.get(NAMESPACE, None, name) is None:
            obj = prepare_create(
                NAMESPACE,
                {"metadata": {"name": name}},
                namespace=None,
                manager="kube-apiserver",
                moment=now(),
            )
            call = Call(resource=NAMESPACE, namespace=None, name=None, subresource=None, query={})
            await handlers.objects.create(
                NAMESPACE, None, name, handlers.checked(call, obj, None)[0]
            )


async def serve_kubeapi(
    endpoints: Sequence[str],
    prefix: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    bookmark_interval: float = BOOKMARK_INTERVAL,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Kubernetes API double on ``host:port`` with its objects under ``/PREFIX/`` of
    the etcd whose members are ``endpoints`` (``http://HOST:PORT``); reports its URL."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("tests.kubeapi.hypercorn")
    config.include_server_header = False
    async with open_etcd_client(endpoints) as client:
        handlers = Handlers(EtcdObjects(client, prefix))
        await _create_namespaces(handlers)
        app = KubeApp(handlers, bookmark_interval=bookmark_interval)
        async with trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(app, config, task_status=task_status)  # type: ignore[arg-type]

            binds: list[str] = await nursery.start(run)
            task_status.started(binds[0])
