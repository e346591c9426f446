"""Control plane at scale, by simulation (issue 21): ``python -m lhtrio.bench scale``.

:func:`lhtrio.sim.scale.run_scale` on simulated nodes (the product's node agents and
managers, stub instance managers, one in-memory store, mock clock) for each size of the curve
(:data:`SIZES`), through a rolling loss of :data:`LOSSES` nodes. One table
per run: each phase's convergence in simulated seconds, its wall time, reconciles and store
operations per simulated and per wall second; and the process's memory per object (traced
allocations held after the volumes converged, whose documents every manager's ``Objects``
decodes).
``--quick``: 5 nodes, 20 volumes. ``--volumes N``: 10 nodes and N volumes. ``--nodes N
--volumes V``: one run of that size (100 and 10,000: what the issue asks; recorded apart, as
"scale-full"), through ``--losses`` losses (:data:`FULL_LOSSES`). ``--profile``: the
functions that took the most time, from cProfile. Memory is measured in a run of its own
(tracemalloc slows a run about twentyfold): the first size, creation only.
"""

from __future__ import annotations

import cProfile
import io
import logging
import pstats
import time

from lhtrio.bench._util import record, table
from lhtrio.sim.scale import Phase, ScaleRun, run_scale

#: (nodes, volumes) of the curve (minutes on one core); the full size is a run of its own
#: (``--nodes 100 --volumes 10000``: about an hour, :func:`full`).
SIZES = ((10, 100), (20, 500), (50, 1000))
#: Nodes lost one after another in each run of the curve, and in the full run.
LOSSES = 1
FULL_LOSSES = 2


def full(nodes: int, volumes: int, losses: int = FULL_LOSSES) -> ScaleRun:
    """One run of ``nodes`` and ``volumes`` through ``losses`` losses, each phase printed as it
    ends; recorded in docs/benchmarks.md ("scale-full")."""
    started = time.perf_counter()

    def said(phase: Phase) -> None:
        wall = time.perf_counter() - started
        print(f"[{wall:,.0f} s] {phase.name}: {phase.sim_seconds:,.1f} sim s", flush=True)

    logging.disable(logging.WARNING)
    try:
        run = run_scale(nodes=nodes, volumes=volumes, losses=losses, on_phase=said)
    finally:
        logging.disable(logging.NOTSET)
    text = describe(run) + f"The whole run: {time.perf_counter() - started:,.0f} s of wall time.\n"
    print(text, flush=True)
    command = f"nox -s bench -- scale --nodes {nodes} --volumes {volumes}"
    if losses != FULL_LOSSES:
        command += f" --losses {losses}"
    record("scale-full", text, command=command)
    return run


def _rows(run: ScaleRun) -> list[list[object]]:
    return [
        [
            p.name,
            p.sim_seconds if p.converged else f"> {p.sim_seconds:.0f} (not converged)",
            p.wall_seconds,
            p.reconciles,
            p.reconciles / p.sim_seconds if p.sim_seconds else "",
            p.reconciles / p.wall_seconds,
            p.store_ops,
            p.store_ops / p.wall_seconds,
            p.store_lists,
            p.instance_calls,
        ]
        for p in run.phases
    ]


def describe(run: ScaleRun) -> str:
    title = (
        f"Scale: {run.nodes} nodes, {run.volumes} volumes ({run.replicas} replicas), "
        f"rolling loss of {(len(run.phases) - 1) // 2} nodes"
    )
    text = table(
        title,
        [
            "phase",
            "converged after (sim s)",
            "wall s",
            "reconciles",
            "per sim s",
            "per wall s",
            "store ops",
            "per wall s",
            "of which lists",
            "instance calls",
        ],
        _rows(run),
    )
    objects = run.volumes * 3 + run.replicas  # volumes, their engines and tickets, replicas
    grown = max(0, run.rss_created - run.rss_started)
    text += (
        f"\nPeak resident memory: {run.rss_started / 2**20:,.0f} MiB once the nodes started, "
        f"{run.rss_created / 2**20:,.0f} MiB once the volumes converged: "
        f"{grown / objects / 1024:,.1f} KiB per object (volume, engine, ticket or replica) for "
        f"the store and all {run.nodes} managers together, "
        f"{grown / objects / run.nodes:,.0f} bytes per object per manager.\n"
    )
    return text


def describe_memory(run: ScaleRun) -> str:
    objects = run.volumes + run.replicas
    per_node = run.memory_nodes / run.nodes / 1024
    per_object = run.memory_volumes / objects / 1024 if objects else 0.0
    return (
        f"Memory ({run.nodes} nodes, {run.volumes} volumes, tracemalloc): {per_node:,.0f} KiB "
        f"per node started (agent, manager, stub), {per_object:,.1f} KiB per object (volume or "
        f"replica: the store's copy and every one of the {run.nodes} managers' decoded copies "
        "together).\n"
    )


def main(
    *,
    quick: bool = False,
    volumes: int | None = None,
    nodes: int | None = None,
    losses: int | None = None,
    profile: bool = False,
) -> list[ScaleRun]:
    if nodes:
        return [full(nodes, volumes or 10_000, FULL_LOSSES if losses is None else losses)]
    sizes = ((10, volumes),) if volumes else (((5, 20),) if quick else SIZES)
    runs: list[ScaleRun] = []
    texts: list[str] = []
    for count, size in sizes:
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        logging.disable(logging.WARNING)  # (the product's warnings: each replica a loss fails)
        try:
            run = run_scale(nodes=count, volumes=size, losses=LOSSES)
        finally:
            logging.disable(logging.NOTSET)
        if profiler is not None:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
            print(out.getvalue())
        runs.append(run)
        texts.append(describe(run))
        print(texts[-1], flush=True)
    count, size = sizes[0]
    logging.disable(logging.WARNING)
    try:
        memory = run_scale(nodes=count, volumes=size, losses=0, trace_memory=True)
    finally:
        logging.disable(logging.NOTSET)
    texts.append(describe_memory(memory))
    print(texts[-1], flush=True)
    if not quick and not volumes:
        record("scale", "\n".join(texts))
    return runs
