"""``python -m lhtrio.sim --schedules N [--seed S]``: N simulated fault schedules, one table.

Schedule ``k`` is seed ``S + k`` (:mod:`lhtrio.sim.data`); each line says the faults injected,
the writes (acknowledged, durable), the blocks checked, the violations and the trace's hash. A
violating or unavailable seed replays exactly: ``--seed SEED --schedules 1 --trace`` prints its
every event (with ``PYTHONHASHSEED=0``, as ``python3 noxfile.py -s chaos -- --sim`` sets). Exit
status 1 if any schedule had a violation or could not read back.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from lhtrio.sim.data import run_data_schedule

_FAULTS = (
    "kill-replica",
    "power-loss",
    "kill-engine",
    "power-loss-all",
    "partition",
    "reset",
    "loss",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lhtrio.sim")
    parser.add_argument("--schedules", type=int, default=20, metavar="N")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="first seed (default 1)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="simulated seconds of faults per schedule"
    )
    parser.add_argument("--trace", action="store_true", help="print every schedule's events")
    parser.add_argument("--quiet", action="store_true", help="only the totals and the failures")
    args = parser.parse_args(argv)
    if args.schedules < 1 or args.duration <= 0:
        parser.error("--schedules must be at least 1 and --duration positive")
    logging.basicConfig(level=logging.CRITICAL)  # the product's warnings are the faults' echo
    heads = ("seed", *_FAULTS, "writes", "acked", "durable", "checked", "violations", "trace")
    print(" ".join(f"{h:>12}" for h in heads))
    totals = dict.fromkeys(("faults", "writes", "checked", "violations"), 0)
    failed: list[int] = []
    started = time.monotonic()
    simulated = 0.0
    for seed in range(args.seed, args.seed + args.schedules):
        outcome = run_data_schedule(seed, duration=args.duration, trace=args.trace)
        simulated += outcome.sim_seconds
        totals["faults"] += sum(outcome.faults.values())
        totals["writes"] += outcome.writes
        totals["checked"] += outcome.checked_blocks
        totals["violations"] += len(outcome.violations)
        bad = bool(outcome.violations or outcome.unavailable)
        if bad:
            failed.append(seed)
        if bad or not args.quiet:
            cells = (
                seed,
                *(outcome.faults.get(f, 0) for f in _FAULTS),
                outcome.writes,
                outcome.acked_writes,
                outcome.durable_writes,
                outcome.checked_blocks,
                len(outcome.violations) if not outcome.unavailable else "unavail.",
                outcome.trace_hash[:12],
            )
            print(" ".join(f"{c:>12}" for c in cells), flush=True)
        for line in outcome.violations[:5]:
            print(f"    {line}")
        if outcome.unavailable:
            print(f"    {outcome.unavailable}")
        if args.trace:
            print("\n".join(f"    {line}" for line in outcome.trace))
    wall = time.monotonic() - started
    print(
        f"{args.schedules} schedules (seeds {args.seed}-{args.seed + args.schedules - 1}): "
        f"{totals['faults']} faults, {totals['writes']} writes, {totals['checked']} blocks "
        f"checked, {totals['violations']} violations; {simulated:.0f} simulated s in "
        f"{wall:.1f} s of wall time"
    )
    if failed:
        print(f"failing seeds: {' '.join(map(str, failed))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
