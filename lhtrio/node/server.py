"""``serve_node``: one process per Kubernetes node, supervising that node's engines and replicas.

Composition (each part in its own module):

* a control endpoint (protocol v1, :mod:`lhtrio.instances.service`) for the instance-manager API;
* one NBD listener for every engine on the node (an
  :class:`~lhtrio.frontend.nbd.server.ExportRegistry`: ``nbd://NODE:10809/VOLUME``), so a node
  needs one NBD port, not one per volume;
* the supervisor (:mod:`lhtrio.instances.supervisor`) whose nursery runs every instance in its own
  shielded cancel scope;
* per-instance logs (:mod:`lhtrio.instances.logs`) and disks with identities
  (:mod:`lhtrio.instances.disks`);
* with a store: the node agent, the manager, and the events of its engines' replica modes
  (:mod:`lhtrio.manager.engine_events`); a probe for the node's admin API
  (:mod:`lhtrio.node.probe`).

Shutdown (SIGTERM/SIGINT cancel the caller's scope): the listeners stop accepting at once; then,
shielded, every engine stops — its frontend after in-flight requests, then a flush of its
replicas — and after that every replica closes cleanly (flush, counter, ``Dirty=false``), all
within ``grace`` seconds. A node killed with SIGKILL leaves replica directories that reopen:
starting the same replica instances again (same names) finds them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import trio

from lhtrio.frontend.nbd.server import ExportRegistry, serve_nbd_registry
from lhtrio.instances.disks import open_disk
from lhtrio.instances.logs import InstanceLogs
from lhtrio.instances.ports import PortRange
from lhtrio.instances.service import NodeService
from lhtrio.instances.supervisor import NodeContext, Supervisor
from lhtrio.manager.engine_events import follow_engine_events
from lhtrio.manager.manager import run_manager
from lhtrio.manager.node_agent import run_node_agent
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Store
from lhtrio.net import Address, serve_rpc
from lhtrio.node.disks import NodeDisks
from lhtrio.node.probe import NodeProbe
from lhtrio.replica.names import validate_name
from lhtrio.wire import Identity, Role

__all__ = ["serve_node", "DEFAULT_NBD_PORT", "DEFAULT_PORT_RANGE"]

logger = logging.getLogger(__name__)

DEFAULT_NBD_PORT = 10809
DEFAULT_PORT_RANGE = (10000, 10999)
GRACE = 30.0


async def serve_node(
    name: str,
    data_dir: str,
    *,
    disks: Sequence[str] = (),
    host: str = "127.0.0.1",
    listen: Address | None = None,
    nbd: Address | None = None,
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
    grace: float = GRACE,
    keep_log_lines: int = 1000,
    store: Store | None = None,
    probe: NodeProbe | None = None,
    task_status: trio.TaskStatus[tuple[str, str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run node ``name`` until cancelled; reports (control address, NBD address).

    Instances bind ``host`` (the address the node advertises); the control endpoint binds
    ``listen`` (default ``host``, any port) and the NBD listener ``nbd`` (default ``host``:10809);
    port 0 picks a free one. With a ``store`` the node joins the control plane: it registers
    its ``Node`` and its disks there and keeps its lease (:mod:`lhtrio.manager.node_agent`);
    disks added to its Node through the API are opened then (:mod:`lhtrio.node.disks`).
    ``probe`` (for the node's admin API: :mod:`lhtrio.node.probe`) is given the supervisor once
    it runs, and told when the node shuts down.
    """
    listen = listen or Address(host=host, port=0)
    nbd_at = nbd or Address(host=host, port=DEFAULT_NBD_PORT)
    validate_name(name, what="node")
    opened = [await trio.to_thread.run_sync(open_disk, path) for path in (data_dir, *disks)]
    logs = InstanceLogs(keep=keep_log_lines)
    logs.install()
    registry = ExportRegistry()
    try:
        async with trio.open_nursery() as outer:
            nbd_bound = await outer.start(serve_nbd_registry, nbd_at, registry)
            ctx = NodeContext(
                host=host,
                ports=PortRange(*port_range),
                registry=registry,
                nbd=nbd_bound,
                disks=opened,
                logs=logs,
            )
            async with trio.open_nursery() as instances:
                supervisor = Supervisor(ctx, instances)
                service = NodeService(name, supervisor)
                bound = await outer.start(
                    functools.partial(
                        serve_rpc,
                        service,
                        listen.host,
                        listen.port,
                        identity=Identity(instance=f"node-{name}", role=Role.NODE),
                    )
                )
                service.address = f"tcp://{bound[0]}:{bound[1]}"
                if store is not None:
                    given = tuple(d.path for d in opened)
                    agent = functools.partial(
                        run_node_agent, store, name, NodeDisks(ctx, supervisor, given)
                    )
                    await outer.start(agent)
                    await outer.start(run_manager, store, name, service.address)
                    # (beside the manager: its engines' replica modes, told as events)
                    outer.start_soon(follow_engine_events, Objects(store), name)
                logger.info(
                    "node %s: control on %s, NBD on %s, ports %d-%d, disks %s",
                    name,
                    service.address,
                    nbd_bound,
                    *port_range,
                    ", ".join(f"{d.path} ({d.uuid})" for d in opened),
                )
                if probe is not None:
                    probe.supervisor = supervisor
                task_status.started((service.address, str(nbd_bound)))
                try:
                    await trio.sleep_forever()
                finally:
                    if probe is not None:
                        probe.stopping = True
                    outer.cancel_scope.cancel()  # stop accepting; the instances are shielded
                    with trio.CancelScope(shield=True):
                        await supervisor.shutdown(grace)
                    logger.info("node %s: every instance stopped", name)
    finally:
        logs.uninstall()
