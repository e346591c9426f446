"""What operators and their tools watch: health probes, Prometheus metrics, events.

* ``GET /healthz``: 200 ``ok`` while the process serves HTTP (Kubernetes' liveness probe).
* ``GET /readyz``: 200 ``ok`` when the store answers a cheap read within :data:`READY_TIMEOUT`
  and the node supervises its instances; otherwise 503 with the reason (readiness probe). Both
  are open without a token, as probes are (:data:`lhtrio.api.access.PUBLIC`).
* ``GET /metrics``: Prometheus' text format (:mod:`lhtrio.api.metrics`); a read like any other
  (the token, unless reads are anonymous).
* ``GET /v1/events`` (``?kind=KIND&name=NAME`` keep the events about one object,
  ``?labelSelector=`` as every collection) and ``GET /v1/volumes/NAME/events``: the events kept
  (:mod:`lhtrio.manager.events`), newest last.

The API knows its node through :class:`NodeFacts` (the node passes a
:class:`~lhtrio.node.probe.NodeProbe`): plain records, no engine imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector
from quart import Response, request
from quart_trio import QuartTrio

from lhtrio.api.metrics import RateKeeper, Scrape, families
from lhtrio.api.query import collection_filter
from lhtrio.api.responses import checked_name, collection, listed
from lhtrio.errors import LhtrioError, NotFoundError
from lhtrio.manager import events
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.codec import to_document
from lhtrio.models.cluster import Engine, Node, Replica, Volume
from lhtrio.models.names import validate_volume_name
from lhtrio.models.stats import EngineSample

__all__ = ["METRICS_CONTENT_TYPE", "READY_TIMEOUT", "NodeFacts", "add_observe_routes"]

#: The classic text format, which every Prometheus reads (what prometheus-client's own server
#: answers a scraper that asks for nothing else).
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: How long /readyz waits for the store (seconds).
READY_TIMEOUT: Final = 2.0


class NodeFacts(Protocol):
    """What the API reads of the node it runs in (:class:`lhtrio.node.probe.NodeProbe`)."""

    @property
    def name(self) -> str: ...

    def unready(self) -> str:
        """Why the node does not supervise its instances, or ``""``."""
        ...

    def engines(self) -> Sequence[EngineSample]:
        """The node's running engines, read now."""
        ...


class _Fixed:
    """A collector of metrics already built (this scrape's)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def _text(body: str, status: int = 200) -> Response:
    return Response(body + "\n", status=status, content_type="text/plain; charset=utf-8")


def add_observe_routes(app: QuartTrio, objects: Objects, node: NodeFacts | None) -> None:
    keeper = RateKeeper()

    @app.get("/healthz")
    async def healthz() -> Response:
        return _text("ok")

    @app.get("/readyz")
    async def readyz() -> Response:
        why = node.unready() if node is not None else ""
        if not why:
            try:
                with trio.fail_after(READY_TIMEOUT):
                    await objects.store.get(Node.KIND, node.name if node is not None else "readyz")
            except NotFoundError:
                pass  # an answer all the same
            except trio.TooSlowError:
                why = f"the store did not answer within {READY_TIMEOUT:g} s"
            except LhtrioError as exc:
                why = f"the store failed: {exc.message}"
        if why:
            return _text(f"not ready: {why}", 503)
        return _text("ok")

    @app.get("/metrics")
    async def metrics() -> Response:
        volumes, _ = await objects.list(Volume)
        nodes, _ = await objects.list(Node)
        replicas, _ = await objects.list(Replica)
        engines, _ = await objects.list(Engine)
        samples = list(node.engines()) if node is not None else []
        stats = trio.lowlevel.current_statistics()
        scrape = Scrape(
            node=node.name if node is not None else None,
            volumes=volumes,
            nodes=nodes,
            replicas=replicas,
            engines=engines,
            samples=samples,
            tasks_living=stats.tasks_living,
            tasks_runnable=stats.tasks_runnable,
        )
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="lhtrio", registry=registry)
        registry.register(_Fixed(families(scrape, keeper.rates(samples, trio.current_time()))))
        return Response(generate_latest(registry), content_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/events")
    async def list_events() -> Response:
        keep = collection_filter(request.path, request.args)  # bad filters: 400 before reading
        return listed(await events.events_of(objects), keep)

    @app.get("/v1/volumes/<name>/events")
    async def volume_events(name: str) -> Response:
        checked_name(validate_volume_name, name)
        await objects.get(Volume, name)  # 404 for no such volume
        kept = await events.events_of(objects, kind=Volume.KIND, name=name)
        return collection([to_document(e) for e in kept])
