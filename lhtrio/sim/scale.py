"""The control plane at scale, simulated: many nodes, many volumes, a rolling loss of nodes.

Each simulated node runs what ``serve_node`` runs with a store, minus the data path: the node
agent (:func:`~lhtrio.manager.node_agent.run_node_agent`: its ``Node``, its lease) and the
manager (:func:`~lhtrio.manager.manager.run_manager`: every reconciler), the product's own code,
against one shared :class:`~lhtrio.manager.store.memory.MemoryStore`; its instance manager is a
:class:`~lhtrio.sim.stub_node.StubNodeService` on the simulated network (instances are records;
engines report their replicas' modes and rebuild at once). All of it in one trio run on the mock
clock (:func:`lhtrio.sim.determinism.run_seeded`): leases expire and resyncs fire in simulated
time, and a run replays exactly.

**The run** (:func:`run_scale`): the nodes start; ``volumes`` volumes (3 replicas, each attached
to a node, round robin) are created at once; then, one node after another, a node is lost (its
process and its host's connections gone) and comes back ``downtime`` simulated seconds later.
Figures, per phase: simulated seconds to converge, wall seconds, reconciles and store
operations (per simulated and per wall second), and (with ``trace_memory``) the memory held
per node and per object.

*Converged* means: after the creation, every volume attached and healthy; after a loss, every
volume owned by a node that is up, and every volume attached elsewhere that had a replica on the
lost node reported degraded; after the return, every volume healthy again (the replicas on the
node that came back reused and rebuilt).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import random
import resource
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import attrs
import trio

from lhtrio.manager import attachment_control, instance_control, volume_control
from lhtrio.manager.manager import run_manager
from lhtrio.manager.node_agent import run_node_agent
from lhtrio.manager.objects import Objects
from lhtrio.manager.store.api import Document, Listing, Store, WatchEvent
from lhtrio.manager.store.memory import KEEP, MemoryStore
from lhtrio.models.cluster import ObjectMeta, Volume
from lhtrio.models.cluster.volume import VolumeSpec
from lhtrio.models.times import wall_now
from lhtrio.net import serve_rpc
from lhtrio.net.network import NETWORK
from lhtrio.sim import convergence
from lhtrio.sim.convergence import Goal, VolumeView, follow_view
from lhtrio.sim.determinism import run_seeded
from lhtrio.sim.network import HOST, SimNetwork
from lhtrio.sim.processes import SimProcess, Trace
from lhtrio.sim.stub_node import StubDisks, StubNodeService
from lhtrio.wire import Identity, Role

__all__ = ["Phase", "ScaleRun", "run_scale"]

MiB: Final = 1 << 20
#: How often convergence is checked (simulated seconds).
POLL: Final = 1.0
#: The longest a phase may take to converge (simulated seconds).
PATIENCE: Final = 3600.0
#: Changes the store keeps for watches to resume from, per volume (at least the store's own
#: :data:`~lhtrio.manager.store.memory.KEEP`): more than a creation makes (about 25 a volume).
#: With every node's watches on one core, a watch whose follower nudges (one event per turn of
#: trio's scheduler, while a turn carries every node's writes) fell more than 10,000 changes
#: behind at 3,000 volumes and listed its kind again, each time, on each of the 100 nodes: a
#: quarter of the run's time, more the more volumes (a real node runs its watches on a core of
#: its own). The documents kept cost memory (a few KiB a change).
KEEP_PER_VOLUME: Final = 30
#: The cyclic garbage collector's thresholds while the cluster runs (Python's are 700, 10, 10).
#: Every node's heap is in this one process: a full collection walks all of them (several GB at
#: 10,000 volumes), and a third of a 100-node run's time went to the collector. Young
#: collections are made rarer (most garbage here is freed by reference counting before one), and
#: the heap of the started nodes is frozen (:func:`gc.freeze`: never walked again; a cycle in it
#: that becomes garbage, as when a node is lost, waits for the unfreeze at the run's end).
COLLECTOR_THRESHOLDS: Final = (50_000, 20, 100)


@attrs.define(eq=False)
class CountingStore:
    """A :class:`~lhtrio.manager.store.api.Store` that counts its calls by name."""

    inner: Store
    counts: Counter[str] = attrs.field(factory=Counter)

    async def get(self, kind: str, name: str) -> Document:
        self.counts["get"] += 1
        return await self.inner.get(kind, name)

    async def list(self, kind: str, *, labels: Mapping[str, str] | None = None) -> Listing:
        self.counts["list"] += 1
        return await self.inner.list(kind, labels=labels)

    async def create(self, document: Document) -> Document:
        self.counts["create"] += 1
        return await self.inner.create(document)

    async def update(self, document: Document) -> Document:
        self.counts["update"] += 1
        return await self.inner.update(document)

    async def delete(
        self, kind: str, name: str, *, resource_version: str | None = None
    ) -> Document | None:
        self.counts["delete"] += 1
        return await self.inner.delete(kind, name, resource_version=resource_version)

    def watch(
        self, kind: str, revision: int
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        self.counts["watch"] += 1
        return self.inner.watch(kind, revision)

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)


@attrs.frozen(kw_only=True)
class Phase:
    """One phase of the run and what it cost."""

    name: str
    sim_seconds: float
    wall_seconds: float
    reconciles: int
    store_ops: int
    store_lists: int
    instance_calls: int
    converged: bool


@attrs.frozen(kw_only=True)
class ScaleRun:
    nodes: int
    volumes: int
    replicas: int
    phases: tuple[Phase, ...]
    memory_nodes: int  # bytes held by starting the nodes (0 unless ``trace_memory``)
    memory_volumes: int  # ... and by creating the volumes, once converged
    rss_started: int  # the process's peak resident bytes once the nodes started
    rss_created: int  # ... once the volumes converged
    reconciles_by_kind: dict[str, int]


@contextlib.contextmanager
def _counting_reconciles(counts: Counter[str]) -> Iterator[None]:
    """Count every reconcile, by kind, for the block's duration (the classes' methods wrapped)."""
    targets = [
        (volume_control.VolumeControl, "reconcile_volume", "Volume"),
        (instance_control.InstanceControl, "reconcile_replica", "Replica"),
        (instance_control.InstanceControl, "reconcile_engine", "Engine"),
        (attachment_control.AttachmentControl, "reconcile_attachment", "VolumeAttachment"),
    ]
    saved = [(cls, name, getattr(cls, name)) for cls, name, _ in targets]

    def counted(method: Callable[..., Any], kind: str) -> Callable[..., Any]:
        async def reconcile(self: Any, name: str) -> Any:
            counts[kind] += 1
            return await method(self, name)

        return reconcile

    for (cls, name, kind), (_, _, method) in zip(targets, saved, strict=True):
        setattr(cls, name, counted(method, kind))
    try:
        yield
    finally:
        for cls, name, method in saved:
            setattr(cls, name, method)


@contextlib.contextmanager
def _collector_relaxed() -> Iterator[None]:
    """:data:`COLLECTOR_THRESHOLDS` for the block, and whatever :func:`gc.freeze` froze in it
    unfrozen after (as the thresholds, restored)."""
    saved = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def _peak_rss() -> int:
    """The process's peak resident set, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _held() -> int:
    """Bytes of Python allocations held now (0 unless tracemalloc traces)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


async def _node(
    name: str,
    store: Store,
    net: SimNetwork,
    stubs: dict[str, StubNodeService],
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    async with trio.open_nursery() as nursery:
        service = stubs[name] = StubNodeService(name, net, nursery)
        identity = Identity(instance=f"node-{name}", role=Role.NODE)
        await nursery.start(functools.partial(serve_rpc, service, name, 9, identity=identity))
        await nursery.start(functools.partial(run_node_agent, store, name, StubDisks(name)))
        await nursery.start(run_manager, store, name, f"tcp://{name}:9")
        task_status.started()


@attrs.define(eq=False)
class _Run:
    view: VolumeView
    counting: CountingStore
    reconciles: Counter[str]
    stubs: dict[str, StubNodeService]
    on_phase: Callable[[Phase], None] | None = None
    phases: list[Phase] = attrs.field(factory=list)

    async def converge(self, name: str, goal: Goal) -> None:
        """Wait until every volume is at ``goal`` (as :attr:`view` says, checked every
        :data:`POLL` simulated seconds); record the phase from now."""
        t0, w0 = trio.current_time(), time.perf_counter()
        c0, r0 = Counter(self.counting.counts), sum(self.reconciles.values())
        i0 = sum(s.calls for s in self.stubs.values())
        converged = False
        self.view.aim(goal)
        with trio.move_on_after(PATIENCE):
            while True:
                await self.view.catch_up()
                if not self.view.pending:
                    converged = True
                    break
                await trio.sleep(POLL)
        ops = self.counting.counts - c0
        self.phases.append(
            Phase(
                name=name,
                sim_seconds=trio.current_time() - t0,
                wall_seconds=time.perf_counter() - w0,
                reconciles=sum(self.reconciles.values()) - r0,
                store_ops=sum(ops.values()),
                store_lists=ops["list"],
                instance_calls=sum(s.calls for s in self.stubs.values()) - i0,
                converged=converged,
            )
        )
        if self.on_phase is not None:
            self.on_phase(self.phases[-1])


async def _scale(
    nodes: int,
    volumes: int,
    losses: int,
    downtime: float,
    seed: int,
    *,
    on_phase: Callable[[Phase], None] | None,
) -> ScaleRun:
    net = SimNetwork(random.Random(f"lhtrio-sim-scale-{seed}"))
    NETWORK.set(net)
    HOST.set("operator")
    memory = MemoryStore(clock=wall_now, keep=max(KEEP, KEEP_PER_VOLUME * volumes))
    store = CountingStore(memory)
    reconciles: Counter[str] = Counter()
    stubs: dict[str, StubNodeService] = {}
    view = VolumeView(memory)
    run = _Run(view, store, reconciles, stubs, on_phase)
    trace = Trace()
    names = [f"n{i:03d}" for i in range(nodes)]
    held0 = _held()
    with _counting_reconciles(reconciles), _collector_relaxed():
        async with trio.open_nursery() as nursery:
            processes = {
                n: SimProcess(
                    f"node-{n}", n, net, trace, functools.partial(_node, n, store, net, stubs)
                )
                for n in names
            }
            for process in processes.values():
                await process.start(nursery)
            held1, rss1 = _held(), _peak_rss()
            gc.freeze()  # (the started nodes: see COLLECTOR_THRESHOLDS)
            await nursery.start(follow_view, memory, view)
            objects = Objects(memory)
            for j in range(volumes):
                spec = VolumeSpec(size=16 * MiB, number_of_replicas=3, node_id=names[j % nodes])
                meta = ObjectMeta(name=f"v{j:05d}", finalizers=(volume_control.FINALIZER,))
                await objects.create(Volume(meta=meta, spec=spec))
            await run.converge("create", convergence.healthy)
            held2, rss2 = _held(), _peak_rss()
            step = max(1, nodes // max(1, losses))
            for k in range(min(losses, nodes)):
                lost = names[(k * step) % nodes]
                back_at = trio.current_time() + downtime
                await processes[lost].kill()
                for stub in stubs.values():
                    stub.poke()
                await run.converge(f"loss of {lost}", convergence.lost(lost))
                await trio.sleep_until(max(back_at, trio.current_time()))
                await processes[lost].start(nursery)
                await run.converge(f"return of {lost}", convergence.healthy)
            nursery.cancel_scope.cancel()
    replicas = len((await memory.list("Replica")).documents)
    return ScaleRun(
        nodes=nodes,
        volumes=volumes,
        replicas=replicas,
        phases=tuple(run.phases),
        memory_nodes=held1 - held0,
        memory_volumes=held2 - held1,
        rss_started=rss1,
        rss_created=rss2,
        reconciles_by_kind=dict(reconciles),
    )


def run_scale(
    *,
    nodes: int = 100,
    volumes: int = 1000,
    losses: int = 3,
    downtime: float = 60.0,
    seed: int = 1,
    trace_memory: bool = False,
    on_phase: Callable[[Phase], None] | None = None,
) -> ScaleRun:
    """The scale run (see the module); deterministic for a seed. ``trace_memory``: measure the
    memory held per node and per object with tracemalloc (which slows the run down);
    ``on_phase`` is told of each phase as it ends."""
    run = functools.partial(_scale, nodes, volumes, losses, downtime, seed, on_phase=on_phase)
    if not trace_memory:
        return run_seeded(seed, run)
    tracemalloc.start()
    try:
        return run_seeded(seed, run)
    finally:
        tracemalloc.stop()
