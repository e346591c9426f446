"""``serve_replica``: one replica directory served over protocol v1 until cancelled.

The same function runs as ``lhtrio replica`` in the foreground and (later) as a task of the node.
Opening, creating and closing touch the disk with fsyncs, so they run in a worker thread. Close is
shielded with its own deadline: a cancelled server still flushes and records ``Dirty=false``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import NoReturn

import trio

from lhtrio.errors import InvalidArgumentError
from lhtrio.net import Address, serve_rpc_at
from lhtrio.net.listeners import open_listeners, remove_unix_socket
from lhtrio.replica.mounts import power_loss_warning
from lhtrio.replica.service import ReplicaService
from lhtrio.replica.store import Replica
from lhtrio.wire import ZERO, Identity, Role

__all__ = ["open_or_create", "serve_replica"]

logger = logging.getLogger(__name__)

CLOSE_DEADLINE = 30.0
DEFAULT_LISTEN = Address(host="127.0.0.1", port=0)


def open_or_create(path: str, *, size: int | None, volume: str, instance: str) -> Replica:
    """Open the replica in ``path``; create it first when the directory is missing or empty."""
    if not os.path.isdir(path) or not os.listdir(path):
        if size is None:
            raise InvalidArgumentError(f"{path} holds no replica yet: give its size to create one")
        return Replica.create(path, size=size, volume=volume, instance=instance)
    replica = Replica.open(path, volume=volume, instance=instance)
    if size is not None and size != replica.size:
        replica.close()
        raise InvalidArgumentError(
            f"replica {path} is {replica.size} bytes, not {size}: expand it through the engine"
        )
    return replica


async def serve_replica(
    path: str,
    *,
    size: int | None,
    volume: str,
    instance: str,
    listen: Address = DEFAULT_LISTEN,
    threaded: bool = False,
    local: bool = True,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Open (or create) the replica in ``path`` and serve it on ``listen`` until cancelled.

    ``listen`` is TCP (port 0 picks one) or a Unix socket (for an engine on the same host).
    Reports the address clients connect to (``tcp://HOST:PORT`` or ``unix:PATH``) once listening.
    Cancellation: stops serving, then closes the replica cleanly (flush, counter, Dirty=false)
    inside a shielded scope of ``CLOSE_DEADLINE`` seconds.

    ``threaded``: serve each connection's data path from a thread of its own
    (:mod:`lhtrio.net.threaded`). For a replica with a process of its own (``lhtrio replica``):
    about 100 µs less per 4 KiB write at queue depth 1. Not where the event loop is busy with
    other instances (a node): the threads and the loop then contend for the GIL, measured at
    half the IOPS of 8 volumes driven at once in one node.

    ``local`` (TCP only): also answer on a same-host Unix socket, offered to engines on this host
    in the hello (:func:`lhtrio.net.server._serve`).
    """
    # Listen first: an address in use is refused before the directory is created or opened.
    listening = await open_listeners(listen)
    try:
        replica = await trio.to_thread.run_sync(
            functools.partial(open_or_create, path, size=size, volume=volume, instance=instance)
        )
    except BaseException:
        for listener in listening[0]:
            await listener.aclose()
        remove_unix_socket(listen)
        raise
    served = False
    try:
        async with trio.open_nursery() as nursery:
            service = ReplicaService(replica, nursery)
            bound = await nursery.start(
                functools.partial(
                    serve_rpc_at,
                    listen,
                    service,
                    identity=Identity(
                        volume=volume,
                        instance=instance,
                        role=Role.REPLICA,
                        unnamed=False,
                        features=(ZERO,),
                    ),
                    threaded=threaded,
                    local=local,
                    listening=listening,
                )
            )
            served = True
            logger.info("replica %s of volume %s serving %s on %s", instance, volume, path, bound)
            if (warning := power_loss_warning(path)) is not None:
                logger.warning("%s", warning)
            task_status.started(bound)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_DEADLINE):
            if not served:  # cancelled before serve_rpc_at took the listeners (it closes them)
                for listener in listening[0]:
                    await listener.aclose()
                remove_unix_socket(listen)
            await trio.to_thread.run_sync(replica.close)
            logger.info("replica %s closed cleanly", instance)
    raise AssertionError("serve_rpc returned")  # pragma: no cover
