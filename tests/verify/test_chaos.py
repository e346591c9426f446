"""Fault schedules on real processes (the CI-sized run) and the mutation check.

The CI run is three schedules of three faults each from a fixed seed (one of them makes replica
0 lag and then crashes the engine before it is rebuilt): no violation. The same run with each
test-build mutation (LHTRIO_MUTATION, read by lhtrio.engine.mutations only) must report
violations: the checker is not blind to a lost flush or a stale replica served.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from lhtrio.verify.chaos import ScheduleResult, run_schedules
from lhtrio.verify.disks import LoopDisk
from lhtrio.verify.faults import FaultKind
from lhtrio.verify.model import ViolationKind
from tests.procs import run

pytestmark = pytest.mark.real

CI_SEEDS = [3, 4, 5]
CI_FAULTS = 3
#: Schedules (of CI_FAULTS faults) that catch each mutation on a quiet machine, tried in turn
#: until one does: on a loaded one a schedule's timing can change what it catches (seed 3 alone
#: once missed no-flush-fanout in a CI run beside a simulation). Of seeds 3-24, these caught
#: no-flush-fanout: 3, 14, 19, 21; no-stale-check: 3, 8 (of 3-8).
MUTATION_SEEDS = {"no-flush-fanout": [3, 14, 19, 21], "no-stale-check": [3, 8]}


async def test_the_ci_schedules_find_no_violation(tmp_path: Path) -> None:
    results = await run_schedules(CI_SEEDS, faults=CI_FAULTS, keep=tmp_path, echo=False)
    assert [r.error for r in results] == ["", "", ""]
    assert [len(r.violations) for r in results] == [0, 0, 0], [r.violations for r in results]
    kinds = {f.kind for r in results for f in r.faults}
    assert FaultKind.LAG_THEN_CRASH in kinds
    assert sum(len(r.faults) for r in results) == 9
    for r in results:
        assert r.report is not None
        assert r.report.durable_writes > 100  # writes were flushed and checked in every one
        assert r.report.blocks == 4096
    assert sum(r.engine_restarts for r in results) >= 2
    assert sum(r.rebuilds for r in results) >= 3


@pytest.mark.parametrize("mutation", ["no-flush-fanout", "no-stale-check"])
async def test_each_mutation_is_caught_by_the_ci_schedules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutation: str
) -> None:
    monkeypatch.setenv("LHTRIO_MUTATION", mutation)  # the engines the schedules start inherit it
    results: list[ScheduleResult] = []
    seeds = MUTATION_SEEDS[mutation]
    for seed in seeds:  # stop at the first schedule that catches it
        await run_schedules([seed], faults=CI_FAULTS, keep=tmp_path, out=results, echo=False)
        if results[-1].violations:
            break
    caught = [r for r in results if r.violations]
    assert caught, f"{mutation} went unnoticed by seeds {seeds}"
    assert ViolationKind.STALE in {v.kind for v in caught[0].violations}
    assert "older than" in caught[0].violations[0].detail
    engine_log = (tmp_path / str(caught[0].seed) / "engine.log").read_text()
    assert f"mutations {mutation} are on" in engine_log


async def test_an_unknown_mutation_stops_the_engine_before_it_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LHTRIO_MUTATION", "no-writes-at-all")
    cmd = [sys.executable, "-m", "lhtrio", "engine", "run", "vol", "--size", "1Mi"]
    result = await run(*cmd, "--replica", "tcp://127.0.0.1:1", check=False)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "unknown mutations no-writes-at-all" in err
    assert "no-flush-fanout, no-stale-check" in err


async def test_bad_chaos_arguments_are_refused() -> None:
    for args in (["--schedules", "0"], ["--faults", "-1"], ["--blocks", "5000"]):
        result = await run(sys.executable, "-m", "lhtrio.verify.chaos", *args, check=False)
        assert result.returncode == 2, args
        assert "--schedules must be ≥ 1" in result.stderr.decode()
    result = await run(
        sys.executable, "-m", "lhtrio.verify.chaos", "--kinds", "power-loss", check=False
    )
    assert result.returncode == 2
    need = "disk-error, fill-disk, power-loss, power-loss-all, read-error need --disks"
    assert need in result.stderr.decode()


async def test_a_full_disk_under_a_replica_loses_no_write(tmp_path: Path) -> None:
    """Replicas on loop-mounted file systems; one is filled (ENOSPC) early, while the sparse
    files still allocate: the replica is failed and rebuilt once the space is back."""
    fill = frozenset({FaultKind.FILL_DISK})
    results = await run_schedules(
        [1], faults=2, keep=tmp_path, echo=False, kinds=fill, loop_disks=True
    )
    (result,) = results
    assert result.error == ""
    assert result.violations == ()
    assert {f.kind for f in result.faults} == fill
    assert result.rebuilds >= 1  # a replica hit ENOSPC and was failed, then rebuilt
    engine_log = (tmp_path / "1" / "engine.log").read_text()
    assert "NoSpaceError" in engine_log
    assert "No space left on device; free space on the disk" in engine_log
    mounts = await trio.Path("/proc/mounts").read_text()
    assert str(tmp_path) not in mounts  # every loop disk was unmounted


async def test_a_failing_disk_under_a_replica_loses_no_write(tmp_path: Path) -> None:
    """A replica's disk fails every write (EIO, nbdkit's error filter under its file system):
    the first write that meets the EIO (a flush or a metadata commit) fails it for good; after
    the disk's repair it is rebuilt, and nothing the disk dropped is ever read back."""
    failing = frozenset({FaultKind.DISK_ERROR})
    (result,) = await run_schedules(
        [11], faults=2, keep=tmp_path, echo=False, kinds=failing, loop_disks=True
    )
    assert result.error == ""
    assert result.violations == ()
    assert {f.kind for f in result.faults} == failing
    assert result.rebuilds >= 1
    engine_log = (tmp_path / "11" / "engine.log").read_text()
    # the EIO fails the replica whichever write meets it first: a flush, or a metadata commit
    # ("a change may not be durable")
    assert re.search(
        r"Input/output error \(errno 5\); (a change may not be durable, )?the replica must be "
        r"rebuilt",
        engine_log,
    ), engine_log
    mounts = await trio.Path("/proc/mounts").read_text()
    assert str(tmp_path) not in mounts  # every disk was unmounted, nbdfuse's too


async def test_a_disk_failing_reads_under_a_replica_reaches_no_client(tmp_path: Path) -> None:
    """A replica's disk fails every read (its clean cached pages dropped) while the testbed
    reads the whole volume in small requests: the engine fails the replica at its first read
    error and reads from another, so no error reaches the client (the testbed fails the
    schedule if one does); the replica is rebuilt after the disk's repair. The failed rebuilds
    into it meanwhile (the testbed retries every 0.2 s) leave no system snapshots behind to
    fill the healthy disks."""
    reads = frozenset({FaultKind.READ_ERROR})
    (result,) = await run_schedules(
        [1], faults=2, keep=tmp_path, echo=False, kinds=reads, loop_disks=True
    )
    assert result.error == ""
    assert result.violations == ()
    assert {f.kind for f in result.faults} == reads
    assert result.rebuilds >= 1
    engine_log = (tmp_path / "1" / "engine.log").read_text()
    assert re.search(r"failed: StorageError: read of \d+ bytes at \d+ in replica", engine_log)
    assert "Input/output error (errno 5); marked ERR" in engine_log
    assert "No space left" not in engine_log


async def test_a_replica_that_no_longer_opens_after_its_disk_failed_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the disk dropped can leave a replica unable to open (a metadata file gone): it is
    started empty in its place and rebuilt whole; no write is lost."""
    repair = LoopDisk.repair

    async def repair_losing_the_counter(disk: LoopDisk) -> None:
        await repair(disk)
        (disk.mountpoint / "replica" / "revision.counter").unlink()

    monkeypatch.setattr(LoopDisk, "repair", repair_losing_the_counter)
    failing = frozenset({FaultKind.DISK_ERROR})
    (result,) = await run_schedules(
        [12], faults=1, keep=tmp_path, echo=False, kinds=failing, loop_disks=True
    )
    assert result.error == ""
    assert result.violations == ()
    assert result.replacements == 1
    assert result.rebuilds >= 1
    assert result.report is not None
    assert result.report.durable_writes > 100


async def test_power_losses_lose_no_flushed_write(tmp_path: Path) -> None:
    """A node's disk drops what no flush made durable (nbdkit's writeback cache killed with the
    node's processes), alone and all three at once: every replica opens again, and every write
    acknowledged and flushed is read back."""
    power = frozenset({FaultKind.POWER_LOSS, FaultKind.POWER_LOSS_ALL})
    (result,) = await run_schedules(
        [8], faults=3, keep=tmp_path, echo=False, kinds=power, loop_disks=True
    )
    assert result.error == ""
    assert result.violations == ()
    assert {f.kind for f in result.faults} == power
    assert result.report is not None
    assert result.report.durable_writes > 100
    assert result.engine_restarts >= 1  # the whole site lost power: the engine too
    fsck = (tmp_path / "8" / "disk1.fsck.log").read_text()  # checked after each power-on
    assert "exit 0" in fsck or "exit 1" in fsck
    mounts = await trio.Path("/proc/mounts").read_text()
    assert str(tmp_path) not in mounts


async def test_a_lost_flush_is_caught_after_a_power_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush fan-out disabled: acknowledged flushes make nothing durable, and the first
    power loss of the whole site shows it (a process kill keeps the page cache and cannot)."""
    monkeypatch.setenv("LHTRIO_MUTATION", "no-flush-fanout")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes them
    power = frozenset({FaultKind.POWER_LOSS_ALL})
    (result,) = await run_schedules([1], faults=1, echo=False, kinds=power, loop_disks=True)
    assert result.violations
    assert ViolationKind.STALE in {v.kind for v in result.violations}
    assert "which was acknowledged and flushed" in result.violations[0].detail
    # Without --keep, a failed schedule's logs are kept (and said where); a passing one's not.
    (note,) = [n for n in result.notes if n.startswith("logs kept in ")]
    kept = Path(note.removeprefix("logs kept in "))
    assert kept.parent == tmp_path
    assert kept.name.startswith("lhtrio-chaos-failed-1-")
    assert "test build: mutations no-flush-fanout are on" in (kept / "engine.log").read_text()
    assert (kept / "r0.log").exists()
    left = [n for n in os.listdir(tmp_path) if n.startswith("lhtrio-chaos-1-")]
    assert left == []  # the schedule's own directory is gone


async def test_partitions_and_lossy_links_between_namespaces_lose_no_write(tmp_path: Path) -> None:
    """Each replica in a network namespace of its own behind a veth pair; nftables drops all
    (a partition) or a random share of its packets for a while."""
    kinds = frozenset({FaultKind.PARTITION, FaultKind.LOSSY_NET})
    (result,) = await run_schedules(
        [4], faults=3, keep=tmp_path, echo=False, kinds=kinds, netns=True
    )
    assert result.error == ""
    assert result.violations == ()
    assert {f.kind for f in result.faults} == kinds
    assert result.report is not None
    assert result.report.durable_writes > 100
    assert result.rebuilds >= 1  # the 2.3 s partition outlasted the replica timeout
    left = await run("ip", "netns", "list")
    mine = f"lhv{os.getpid() % 10000}x".encode()  # (another run's may exist meanwhile)
    assert mine not in left.stdout  # every namespace this process made was deleted


def test_sim_is_handed_to_the_simulator_with_the_other_arguments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib
    import types

    from lhtrio.verify import chaos

    seen: list[list[str]] = []

    def simulate(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    fake = types.SimpleNamespace(main=simulate)
    real = importlib.import_module

    def lookup(name: str) -> object:
        if name == "lhtrio.sim.__main__":
            return fake
        return real(name)

    monkeypatch.setattr(importlib, "import_module", lookup)
    assert chaos.main(["--schedules", "5", "--sim", "--seed", "9"]) == 0
    assert seen == [["--schedules", "5", "--seed", "9"]]

    def missing(name: str) -> object:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert chaos.main(["--sim"]) == 2
    assert "needs the deterministic simulator" in capsys.readouterr().err
