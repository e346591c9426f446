"""Randomized fault schedules on real processes, judged by the checker (docs/reliability.md).

``python -m lhtrio.verify.chaos --schedules N [--seed S] [--faults F]`` (or ``python3
noxfile.py -s chaos -- ...``): schedule ``k`` uses seed ``S + k``. Each starts a testbed
(:mod:`lhtrio.verify.bed`: an engine and three replicas as processes, links through proxies),
runs the workload (:mod:`lhtrio.verify.workload`) while the faults drawn from its seed
(:func:`lhtrio.verify.faults.draw_schedule`) are injected one after the other — after each, the
whole volume is read back while the writers go on and checked as of the moment the read began
(a lost write is caught before later writes hide it) —, heals everything, waits for every
replica to be RW, stops writing, and reads every block back three more times (reads go to the
RW replicas in turn), each read-back checked by the model, and the last two compared: with no
write in flight, every replica must give the same bytes. It prints one
row per schedule and exits 1 if any schedule found a violation (or could not run), printing how
to replay it: the same seed draws the same faults, pauses and holds; where each fault lands among
the writes in flight is up to the processes' timing, so a replay is the same experiment, not the
same interleaving (the simulator, ``--sim``, replays exactly).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import attrs
import trio

from lhtrio.errors import LhtrioError
from lhtrio.verify.bed import open_testbed
from lhtrio.verify.disks import loop_disks_available
from lhtrio.verify.faults import (
    IN_NETNS,
    ON_DISKS,
    ON_PROCESSES,
    Fault,
    FaultKind,
    describe,
    draw_schedule,
)
from lhtrio.verify.model import History, Report, Violation, ViolationKind, check, unstable
from lhtrio.verify.netns import netns_available
from lhtrio.verify.workload import Progress, WorkloadConfig, probe, read_back, run_writers

__all__ = ["ScheduleResult", "main", "run_schedule", "run_schedules"]

log = logging.getLogger(__name__)
SIZE = 16 << 20  # four write-intent regions
PASSES = 3


@attrs.frozen(kw_only=True)
class ScheduleResult:
    """What one schedule did and found (``error``: it could not run to its end)."""

    seed: int
    faults: tuple[Fault, ...]
    report: Report | None = None
    violations: tuple[Violation, ...] = ()
    engine_restarts: int = 0
    rebuilds: int = 0
    replacements: int = 0
    seconds: float = 0.0
    error: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations and not self.error


async def run_schedule(
    seed: int,
    tmp: Path,
    *,
    faults: int = 4,
    blocks: int = SIZE // 4096,
    kinds: frozenset[FaultKind] | None = None,
    loop_disks: bool = False,
    netns: bool = False,
) -> ScheduleResult:
    """Run the schedule of ``seed`` in ``tmp`` (see the module docstring)."""
    rng = random.Random(f"lhtrio-chaos-bed/{seed}")
    timeout = 1.0
    sweep = rng.choice((0.2, 1.0, 5.0))
    if kinds is None:
        kinds = ON_PROCESSES | (ON_DISKS if loop_disks else set()) | (IN_NETNS if netns else set())
    schedule = draw_schedule(seed, faults=faults, kinds=kinds, timeout=timeout)
    config = WorkloadConfig(
        blocks=blocks, writers=3, depth=4, max_run=rng.choice((1, 4, 16)), seed=seed
    )
    started = time.monotonic()
    result = ScheduleResult(seed=seed, faults=schedule)
    try:
        async with open_testbed(
            tmp, size=SIZE, replica_timeout=timeout, sweep=sweep, loop_disks=loop_disks, netns=netns
        ) as bed:
            _, multi_conn = await probe(bed.target, blocks)
            history = History(run=rng.getrandbits(63), blocks=blocks, multi_conn=multi_conn)
            stop = trio.Event()
            progress = Progress()
            violations: dict[tuple[int, ViolationKind], Violation] = {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_writers, bed.target, history, config, stop, progress)
                async with trio.open_nursery() as repairing:
                    repairing.start_soon(bed.repair)
                    for fault in schedule:
                        await trio.sleep(fault.pause)
                        log.info("schedule %d: %s", seed, describe(fault))
                        await bed.apply(fault)
                        # Read everything back while the writers go on: a flushed write lost
                        # now would be overwritten, and hidden, by the end.
                        as_of = history.clock
                        during = check(history, await read_back(bed.target, blocks), as_of=as_of)
                        violations.update({(v.block, v.kind): v for v in during.violations})
                    repairing.cancel_scope.cancel()
                await bed.heal()
                await trio.sleep(0.3)  # a little writing on the healed volume
                stop.set()
            report = check(history, await read_back(bed.target, blocks))
            violations.update({(v.block, v.kind): v for v in report.violations})
            # Small reads go to the RW replicas in turn, each pass shifted by one replica: two
            # passes long after the last write must read the same (the replicas agree).
            passes = []
            for _ in range(PASSES - 1):
                passes.append(await read_back(bed.target, blocks, chunk=4))
                more = check(history, passes[-1])
                violations.update({(v.block, v.kind): v for v in more.violations})
            violations.update(
                {(v.block, v.kind): v for v in unstable(passes[0], passes[1], history)}
            )
            notes = []
            if violations:  # which replica holds what the check refused (read directly)
                images = [await bed.replica_image(i, blocks) for i in range(len(bed.replicas))]
                for i, image in enumerate(images):
                    bad = check(history, image).violations
                    notes.append(f"replica {i} read directly: {len(bad)} violations")
                for i, j in ((0, 1), (0, 2), (1, 2)):
                    differ = [b for b in range(blocks) if images[i][b] != images[j][b]]
                    if differ:
                        notes.append(
                            f"replicas {i} and {j} differ on {len(differ)} blocks "
                            f"(first {differ[:8]})"
                        )
            result = attrs.evolve(
                result,
                report=report,
                violations=tuple(violations.values()),
                engine_restarts=bed.engine_restarts,
                rebuilds=bed.rebuilds,
                replacements=bed.replacements,
                notes=tuple(notes),
            )
    except* (LhtrioError, OSError, trio.TooSlowError) as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        # Which wait ran out, if one did: the innermost of our frames (trio's own are below).
        ours = [f for f in traceback.extract_tb(first.__traceback__) if "/lhtrio/" in f.filename]
        at = (
            f" (in {ours[-1].name}, {Path(ours[-1].filename).name}:{ours[-1].lineno})"
            if ours
            else ""
        )
        result = attrs.evolve(result, error=f"{type(first).__name__}: {first}{at}")
    return attrs.evolve(result, seconds=time.monotonic() - started)


def _row(result: ScheduleResult) -> str:
    faults = ", ".join(describe(f) for f in result.faults) or "none"
    r = result.report
    writes = f"{r.acked_writes}/{r.writes}" if r else "-"
    flushes = f"{r.acked_flushes}" if r else "-"
    bad = "ERROR" if result.error else str(len(result.violations))
    return (
        f"{result.seed:>8}  {writes:>11}  {flushes:>7}  {bad:>10}  {result.engine_restarts:>3}  "
        f"{result.rebuilds:>3}  {result.seconds:>5.1f}  {faults}"
    )


HEADER = (
    f"{'SEED':>8}  {'WRITES':>11}  {'FLUSHES':>7}  {'VIOLATIONS':>10}  {'ENG':>3}  {'REB':>3}  "
    f"{'SECS':>5}  FAULTS"
)


async def run_schedules(
    seeds: list[int],
    *,
    faults: int,
    blocks: int = SIZE // 4096,
    keep: Path | None = None,
    out: list[ScheduleResult] | None = None,
    echo: bool = True,
    kinds: frozenset[FaultKind] | None = None,
    loop_disks: bool = False,
    netns: bool = False,
) -> list[ScheduleResult]:
    """Run each seed's schedule in turn; print a row for each as it ends."""
    results = out if out is not None else []
    if echo:
        print(HEADER, flush=True)
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix=f"lhtrio-chaos-{seed}-") as tmp:
            directory = Path(tmp)
            if keep is not None:
                directory = keep / str(seed)
                directory.mkdir(parents=True, exist_ok=True)
            result = await run_schedule(
                seed,
                directory,
                faults=faults,
                blocks=blocks,
                kinds=kinds,
                loop_disks=loop_disks,
                netns=netns,
            )
            if keep is None and (result.error or result.violations):
                result = _keep_logs(result, directory)
        results.append(result)
        if echo:
            print(_row(result), flush=True)
            for v in result.violations[:10]:
                print(f"          block {v.block}: {v.kind.value}: {v.detail}", flush=True)
            if result.error:
                print(f"          {result.error}", flush=True)
            for note in result.notes:
                print(f"          {note}", flush=True)
    return results


def _keep_logs(result: ScheduleResult, directory: Path) -> ScheduleResult:
    """A failed schedule's logs, copied where they outlive it (a replay on real processes is
    the same experiment, not the same interleaving: these are the only record of this one)."""
    kept = Path(tempfile.mkdtemp(prefix=f"lhtrio-chaos-failed-{result.seed}-"))
    for log in directory.glob("*.log"):
        shutil.copy2(log, kept / log.name)
    return attrs.evolve(result, notes=(*result.notes, f"logs kept in {kept}"))


def _simulate(argv: list[str]) -> int:
    """``--sim``: the deterministic simulator's own entry point (``python -m lhtrio.sim``, part 2
    of issue 21), looked up when asked for so that this module does not depend on it."""
    try:
        sim = importlib.import_module("lhtrio.sim.__main__")
    except ModuleNotFoundError:
        print(
            "error: --sim needs the deterministic simulator (lhtrio.sim), which this build "
            "does not have",
            file=sys.stderr,
        )
        return 2
    result: int = sim.main(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--sim" in argv:
        return _simulate([a for a in argv if a != "--sim"])
    parser = argparse.ArgumentParser(prog="python -m lhtrio.verify.chaos", description=__doc__)
    parser.add_argument("--schedules", type=int, default=10, metavar="N")
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument("--faults", type=int, default=4, metavar="F", help="faults per schedule")
    parser.add_argument("--blocks", type=int, default=SIZE // 4096, metavar="B")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep each schedule's logs here")
    parser.add_argument(
        "--disks",
        action="store_true",
        help="replicas on loop-mounted file systems, with fill-disk (ENOSPC) and disk-error "
        "(EIO) faults (root)",
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="replicas in network namespaces, and partition and lossy-net faults (root, nft)",
    )
    parser.add_argument(
        "--kinds",
        metavar="K,K",
        help=f"only these fault kinds ({', '.join(k.value for k in FaultKind)})",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.schedules < 1 or args.faults < 0 or not 1 <= args.blocks <= SIZE // 4096:
        parser.error(f"--schedules must be ≥ 1, --faults ≥ 0, --blocks from 1 to {SIZE // 4096}")
    kinds = None
    if args.kinds:
        try:
            kinds = frozenset(FaultKind(k.strip()) for k in args.kinds.split(","))
        except ValueError as exc:
            parser.error(f"--kinds: {exc}")
        if kinds & ON_DISKS and not args.disks:
            parser.error(
                "--kinds " + ", ".join(sorted(k.value for k in ON_DISKS)) + " need --disks"
            )
        if kinds & IN_NETNS and not args.netns:
            parser.error("--kinds partition and lossy-net need --netns")
    if args.disks and not loop_disks_available():
        parser.error(
            "--disks needs root, nbdkit, nbdfuse, mkfs.ext4, e2fsck, mount, /dev/fuse and "
            "/dev/loop-control"
        )
    if args.netns and not netns_available():
        parser.error("--netns needs root, ip and nft (apt-get install nftables)")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    seeds = list(range(args.seed, args.seed + args.schedules))
    results = trio.run(
        lambda: run_schedules(
            seeds,
            faults=args.faults,
            blocks=args.blocks,
            keep=args.keep,
            kinds=kinds,
            loop_disks=args.disks,
            netns=args.netns,
        )
    )
    bad = [r for r in results if not r.ok]
    total = sum(len(r.faults) for r in results)
    writes = sum(r.report.acked_writes for r in results if r.report)
    print(
        f"{len(results)} schedules, {total} faults, {writes} acknowledged writes checked, "
        f"{sum(len(r.violations) for r in results)} violations, {len(bad)} failed"
    )
    for r in bad:
        print(f"replay: python3 noxfile.py -s chaos -- --schedules 1 --seed {r.seed}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
