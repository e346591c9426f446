"""Whole data path in the simulator: the engine, three replicas, a client, faults from a seed.

The schedules are the product's own engine and replicas (:mod:`lhtrio.sim.data`), judged by the
register model of :mod:`lhtrio.verify.model`; a seed replays exactly (same trace hash).
"""

from __future__ import annotations

import os

import pytest

from lhtrio.sim.__main__ import main
from lhtrio.sim.data import run_data_schedule

#: CI's short batch (``LHTRIO_SIM_SCHEDULES`` runs more).
SCHEDULES = int(os.environ.get("LHTRIO_SIM_SCHEDULES", "20"))


def test_a_seed_replays_exactly() -> None:
    first = run_data_schedule(11, duration=20.0, trace=True)
    again = run_data_schedule(11, duration=20.0, trace=True)
    assert first.trace == again.trace
    assert first.trace_hash == again.trace_hash
    assert first.ok, (first.violations, first.unavailable)
    assert sum(first.faults.values()) >= 3
    assert first.faults.get("power-loss")
    assert first.faults.get("power-loss-all")
    assert first.checked_blocks == 64
    assert first.durable_writes > 100
    other = run_data_schedule(5, duration=20.0)
    assert other.trace_hash != first.trace_hash


def test_a_seed_replays_exactly_after_other_schedules() -> None:
    """Seed 331 (a partition past the replica timeout) ran one way alone and another after seed
    330 in the same process: the engine failed its stalled fan-outs in the order of a set, which
    is where they sit in memory. It fails them oldest first now."""
    alone = run_data_schedule(331, trace=True)
    for before in (330, 329, 328):  # (each one moves where the next run's objects sit)
        run_data_schedule(before, duration=10.0)
        after = run_data_schedule(331, trace=True)
        assert after.trace == alone.trace, before


def test_a_batch_of_schedules_has_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--schedules", str(SCHEDULES), "--seed", "1000", "--duration", "20"]) == 0
    out = capsys.readouterr().out
    assert f"{SCHEDULES} schedules (seeds 1000-{1000 + SCHEDULES - 1})" in out
    assert ", 0 violations;" in out
    assert "kill-engine" in out.splitlines()[0]
    assert "power-loss-all" in out.splitlines()[0]


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--schedules", "0"])
    assert refused.value.code == 2
    assert "--schedules must be at least 1" in capsys.readouterr().err
