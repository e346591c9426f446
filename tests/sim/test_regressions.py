"""Seeds of the simulator worth keeping, each replayed in full (``lhtrio.sim.data``).

A seed that ever reports a violation or an unavailable read-back is added to :data:`SEEDS`
with the defect it found, next to its fix (none found yet: 1,000 schedules, seeds 1-1000, 0
violations, docs/reliability.md). :data:`BUSY` are schedules with many kills of the engine and
of replicas, kept so that the paths they take stay covered.

The mutation check shows the checker is not blind: with the engine's stale-replica check
disabled (every replica that answers starts RW, whatever its revision counter), the read-back of
these schedules reads data older than what was acknowledged and flushed, and says so; with its
flush fan-out disabled, a power loss of every host does the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from lhtrio.engine import fanout, membership, replicaset
from lhtrio.engine import server as engine_server
from lhtrio.models.replica import ReplicaInfo
from lhtrio.models.volume import Mode
from lhtrio.sim import disks
from lhtrio.sim.data import run_data_schedule

#: seed -> the defect it found (and where it was fixed).
SEEDS: dict[int, str] = {}
#: Busy schedules (many kills of the engine and of replicas, long partitions).
BUSY = (4, 2)


@pytest.mark.parametrize("seed", sorted(SEEDS) + list(BUSY))
def test_seed_holds(seed: int) -> None:
    outcome = run_data_schedule(seed)
    assert outcome.ok, (SEEDS.get(seed, "busy schedule"), outcome.violations, outcome.unavailable)


def _no_stale_check(
    infos: Sequence[tuple[str, ReplicaInfo | str]],
    *,
    size: int,
    salvage: bool = False,
    records: object = None,
) -> replicaset.StartDecision:
    decision = replicaset.decide_start(infos, size=size, salvage=salvage)
    modes = {a: Mode.ERR if isinstance(i, str) else Mode.RW for a, i in infos}
    return attrs.evolve(decision, modes=modes, reasons={})


#: Schedules whose read-back starts on a replica that missed writes.
MUTANT_SEEDS = (2, 4)


def test_the_checker_sees_a_stale_replica_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_server, "decide_start", _no_stale_check)
    seen = [run_data_schedule(seed) for seed in MUTANT_SEEDS]
    assert any("stale" in v for o in seen for v in o.violations), [o.violations for o in seen]


#: Schedules that end in a power loss of every host with writes flushed since the replicas last
#: synced on their own (a rebuild's snapshot flushes them).
POWER_LOSS_SEEDS = (1,)


def test_the_checker_sees_flushes_lost_to_a_power_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the engine's flush fan-out disabled (a flush answered, never sent to a replica), a
    power loss of every host takes writes the client saw flushed: the read-back says so."""
    monkeypatch.setattr(fanout, "_NO_FLUSH_FANOUT", True)
    monkeypatch.setattr(membership, "_NO_FLUSH_FANOUT", True)
    seen = [run_data_schedule(seed) for seed in POWER_LOSS_SEEDS]
    assert all(o.faults.get("power-loss-all") for o in seen)
    assert any("acknowledged and flushed" in v for o in seen for v in o.violations), seen


def test_a_replica_that_does_not_open_after_a_power_loss_is_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Disks that keep no file's content (every sync of a file ignored): after a power loss the
    replica's metadata files are empty, it does not open, and the schedule fails saying so."""
    monkeypatch.setattr(disks._Disk, "sync_content", lambda self, fd, inode: None)
    outcome = run_data_schedule(4)
    assert outcome.faults.get("power-loss")
    assert any("did not open after a power loss" in v for v in outcome.violations), outcome
