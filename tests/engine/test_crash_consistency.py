"""After any crash every block reads the same from every replica (issue 16 item 7).

Real ``lhtrio engine`` and ``lhtrio replica`` processes; writes with stamped contents in flight;
the engine (or everything) SIGKILLed a few milliseconds after a flush, at a random point;
restarted; every block read from every RW replica. ``LHTRIO_CRASH_ROUNDS=200`` runs a long
series (docs/engine.md reports one); CI runs a few rounds of each kind, from a fixed seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.engine.crash_harness import Ledger, crash_round, crash_volume, rounds

SIZE = 24 << 20  # six write-intent regions


@pytest.mark.parametrize("everything", [False, True], ids=["engine", "everything"])
async def test_replicas_read_the_same_after_the_engine_is_killed(
    tmp_path: Path, everything: bool
) -> None:
    rng = random.Random(f"crash-{everything}")
    ledger = Ledger()
    failure: Exception | None = None
    seen: list[dict[str, int]] = []
    async with crash_volume(tmp_path, SIZE, sweep=600.0) as vol:  # round 0 lags
        for n in range(rounds()):
            try:
                lag = n % 2 == 0
                seen.append(
                    await crash_round(
                        vol,
                        ledger,
                        rng,
                        everything=everything,
                        lag=lag,
                        next_sweep=0.2 if lag else 600.0,  # the next round lags if this did not
                    )
                )
            except Exception as exc:  # raised below: inside, every restart's context wraps it
                failure = exc
                break
    if failure is not None:
        raise failure
    assert seen[-1]["flushes"] >= rounds()  # every round wrote and flushed before the kill
    # The rounds compared three replicas (a lag round leaves them different without a resync).
    assert all(s["rw"] == 3 for s in seen[::2]), seen
