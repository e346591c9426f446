"""One simulated fault schedule on the data path: a volume, its replicas, its engine, a client.

Everything is the product's own code in one trio run (:func:`lhtrio.sim.determinism.run_seeded`):
``serve_replica`` on three simulated hosts (files in a directory of their own), ``serve_engine``
on a fourth over the simulated network (:mod:`lhtrio.sim.network`), reaching its replicas with
its real links. Only the frontend is stubbed, at its protocol boundary: instead of an NBD
server, the engine's :class:`~lhtrio.engine.frontend.Frontend` is the simulated client itself,
calling the engine's ``Volume`` (``write_batch``, ``flush``, ``read_batch``: what the NBD server
calls), and dying with the engine as an NBD connection would.

**A schedule** (every choice and every duration drawn from the seed):

1. The replicas start; the engine starts with all three; the client writes stamped blocks
   (:mod:`lhtrio.verify.model`) from a few concurrent writers and flushes now and then,
   recording every invocation and reply in a ``History``.
2. Faults come one after another: a replica killed and started again (the engine is then asked
   to rebuild it: ``replica rm`` + ``replica add``, what the manager would do); the engine killed
   and started again over the same three replicas (it chooses which are current, as after a
   node's crash); a partition between the engine and a replica (shorter or longer than the
   engine's 8 s timeout), healed later; every connection of a link reset; a lossy link. A third
   of the replica kills are **power losses** instead, and a quarter of the engine kills lose the
   power of every host (the engine and the three replicas): the replicas' directories are
   volatile disks (:mod:`lhtrio.sim.disks`), and a power loss leaves them holding only what was
   synced. These choices come from a generator of their own (``lhtrio-sim-power-SEED``).
3. At the end everything is healed and running; the engine is killed once more, or (half of the
   schedules) every host loses power and the replicas start again; a new engine starts over the
   three replicas (the path where a stale replica could be chosen), and every written block is
   read back through it and judged by :func:`lhtrio.verify.model.check`. A replica that does
   not open again after a power loss is a violation.

Not simulated: disk errors, full disks, the NBD protocol itself.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import tempfile
from collections import Counter
from typing import Any, Final

import attrs
import trio

from lhtrio.clients.engine import EngineClient
from lhtrio.engine.server import serve_engine
from lhtrio.engine.volume import Volume
from lhtrio.errors import LhtrioError
from lhtrio.net import Address, open_rpc_client
from lhtrio.net.network import NETWORK
from lhtrio.replica.server import serve_replica
from lhtrio.sim.determinism import run_seeded
from lhtrio.sim.disks import VolatileDisks, volatile_disks
from lhtrio.sim.network import HOST, LinkFaults, SimNetwork
from lhtrio.sim.processes import SimProcess, Trace
from lhtrio.verify.model import NEVER, History, Report, check
from lhtrio.wire import Role

__all__ = ["DataOutcome", "run_data_schedule"]

logger = logging.getLogger(__name__)

VOLUME: Final = "sim-vol"
SIZE: Final = 4 << 20
BLOCKS: Final = 64  # the blocks the client writes (of SIZE // 4096)
ENGINE_HOST: Final = "e1"
REPLICA_HOSTS: Final = ("n1", "n2", "n3")
REPLICA_PORT: Final = 10000


@attrs.frozen(kw_only=True)
class DataOutcome:
    """What one schedule did and what the checker said."""

    seed: int
    faults: dict[str, int]
    writes: int
    acked_writes: int
    durable_writes: int
    checked_blocks: int
    violations: tuple[str, ...]
    unavailable: str  # why the final read-back could not run ("" if it ran)
    trace_hash: str
    sim_seconds: float
    trace: tuple[str, ...] = ()  # the events, if asked for

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unavailable


@attrs.define(eq=False)
class _Client:
    """The simulated client: stamped writes and flushes through the engine's volume."""

    history: History
    rng: random.Random
    trace: Trace
    busy: set[int] = attrs.field(factory=set)
    connections: int = 0  # one per engine it served (an NBD connection dies with its server)

    async def serve(
        self, volume: Volume, *, shutdown: trio.Event, task_status: trio.TaskStatus[str]
    ) -> None:
        task_status.started("sim://client")
        self.connections += 1
        async with trio.open_nursery() as nursery:
            for writer in range(3):
                nursery.start_soon(self._writer, volume, writer, self.connections)
            await shutdown.wait()
            nursery.cancel_scope.cancel()

    async def _writer(self, volume: Volume, writer: int, conn: int) -> None:
        history, rng = self.history, self.rng
        while True:
            await trio.sleep(rng.expovariate(1 / 0.04))
            if rng.random() < 0.15:
                flush = history.invoke_flush(conn=conn)
                try:
                    await volume.flush()
                except LhtrioError as exc:
                    history.fail_flush(flush)
                    self.trace.add(f"flush failed: {type(exc).__name__}")
                else:
                    history.ack_flush(flush)
                continue
            count = rng.choice((1, 1, 2, 4))
            first = rng.randrange(BLOCKS - count + 1)
            span = range(first, first + count)
            if any(b in self.busy for b in span):  # one write per block in flight, as NBD clients
                continue
            self.busy.update(span)
            write = history.invoke_write(writer=writer, first=first, count=count, conn=conn)
            try:
                await volume.write_batch([(first * 4096, history.payload(write), False)])
            except LhtrioError as exc:
                history.fail_write(write)
                self.trace.add(f"write {writer}#{write.stamp.seq} failed: {type(exc).__name__}")
            else:
                history.ack_write(write)
            finally:
                self.busy.difference_update(span)


@attrs.define(eq=False)
class _Cluster:
    net: SimNetwork
    trace: Trace
    rng: random.Random
    nursery: trio.Nursery
    replicas: list[SimProcess]
    engine: SimProcess
    disks: VolatileDisks
    roots: list[str]
    power: random.Random  # which kills are power losses (apart: the other draws stay the same)
    faults: Counter[str] = attrs.field(factory=Counter)
    unopened: list[str] = attrs.field(factory=list)  # replicas that did not open after a loss

    @property
    def addresses(self) -> list[str]:
        return [str(Address(host=h, port=REPLICA_PORT)) for h in REPLICA_HOSTS]

    async def rebuild(self, address: str) -> None:
        """What the manager would do for a replica back from a crash: replace it in the engine."""
        if not self.engine.running:
            return
        host, port, _ = self.engine.started
        try:
            with trio.fail_after(20):
                async with open_rpc_client(
                    Address(host=host, port=port), client="sim", role=Role.ENGINE
                ) as rpc:
                    engine = EngineClient(rpc)
                    links = {link.address: link for link in await engine.replica_ls()}
                    if address in links and links[address].mode.value != "ERR":
                        return
                    if address in links:
                        await engine.replica_rm(address)
                    await engine.replica_add(address)
                    self.trace.add(f"rebuild of {address} started")
        except (LhtrioError, trio.TooSlowError) as exc:
            self.trace.add(f"rebuild of {address} not started: {type(exc).__name__}")

    async def lose_all_power(self) -> None:
        """Every host at once (nobody hears of the others' loss): the disks keep what was
        synced; nothing is started again."""
        for root in self.roots:
            self.disks.power_off(root)
        for process in (self.engine, *self.replicas):
            self.net.crash(process.host)
        for process in (self.engine, *self.replicas):
            await process.kill()
        for root in self.roots:
            self.disks.power_on(root)

    async def start_replica(self, i: int, *, after_power_loss: bool) -> None:
        replica = self.replicas[i]
        if await replica.start(self.nursery) is None and after_power_loss:
            self.unopened.append(f"replica {replica.host} did not open after a power loss: "
                                 f"{replica.error}")  # fmt: skip

    async def inject(self) -> None:
        rng, net = self.rng, self.net
        kind = rng.choice(
            ("kill-replica", "kill-replica", "kill-engine", "partition", "partition", "reset",
             "loss")
        )  # fmt: skip
        if kind == "kill-replica" and self.power.random() < 1 / 3:
            kind = "power-loss"
        elif kind == "kill-engine" and self.power.random() < 1 / 4:
            kind = "power-loss-all"
        self.faults[kind] += 1
        i = rng.randrange(len(REPLICA_HOSTS))
        host = REPLICA_HOSTS[i]
        self.trace.add(f"fault {kind} {host if 'engine' not in kind else ENGINE_HOST}")
        if kind in ("kill-replica", "power-loss"):
            if kind == "power-loss":
                self.disks.power_off(self.roots[i])
            await self.replicas[i].kill()
            if kind == "power-loss":
                self.disks.power_on(self.roots[i])
            await trio.sleep(rng.uniform(0.5, 6))
            await self.start_replica(i, after_power_loss=kind == "power-loss")
            await self.rebuild(self.addresses[i])
        elif kind == "kill-engine":
            await self.engine.kill()
            await trio.sleep(rng.uniform(0.1, 3))
            await self.engine.start(self.nursery)
        elif kind == "power-loss-all":
            await self.lose_all_power()
            await trio.sleep(rng.uniform(0.1, 3))
            for n in range(len(self.replicas)):
                await self.start_replica(n, after_power_loss=True)
            await self.engine.start(self.nursery)
        elif kind == "partition":
            net.partition(ENGINE_HOST, host, both=rng.random() < 0.7)
            await trio.sleep(rng.choice((rng.uniform(0.1, 4), rng.uniform(8, 20))))
            net.heal(ENGINE_HOST, host)
            self.trace.add(f"healed {ENGINE_HOST}-{host}")
            await self.rebuild(self.addresses[i])
        elif kind == "reset":
            net.reset(ENGINE_HOST, host)
            await trio.sleep(rng.uniform(0.5, 3))
            await self.rebuild(self.addresses[i])
        else:
            net.links[(ENGINE_HOST, host)] = LinkFaults(loss=0.3, retransmit=rng.uniform(0.1, 3))
            await trio.sleep(rng.uniform(1, 10))
            del net.links[(ENGINE_HOST, host)]
            await self.rebuild(self.addresses[i])


def _engine(replicas: list[str], frontend: Any, *, task_status: trio.TaskStatus[Any]) -> Any:
    return serve_engine(
        VOLUME, SIZE, replicas, host=ENGINE_HOST, frontend=frontend, local=False,
        task_status=task_status,
    )  # fmt: skip


def _replica(directory: str, host: str, *, task_status: trio.TaskStatus[str]) -> Any:
    return serve_replica(
        directory, size=SIZE, volume=VOLUME, instance=f"{VOLUME}-r-{host}",
        listen=Address(host=host, port=REPLICA_PORT), local=False, task_status=task_status,
    )  # fmt: skip


async def _read_back(
    history: History, trace: Trace, cluster: _Cluster, *, power_loss: bool
) -> Report | str:
    """Kill the engine (or, with ``power_loss``, cut every host's power and start the replicas
    again), start a fresh one over the three replicas, read every block."""
    result: list[Report | str] = []

    async def reader(
        volume: Volume, *, shutdown: trio.Event, task_status: trio.TaskStatus[str]
    ) -> None:
        task_status.started("sim://reader")
        try:
            data = await volume.read_batch([(b * 4096, 4096) for b in range(BLOCKS)])
        except LhtrioError as exc:
            result.append(f"final read failed: {exc}")
        else:
            result.append(check(history, {b: bytes(d) for b, d in enumerate(data)}))
        done.set()
        await shutdown.wait()

    done = trio.Event()
    if power_loss:
        cluster.trace.add("final power loss")
        await cluster.lose_all_power()
        for n in range(len(cluster.replicas)):
            await cluster.start_replica(n, after_power_loss=True)
    else:
        await cluster.engine.kill()
    final = SimProcess(
        "engine-final", ENGINE_HOST, cluster.net, trace,
        functools.partial(_engine, cluster.addresses, reader),
    )  # fmt: skip
    if await final.start(cluster.nursery) is None:
        return f"the final engine did not start: {final.error}"
    with trio.move_on_after(60):
        await done.wait()
    await final.kill()
    return result[0] if result else "the final read did not finish within 60 s"


def run_data_schedule(
    seed: int, *, duration: float = 30.0, root: str | None = None, trace: bool = False
) -> DataOutcome:
    """Run schedule ``seed`` (about ``duration`` simulated seconds of faults); replica files go
    to a fresh directory under ``root`` (default: /dev/shm if it exists, else the temp dir)."""
    with (
        tempfile.TemporaryDirectory(prefix=f"lhtrio-sim-{seed}-", dir=root or _shm()) as tmp,
        volatile_disks(_roots(tmp), f"{tmp}/durable") as disks,
    ):
        outcome = run_seeded(seed, functools.partial(_schedule, seed, duration, tmp, disks))
    return outcome if trace else attrs.evolve(outcome, trace=())


def _roots(tmp: str) -> list[str]:
    return [f"{tmp}/{h}" for h in REPLICA_HOSTS]


def _shm() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


async def _schedule(seed: int, duration: float, tmp: str, disks: VolatileDisks) -> DataOutcome:
    rng = random.Random(f"lhtrio-sim-data-{seed}")
    net = SimNetwork(random.Random(f"lhtrio-sim-net-{seed}"))
    NETWORK.set(net)
    HOST.set(ENGINE_HOST)
    trace = Trace()
    history = History(run=seed & 0xFFFFFFFF, blocks=BLOCKS)
    client = _Client(history, random.Random(f"lhtrio-sim-client-{seed}"), trace)
    async with trio.open_nursery() as nursery:
        roots = _roots(tmp)
        replicas = [
            SimProcess(f"replica-{h}", h, net, trace, functools.partial(_replica, root, h))
            for h, root in zip(REPLICA_HOSTS, roots, strict=True)
        ]
        addresses = [str(Address(host=h, port=REPLICA_PORT)) for h in REPLICA_HOSTS]
        engine = SimProcess(
            "engine", ENGINE_HOST, net, trace, functools.partial(_engine, addresses, client.serve)
        )
        power = random.Random(f"lhtrio-sim-power-{seed}")
        cluster = _Cluster(net, trace, rng, nursery, replicas, engine, disks, roots, power)
        for replica in replicas:
            await replica.start(nursery)
        await engine.start(nursery)
        end = trio.current_time() + duration
        while trio.current_time() < end:
            await trio.sleep(rng.expovariate(1 / 2.0))
            await cluster.inject()
        net.heal()
        for replica in replicas:
            if not replica.running:
                await replica.start(nursery)
        final_power_loss = power.random() < 1 / 2
        if final_power_loss:
            cluster.faults["power-loss-all"] += 1
        outcome = await _read_back(history, trace, cluster, power_loss=final_power_loss)
        for replica in replicas:
            await replica.kill()
        nursery.cancel_scope.cancel()
    common: dict[str, Any] = {"seed": seed, "faults": dict(cluster.faults)}
    if isinstance(outcome, Report):
        violations = tuple(
            f"block {v.block}: {v.kind.value}: {v.detail}" for v in outcome.violations
        ) + tuple(cluster.unopened)
        for v in violations:
            trace.add(f"violation {v}")
        common.update(
            writes=outcome.writes,
            acked_writes=outcome.acked_writes,
            durable_writes=outcome.durable_writes,
            checked_blocks=outcome.blocks,
            violations=violations,
            unavailable="",
        )
    else:
        trace.add(f"unavailable: {outcome}")
        common.update(
            writes=len(history.writes),
            acked_writes=sum(w.acked != NEVER for w in history.writes),
            durable_writes=0,
            checked_blocks=0,
            violations=tuple(cluster.unopened),
            unavailable=outcome,
        )
    return DataOutcome(
        **common,
        trace_hash=trace.digest(),
        sim_seconds=trio.current_time(),
        trace=tuple(trace.lines),
    )
