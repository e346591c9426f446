"""Fault schedules: what the chaos runs inject, drawn from a seed (pure, no I/O).

A schedule is a tuple of :class:`Fault` values, each with the pause before it and how long it is
held; :func:`draw_schedule` draws one from a seed, so a failing schedule's seed replays the same
faults in the same order with the same pauses and holds. Real processes do not replay their
timing: where a fault lands among the writes in flight differs from one run to the next.

The testbed (:mod:`lhtrio.verify.bed`) has three *nodes*: node 0 runs the engine and replica 0,
nodes 1 and 2 a replica each; each replica is reached by the engine through a proxy of its own
(its *link*).
"""

from __future__ import annotations

import enum
import random

import attrs

__all__ = [
    "IN_NETNS",
    "NODES",
    "ON_DISKS",
    "ON_PROCESSES",
    "Fault",
    "FaultKind",
    "describe",
    "draw_schedule",
]

NODES = 3


class FaultKind(enum.Enum):
    KILL_REPLICA = "kill-replica"  # SIGKILL, restarted after the hold
    STOP_REPLICA = "stop-replica"  # SIGSTOP for the hold, then SIGCONT
    KILL_ENGINE = "kill-engine"  # SIGKILL, restarted after the hold (clients reconnect)
    STOP_ENGINE = "stop-engine"
    KILL_NODE = "kill-node"  # every process of a node at once, restarted after the hold
    STOP_NODE = "stop-node"
    KILL_ALL = "kill-all"  # every process of every node: the whole cluster crashes
    STALL_LINK = "stall-link"  # the proxy forwards nothing for the hold
    SLOW_LINK = "slow-link"  # the proxy delays every chunk by ``delay`` for the hold
    CUT_LINK = "cut-link"  # the proxy closes every connection and refuses new ones for the hold
    # A replica falls behind (stopped until the engine fails it), the others take writes and
    # flushes for the hold, then the engine crashes before the replica is rebuilt and starts
    # again with all three: what the start decision's stale-replica check exists for.
    LAG_THEN_CRASH = "lag-then-crash"
    FILL_DISK = "fill-disk"  # the replica's file system is filled (ENOSPC) for the hold
    # The replica's disk fails every write (EIO) for the hold; then the replica is
    # stopped, the disk repaired (its file system checked) and the replica started again.
    DISK_ERROR = "disk-error"
    # The replica's disk fails every read (EIO) for the hold, its clean cached pages dropped;
    # meanwhile the testbed reads the volume: no read error may reach the client while another
    # replica is RW. Then the same repair as after a disk error.
    READ_ERROR = "read-error"
    # The node loses power (its processes killed, and what its disk had not flushed is gone),
    # and boots after the hold: its disk checked and mounted, its processes started again.
    POWER_LOSS = "power-loss"
    POWER_LOSS_ALL = "power-loss-all"  # every node at once: the whole site
    PARTITION = "partition"  # the replica's namespace drops every packet for the hold
    LOSSY_NET = "lossy-net"  # the replica's namespace drops ``loss`` % of packets for the hold

    @property
    def on_node(self) -> bool:
        return self in (FaultKind.KILL_NODE, FaultKind.STOP_NODE, FaultKind.POWER_LOSS)

    @property
    def on_replica(self) -> bool:
        return self in (
            FaultKind.KILL_REPLICA,
            FaultKind.STOP_REPLICA,
            FaultKind.STALL_LINK,
            FaultKind.SLOW_LINK,
            FaultKind.CUT_LINK,
            FaultKind.LAG_THEN_CRASH,
            FaultKind.FILL_DISK,
            FaultKind.DISK_ERROR,
            FaultKind.READ_ERROR,
            FaultKind.PARTITION,
            FaultKind.LOSSY_NET,
        )


@attrs.frozen(kw_only=True)
class Fault:
    """One fault: ``target`` is a replica's or a node's index (0 otherwise)."""

    kind: FaultKind
    target: int = 0
    pause: float = 0.0  # seconds of plain writing before the fault
    hold: float = 0.0  # seconds the fault lasts
    delay: float = 0.0  # SLOW_LINK: seconds added to every chunk forwarded
    loss: int = 0  # LOSSY_NET: percent of packets dropped


# How often each fault is drawn: process faults and link faults are the bulk.
_WEIGHTS: dict[FaultKind, int] = {
    FaultKind.KILL_REPLICA: 4,
    FaultKind.STOP_REPLICA: 3,
    FaultKind.KILL_ENGINE: 3,
    FaultKind.STOP_ENGINE: 2,
    FaultKind.KILL_NODE: 2,
    FaultKind.STOP_NODE: 1,
    FaultKind.KILL_ALL: 2,
    FaultKind.STALL_LINK: 2,
    FaultKind.SLOW_LINK: 2,
    FaultKind.CUT_LINK: 3,
    FaultKind.LAG_THEN_CRASH: 2,
    FaultKind.FILL_DISK: 2,  # these five only on a testbed with loop-mounted disks
    FaultKind.DISK_ERROR: 2,
    FaultKind.READ_ERROR: 2,
    FaultKind.POWER_LOSS: 2,
    FaultKind.POWER_LOSS_ALL: 1,
    FaultKind.PARTITION: 2,  # these two only with replicas in network namespaces
    FaultKind.LOSSY_NET: 2,
}

ON_DISKS = frozenset(
    {
        FaultKind.FILL_DISK,
        FaultKind.DISK_ERROR,
        FaultKind.READ_ERROR,
        FaultKind.POWER_LOSS,
        FaultKind.POWER_LOSS_ALL,
    }
)
IN_NETNS = frozenset({FaultKind.PARTITION, FaultKind.LOSSY_NET})
ON_PROCESSES = frozenset(_WEIGHTS) - ON_DISKS - IN_NETNS
"""The kinds every testbed can inject (the others need root: loop disks, namespaces)."""


def draw_schedule(
    seed: int, *, faults: int, kinds: frozenset[FaultKind] | None = None, timeout: float = 1.0
) -> tuple[Fault, ...]:
    """``faults`` faults drawn from ``seed``; holds straddle the engine's replica ``timeout``
    (a stall shorter than it must cost nothing, a longer one fails the replica)."""
    if faults < 0:
        raise ValueError(f"a schedule has at least 0 faults, not {faults}")
    pool = [k for k in _WEIGHTS if kinds is None or k in kinds]
    if not pool:
        raise ValueError("no fault kind to draw from")
    rng = random.Random(f"lhtrio-chaos/{seed}")
    schedule = []
    for _ in range(faults):
        (kind,) = rng.choices(pool, weights=[_WEIGHTS[k] for k in pool])
        schedule.append(
            Fault(
                kind=kind,
                target=rng.randrange(NODES) if kind.on_node or kind.on_replica else 0,
                pause=round(rng.uniform(0.1, 1.0), 3),
                hold=round(rng.uniform(0.1, 2.5 * timeout), 3),
                delay=round(rng.uniform(0.001, 0.05), 3) if kind is FaultKind.SLOW_LINK else 0.0,
                loss=rng.randint(5, 40) if kind is FaultKind.LOSSY_NET else 0,
            )
        )
    return tuple(schedule)


def describe(fault: Fault) -> str:
    """``kill-replica 2 (0.8 s)``: a fault in a few words, for tables and logs."""
    where = f" {fault.target}" if fault.kind.on_node or fault.kind.on_replica else ""
    extra = f" +{fault.delay * 1000:.0f} ms" if fault.kind is FaultKind.SLOW_LINK else ""
    extra += f" {fault.loss}% lost" if fault.kind is FaultKind.LOSSY_NET else ""
    return f"{fault.kind.value}{where} ({fault.hold:.1f} s{extra})"
