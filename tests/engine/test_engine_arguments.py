"""The engine's control calls: whatever a client sends is refused cleanly or done (issue 16).

A real engine over two real replicas, in process, driven through its control endpoint with
arbitrary sequences of calls and arguments. Every call either succeeds or is refused with
INVALID_ARGUMENT (NOT_FOUND, ALREADY_EXISTS, CONFLICT where it names something that does not
exist, exists, or cannot be done now) — never INTERNAL — and no request, however bad, fails a
replica: afterwards every replica still in the volume is RW, and every replica directory closes
and reopens.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lhtrio.engine.server import serve_engine
from lhtrio.engine.volume import Volume
from lhtrio.errors import (
    AlreadyExistsError,
    ConflictError,
    HandshakeError,
    InvalidArgumentError,
    NotFoundError,
)
from lhtrio.net import Address, open_rpc_client
from lhtrio.replica.server import serve_replica
from lhtrio.replica.store import Replica
from lhtrio.wire import Role

MiB = 1 << 20
SIZE = 4 * MiB
#: Refusals that name the request's fault (HandshakeError: an address where something else
#: than this volume's replica answers).
REFUSALS = (InvalidArgumentError, NotFoundError, AlreadyExistsError, ConflictError, HandshakeError)
NAMES = ("r0", "r1")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two replicas of volume v with a snapshot s1 (taken through an engine: both agree)."""
    base = tmp_path_factory.mktemp("engine-args")
    for name in NAMES:
        with Replica.create(str(base / name), size=SIZE, volume="v", instance=name) as r:
            r.write(0, b"a" * 8192)
            r.snapshot("s1", created="2026-11-22T10:00:00Z", labels={"app": "db"})
            r.write(MiB, b"b" * 4096)
    return base


async def _no_frontend(
    volume: Volume,
    *,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started("none://")
    await shutdown.wait()


async def drive(base: Path, sequence: list[tuple[str, dict[str, Any]]]) -> None:
    async with trio.open_nursery() as nursery:
        addresses = [
            await nursery.start(
                functools.partial(
                    serve_replica,
                    str(base / name),
                    size=None,
                    volume="v",
                    instance=name,
                    listen=Address(host="127.0.0.1", port=0),
                )
            )
            for name in NAMES
        ]
        stop = trio.Event()
        async with trio.open_nursery() as engine:
            host, port, _ = await engine.start(
                functools.partial(
                    serve_engine, "v", SIZE, addresses, frontend=_no_frontend, stop=stop
                )
            )
            async with open_rpc_client(f"{host}:{port}", role=Role.ENGINE) as client:
                for name, given in sequence:
                    args = {k: (addresses[0] if v == "@replica" else v) for k, v in given.items()}
                    try:
                        with trio.fail_after(30):
                            await client.call_control(name, **args)
                    except REFUSALS:
                        pass  # refused cleanly; anything else (INTERNAL) fails the test
                info = await client.call_control("info")
            modes = {r["address"]: (r["mode"], r["error"]) for r in info["replicas"]}
            assert all(mode == "RW" for mode, _ in modes.values()), modes
            stop.set()  # the engine stops (and flushes) before its replicas do
        nursery.cancel_scope.cancel()


# (No host names: resolving one would ask DNS, which is not what is tested.)
addresses = st.sampled_from(
    ["@replica", "127.0.0.1:1", "unix:/nonexistent/r.sock", "tcp://127.0.0.1:0", "", "x", "::"]
) | st.text(alphabet=st.characters(blacklist_characters=":"), max_size=30)
names = st.sampled_from(
    ["s1", "s2", "", "../x", "a/b", "-x", "x" * 65, "\U0001f600" * 60]
) | st.text(max_size=70)
labels = st.sampled_from([{}, {"app": "db"}, {"k": "\x00" * 1000}, {"": "v"}]) | st.dictionaries(
    st.text(max_size=10), st.text(max_size=10), max_size=3
)
# (Integers msgpack can carry: the client could not even send others.)
integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
anything = st.none() | st.booleans() | integers | st.text(max_size=10) | st.binary(max_size=8)
sizes = (
    st.sampled_from([SIZE, SIZE + 4096, 2 * SIZE, SIZE - 4096, 10**9, 1 << 62, -1, 0]) | anything
)
waits = st.floats(min_value=0, max_value=0.2, allow_nan=False) | anything

CALLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "info": ({}, {}),
    "snapshot_create": ({}, {"name": names, "labels": labels}),
    "snapshot_ls": ({}, {}),
    "snapshot_rm": ({"name": names}, {}),
    "snapshot_purge": ({}, {}),
    "snapshot_revert": ({"name": names}, {}),
    "frontend_stop": ({}, {}),
    "frontend_start": ({}, {}),
    "expand": ({"size": sizes}, {}),
    "replica_ls": ({}, {}),
    "replica_rm": ({"address": addresses}, {}),
    "replica_add": ({"address": addresses}, {}),
    "rebuild_status": ({}, {"wait": waits}),
    "salvage": ({}, {}),
}


def arguments(name: str) -> st.SearchStrategy[dict[str, Any]]:
    required, optional = CALLS[name]
    good = st.fixed_dictionaries(dict(required), optional=dict(optional))
    extra = st.dictionaries(st.text(max_size=8), anything, min_size=1, max_size=2)
    return good | st.builds(lambda g, e: {**g, **e}, good, extra) | extra


calls = st.lists(
    st.sampled_from(sorted(CALLS)).flatmap(lambda n: st.tuples(st.just(n), arguments(n))),
    min_size=1,
    max_size=6,
)


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=calls)
@example(sequence=[("snapshot_create", {"name": "\U0001f600" * 60})])
@example(sequence=[("snapshot_create", {"name": "t", "labels": {"a": "\x01" * 10**5}})])
@example(sequence=[("snapshot_create", {"name": "s1"})])
@example(
    sequence=[("replica_rm", {"address": "@replica"}), ("replica_add", {"address": "127.0.0.1:1"})]
)
@example(sequence=[("frontend_stop", {}), ("snapshot_revert", {"name": "../../etc"})])
@example(sequence=[("expand", {"size": SIZE + 1})])
def test_any_engine_call_is_refused_cleanly_and_fails_no_replica(
    template: Path, sequence: list[tuple[str, dict[str, Any]]]
) -> None:
    with tempfile.TemporaryDirectory(prefix="lhtrio-engine-args-") as scratch:
        base = Path(scratch)
        for name in NAMES:
            shutil.copytree(template / name, base / name)
        trio.run(drive, base, sequence)
        for name in NAMES:
            with Replica.open(str(base / name), volume="v", instance=name) as again:
                assert not again.failed


def test_the_strategies_cover_every_engine_call() -> None:
    from lhtrio.engine.service import EngineService

    nothing: Any = None
    assert {spec.name for spec in EngineService(nothing, nothing).table} == set(CALLS)
