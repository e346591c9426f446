"""Property checks of the served API against its OpenAPI document (schemathesis): for every
operation, requests generated from the document — valid ones and ones that break it, on names
that exist and names that do not — are answered without a 5xx but the 503s the document lists,
with a documented status, content type and body.

The API is served for real (hypercorn on a free loopback port, in a thread of its own running
trio) over an in-memory store holding two nodes, two volumes with a replica, an engine and an
attachment; no node runs, so the operations that need an engine answer 503, as documented.
Deterministic (hypothesis derandomized) and small (:data:`EXAMPLES` per operation and mode) so
the whole run takes seconds.

Watch streams are left out, on purpose: a stream never ends by itself (it lasts as long as its
client wants it), and a property check waits for a whole answer. So ``GET /v1/watch`` (nothing
but a stream) is not generated, and a collection's request that would start one (``?watch=``
``true``, ``1`` or empty, or a value that is not text) asks for the list instead
(:func:`listing_only`); a ``watch`` value the API refuses is still sent. The streams are checked
by ``test_watch.py`` with the real ``curl -N``, and their refusals (401, 503, 400) by
``test_every_route.py`` and ``test_watch.py``.
"""

from __future__ import annotations

import datetime as dt
import functools
import queue
import threading
from collections.abc import Iterator
from typing import Any, Final

import hypothesis
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lhtrio.api import serve_api
from lhtrio.api.openapi import STREAM_MEDIA, openapi_document
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.memory import MemoryStore
from lhtrio.manager.tickets import add_ticket
from lhtrio.models.cluster import Engine, Node, ObjectMeta, Replica, Volume
from lhtrio.models.cluster.engine import EngineSpec
from lhtrio.models.cluster.node import DiskSpec, NodeSpec
from lhtrio.models.cluster.replica import ReplicaSpec
from lhtrio.models.cluster.volume import VolumeSpec
from tests.api.conftest import AUTH, TOKEN

#: Examples per operation and generation mode (valid, invalid).
EXAMPLES: Final = 25
GiB: Final = 1 << 30
HEALTHY: Final = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Names that exist in the served store, by what the path's {name} names.
EXISTING: Final[dict[str, list[str]]] = {
    "/v1/volumes/{name}": ["v1", "v2"],
    "/v1/replicas/{name}": ["v1-r-00000001", "v2-r-00000001"],
    "/v1/engines/{name}": ["v1-e-0"],
    "/v1/volumeattachments/{name}": ["v1"],
    "/v1/nodes/{name}": ["n1", "n2"],
}


async def _fill(objects: Objects) -> None:
    for name in ("n1", "n2"):
        disks = {f"{name}-disk": DiskSpec(path=f"/var/lib/lhtrio/{name}", allow_scheduling=False)}
        await objects.create(Node(meta=ObjectMeta(name=name), spec=NodeSpec(disks=disks)))
    for name, labels in (("v1", {"app": "db"}), ("v2", {})):
        spec = VolumeSpec(size=GiB, number_of_replicas=2)
        await objects.create(Volume(meta=ObjectMeta(name=name, labels=labels), spec=spec))
        await objects.create(
            Replica(
                meta=ObjectMeta(name=f"{name}-r-00000001"),
                spec=ReplicaSpec(
                    volume_name=name, volume_size=GiB, node_id="n1", healthy_at=HEALTHY
                ),
            )
        )
    await objects.create(
        Engine(meta=ObjectMeta(name="v1-e-0"), spec=EngineSpec(volume_name="v1", volume_size=GiB))
    )
    await add_ticket(objects, "v1", "n1")


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The API's URL, served from a thread running trio until the module's tests are done."""
    urls: queue.Queue[str | BaseException] = queue.Queue()
    stop: list[trio.Event] = []
    tokens: list[trio.lowlevel.TrioToken] = []

    async def serve() -> None:
        objects = Objects(MemoryStore())
        await _fill(objects)
        stop.append(trio.Event())
        tokens.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            url = await nursery.start(
                functools.partial(serve_api, objects, "127.0.0.1", 0, token=TOKEN)
            )
            urls.put(url)
            await stop[0].wait()
            nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:  # shown to the waiting test rather than lost in the thread
            urls.put(exc)

    thread = threading.Thread(target=run, name="api-under-test")
    thread.start()
    try:
        url = urls.get(timeout=60)
        if isinstance(url, BaseException):
            raise url
        yield url
    finally:
        if tokens:
            trio.from_thread.run_sync(stop[0].set, trio_token=tokens[0])
        thread.join(timeout=60)


#: ``?watch=`` values that start a stream (``lhtrio.api.watch``).
STREAMING: Final = frozenset({"true", "1", ""})


def _streams_only(operation: dict[str, Any]) -> bool:
    """Whether ``operation`` answers nothing but a stream when it succeeds."""
    successes = [r for status, r in operation["responses"].items() if status.startswith("2")]
    return all(set(r.get("content", ())) == {STREAM_MEDIA} for r in successes)


def listing_only(case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """``case``, asking for the list where it would have asked for a stream (module docstring)."""
    query = case.query
    if query and "watch" in query:
        value = query["watch"]
        if not isinstance(value, str) or value in STREAMING:
            query["watch"] = "false"
    return case


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation but the streams', with valid requests and (if it takes any input)
    invalid ones."""
    return [
        (method.upper(), path, mode)
        for path, methods in openapi_document()["paths"].items()
        for method, operation in methods.items()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (mode is GenerationMode.POSITIVE or "parameters" in operation)
        and not _streams_only(operation)
    ]


def test_only_the_stream_of_a_kind_is_left_out() -> None:
    checked = {(method, path) for method, path, _ in _operations()}
    every = {(m.upper(), p) for p, ms in openapi_document()["paths"].items() for m in ms}
    assert every - checked == {("GET", "/v1/watch")}


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_the_api_keeps_its_contract(
    served: str, method: str, path: str, mode: GenerationMode
) -> None:
    operation = SCHEMA[path][method]
    strategy = operation.as_strategy(generation_mode=mode, headers=AUTH)
    if path in EXISTING:
        names = EXISTING[path]
        strategy = st.one_of(
            strategy,
            *(
                operation.as_strategy(
                    generation_mode=mode, headers=AUTH, path_parameters={"name": name}
                )
                for name in names
            ),
        )

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=strategy.map(listing_only))
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=served, headers=AUTH, checks=CHECKS, timeout=30)

    check()
