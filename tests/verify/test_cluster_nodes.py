"""Whole nodes of the real control plane killed and stopped under the checker's workload.

Three ``lhtrio node`` processes on one SQLite store (tests/manager/test_cluster_processes.py's
cluster); a 3-replica volume attached on n1; the checker's writers on its NBD endpoint the whole
time, following the volume when it moves. n3 is SIGKILLed (degraded) and comes back (rebuilt in
place); n2 is SIGSTOPped for a moment (within the replica timeout: nothing is lost, nothing
failed); n1 — the engine's node — is SIGKILLed, the volume is attached on n2 as a workload that
moves would have it, n1 comes back. After each fault the volume is read back while the writers
go on and checked as of then; at the end, healthy again, it is read back twice and checked, and
the two read-backs must agree.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from lhtrio.manager import tickets
from lhtrio.manager.volume_control import FINALIZER
from lhtrio.models.cluster import Engine, ObjectMeta, Volume
from lhtrio.models.cluster.volume import Robustness, VolumeSpec, VolumeState
from lhtrio.verify.model import History, Violation, check, unstable
from lhtrio.verify.nbd import NbdTarget, parse_uri
from lhtrio.verify.workload import Progress, WorkloadConfig, probe, read_back, run_writers
from tests.manager.test_cluster_processes import attach, cluster, healthy_on, until

pytestmark = pytest.mark.real

BLOCKS = 2048  # 8 MiB of the 16 MiB volume


async def test_whole_nodes_killed_and_stopped_lose_no_flushed_write(tmp_path: Path) -> None:
    async with cluster(tmp_path, f"sqlite:{tmp_path / 'store.db'}") as c:
        await c.objects.create(
            Volume(
                meta=ObjectMeta(name="v", finalizers=(FINALIZER,)),
                spec=VolumeSpec(size=16 << 20, number_of_replicas=3),
            )
        )
        await until(c, Volume, "v", lambda v: v.status.state is VolumeState.DETACHED)
        where = [parse_uri(await attach(c, "n1"))]
        _, multi_conn = await probe(where[0], BLOCKS)
        history = History(run=21, blocks=BLOCKS, multi_conn=multi_conn)
        config = WorkloadConfig(blocks=BLOCKS, writers=2, depth=4, max_run=4, seed=21)
        violations: list[Violation] = []

        def target() -> NbdTarget:
            return where[0]

        async def checked_now() -> None:
            as_of = history.clock
            reads = await read_back(where[0], BLOCKS, patience=120)
            violations.extend(check(history, reads, as_of=as_of).violations)

        async def acked_flushes(more: int) -> None:
            """Until ``more`` flushes more were answered (the writers really write)."""
            goal = sum(f.acked <= history.clock for f in history.flushes) + more
            with trio.fail_after(60):  # polled: the writers' progress
                while sum(f.acked <= history.clock for f in history.flushes) < goal:  # noqa: ASYNC110
                    await trio.sleep(0.05)

        stop = trio.Event()
        progress = Progress()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_writers, target, history, config, stop, progress)
            await acked_flushes(5)

            c.kill("n3")
            await until(c, Volume, "v", lambda v: v.status.robustness is Robustness.DEGRADED)
            await acked_flushes(5)
            await checked_now()
            await c.start("n3", 2)
            await until(c, Volume, "v", healthy_on("n1"))
            await checked_now()

            n2, _ = c.nodes["n2"]
            n2.process.send_signal(signal.SIGSTOP)
            await trio.sleep(1.0)  # well within the engine's 8 s replica timeout
            n2.process.send_signal(signal.SIGCONT)
            await acked_flushes(5)
            await checked_now()

            c.kill("n1")  # the engine's node: the writers lose the volume
            await tickets.remove_ticket(c.objects, "v")
            await tickets.add_ticket(c.objects, "v", "n2")
            moved = await until(
                c,
                Volume,
                "v",
                lambda v: (
                    v.status.state is VolumeState.ATTACHED and v.status.current_node_id == "n2"
                ),
            )
            assert moved.status.robustness is Robustness.DEGRADED
            engine = await c.objects.get(Engine, "v-e-0")
            where[0] = parse_uri(engine.status.endpoint)  # the writers reconnect there
            await acked_flushes(5)
            await checked_now()
            await c.start("n1", 0)
            await until(c, Volume, "v", healthy_on("n2"))
            await acked_flushes(5)
            stop.set()

        first = await read_back(where[0], BLOCKS)
        second = await read_back(where[0], BLOCKS, chunk=4)
        violations.extend(check(history, first).violations)
        violations.extend(check(history, second).violations)
        violations.extend(unstable(first, second, history))
        assert violations == []
        report = check(history, second)
        assert report.durable_writes > 200
        assert progress.connections >= 3  # every writer reconnected after n1 was lost
        assert progress.broken >= 1
