"""The chaos testbed: real ``lhtrio replica`` and ``lhtrio engine`` processes, faults on them.

Three nodes on 127.0.0.1 (:mod:`lhtrio.verify.faults`): node 0 runs the engine and replica 0,
nodes 1 and 2 a replica each. The engine reaches every replica through a :class:`LinkProxy` of
its own (``--no-local-sockets``: the Unix socket shortcut would bypass it) and serves NBD on a
Unix socket whose path survives its restarts, so the workload's writers reconnect by themselves.

A fault is injected, held, then undone (a killed process is started again, a stopped one
continued, a link healed). Meanwhile a *repair* task does what the manager would: an engine
left with no RW replica is restarted (its start decision picks the replicas with the newest
persisted revision counter), and every replica the engine holds in ERR whose process runs is
added back (rebuilt from an RW one). :meth:`Testbed.heal` waits for every replica to be RW.

Resource handling: every process is started by the testbed, and killed (after a SIGCONT) and
reaped when :func:`open_testbed` exits; nothing else is ever signalled.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import trio

from lhtrio.clients.engine import EngineClient
from lhtrio.errors import ConnectionLostError, HandshakeError, LhtrioError, StorageError
from lhtrio.models.volume import Mode
from lhtrio.net import open_rpc_client
from lhtrio.verify.disks import LoopDisk, open_loop_disk
from lhtrio.verify.faults import ON_DISKS, Fault, FaultKind
from lhtrio.verify.nbd import NbdTarget, open_nbd
from lhtrio.verify.netns import NodeNet, open_node_net
from lhtrio.verify.proxy import LinkProxy, open_link_proxy
from lhtrio.wire import Data, Read, Role

__all__ = ["Proc", "Testbed", "open_testbed"]

log = logging.getLogger(__name__)
VOLUME = "chaos"


logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class Proc:
    """One ``python -m lhtrio ...`` process, restartable; its output goes to ``log``."""

    argv: list[str]
    log: Path
    prefix: list[str] = attrs.field(factory=list)  # e.g. nsenter --net=/run/netns/NAME --
    options: list[str] = attrs.field(factory=list)  # lhtrio's own, before the verb (-v)
    lines: int = 1  # lines it prints on stdout once serving (its addresses)
    process: trio.Process | None = None
    address: str = ""
    stopped: bool = False
    starts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> str:
        """Start it; return the first line it printed (its address) once it printed them all."""
        with self.log.open("ab") as err:
            self.process = process = await trio.lowlevel.open_process(
                [*self.prefix, sys.executable, "-m", "lhtrio", *self.options, *self.argv],
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.stopped = False
        self.starts += 1
        assert process.stdout is not None
        out = b""
        try:
            with trio.fail_after(30):
                while out.count(b"\n") < self.lines:
                    chunk = await process.stdout.receive_some()
                    if not chunk:
                        await process.wait()
                        raise LhtrioError(
                            f"lhtrio {self.argv[0]} exited {process.returncode} before serving; "
                            f"its log: {self.log}"
                        )
                    out += chunk
        except trio.TooSlowError:
            raise LhtrioError(f"lhtrio {self.argv[0]} did not start in 30 s: {self.log}") from None
        await process.stdout.aclose()
        self.address = out.decode().split("\n")[0].strip()
        return self.address

    def stop(self) -> None:
        if self.alive and self.process is not None:
            self.process.send_signal(signal.SIGSTOP)
            self.stopped = True

    def cont(self) -> None:
        if self.alive and self.process is not None and self.stopped:
            self.process.send_signal(signal.SIGCONT)
        self.stopped = False

    async def kill(self) -> None:
        """SIGKILL it (continued first, so that it dies now) and reap it."""
        if self.process is None:
            return
        if self.alive:
            self.cont()
            self.process.kill()
        with trio.CancelScope(shield=True):
            await self.process.wait()


@attrs.define(eq=False)
class Testbed:
    """See the module docstring. ``size``: the volume's bytes; ``timeout``: the engine's replica
    stall timeout; ``sweep``: its write-intent sweep interval."""

    tmp: Path
    size: int
    proxies: list[LinkProxy]
    timeout: float = 1.0
    sweep: float = 1.0
    disks: list[LoopDisk] = attrs.field(factory=list)  # under each replica, or none at all
    nets: list[NodeNet] = attrs.field(factory=list)  # each replica's namespace, or none at all
    replicas: list[Proc] = attrs.field(factory=list)
    engine: Proc | None = None
    engine_restarts: int = 0
    rebuilds: int = 0
    replacements: int = 0  # replicas started empty after their disk's repair
    _lifecycle: trio.Lock = attrs.field(factory=trio.Lock)  # starts and kills, one at a time
    _repair_paused: bool = False

    @property
    def target(self) -> NbdTarget:
        return NbdTarget(export=VOLUME, socket=str(self.tmp / "nbd.sock"))

    async def start(self) -> None:
        for i, proxy in enumerate(self.proxies):
            directory = self.disks[i].mountpoint / "replica" if self.disks else self.tmp / f"r{i}"
            replica = Proc(
                ["replica", "run", str(directory), "--volume", VOLUME, "--instance", f"r{i}"],
                log=self.tmp / f"r{i}.log",
            )
            if self.nets:
                replica.prefix = self.nets[i].exec_prefix
                replica.argv += ["--listen", f"{self.nets[i].ns_ip}:0"]
            self.replicas.append(replica)
            replica.argv += ["--size", str(self.size)]
            await self.start_replica(i)
            del replica.argv[-2:]  # restarts open what is there
            assert proxy.target is not None
        argv = ["engine", "run", VOLUME, "--size", str(self.size)]
        argv += ["--nbd", f"unix:{self.target.socket}"]
        for proxy in self.proxies:
            argv += ["--replica", proxy.address]
        argv += ["--no-local-sockets", "--replica-timeout", str(self.timeout)]
        argv += ["--intent-sweep", str(self.sweep)]
        # at INFO: its start decisions and rebuilds are what a failed schedule is read from
        self.engine = Proc(argv, log=self.tmp / "engine.log", lines=2, options=["-v"])
        await self.engine.start()

    async def start_replica(self, i: int) -> None:
        address = await self.replicas[i].start()
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        self.proxies[i].target = (host, int(port))

    async def _replace_replica(self, i: int) -> None:
        """Start an empty replica in replica ``i``'s place (its directory removed): what an
        operator does with a replica that no longer opens; the engine rebuilds it whole."""
        replica = self.replicas[i]
        directory = Path(replica.argv[2])
        await trio.to_thread.run_sync(shutil.rmtree, directory, True)
        replica.argv += ["--size", str(self.size)]
        try:
            await self.start_replica(i)
        finally:
            del replica.argv[-2:]
        self.replacements += 1

    async def restart_engine(self) -> None:
        assert self.engine is not None
        await self.engine.kill()
        await self.engine.start()
        self.engine_restarts += 1

    def node(self, n: int) -> list[Proc]:
        assert self.engine is not None
        return [self.engine, self.replicas[0]] if n == 0 else [self.replicas[n]]

    async def apply(self, fault: Fault) -> None:
        """Inject ``fault``, hold it, undo it."""
        assert self.engine is not None
        kind, i = fault.kind, fault.target
        if kind is FaultKind.LAG_THEN_CRASH:
            await self._lag_then_crash(i, fault.hold)
            return
        if kind in (FaultKind.PARTITION, FaultKind.LOSSY_NET):
            if not self.nets:
                raise LhtrioError(f"{kind.value} needs a testbed in network namespaces")
            net = self.nets[i]
            await (net.partition() if kind is FaultKind.PARTITION else net.lossy(fault.loss))
            await trio.sleep(fault.hold)
            await net.heal()
            return
        if kind in ON_DISKS and not self.disks:
            raise LhtrioError(f"{kind.value} needs a testbed on loop-mounted disks")
        if kind in (FaultKind.POWER_LOSS, FaultKind.POWER_LOSS_ALL):
            nodes = [i] if kind is FaultKind.POWER_LOSS else list(range(len(self.replicas)))
            await self._power_loss(nodes, fault.hold)
            return
        if kind is FaultKind.FILL_DISK:
            self.disks[i].fill()
            await trio.sleep(fault.hold)
            self.disks[i].free()
            return
        if kind in (FaultKind.DISK_ERROR, FaultKind.READ_ERROR):
            if kind is FaultKind.DISK_ERROR:
                self.disks[i].fail()
                await trio.sleep(fault.hold)
            else:
                await self._read_through_failing_reads(i, fault.hold)
            async with self._lifecycle:  # the operator's repair: replica down, disk checked
                await self.replicas[i].kill()
                await self.disks[i].repair()
                try:
                    await self.start_replica(i)
                except LhtrioError as exc:  # what the disk lost left it unable to open
                    logger.info("replica %d does not open after its disk's repair: %s", i, exc)
                    await self._replace_replica(i)
            return
        procs = {
            FaultKind.KILL_REPLICA: [self.replicas[i]],
            FaultKind.STOP_REPLICA: [self.replicas[i]],
            FaultKind.KILL_ENGINE: [self.engine],
            FaultKind.STOP_ENGINE: [self.engine],
            FaultKind.KILL_NODE: self.node(i),
            FaultKind.STOP_NODE: self.node(i),
            FaultKind.KILL_ALL: [self.engine, *self.replicas],
        }.get(kind, [])
        killing = kind in (
            FaultKind.KILL_REPLICA,
            FaultKind.KILL_ENGINE,
            FaultKind.KILL_NODE,
            FaultKind.KILL_ALL,
        )
        proxy = self.proxies[i]
        async with self._lifecycle:
            if killing:
                for proc in procs:
                    await proc.kill()
            elif procs:
                for proc in procs:
                    proc.stop()
            elif kind is FaultKind.STALL_LINK:
                proxy.stall()
            elif kind is FaultKind.SLOW_LINK:
                proxy.slow(fault.delay)
            elif kind is FaultKind.CUT_LINK:
                proxy.cut()
        await trio.sleep(fault.hold)
        async with self._lifecycle:
            if killing:  # replicas first: a restarted engine must find them
                for n, replica in enumerate(self.replicas):
                    if replica in procs:
                        await self.start_replica(n)
                if self.engine in procs:
                    await self.engine.start()
                    self.engine_restarts += 1
            else:
                for proc in procs:
                    proc.cont()
                proxy.heal()

    async def _read_through_failing_reads(self, i: int, hold: float) -> None:
        """Replica ``i``'s disk fails reads for ``hold`` seconds, while the volume is read in
        small requests (the engine sends them to its RW replicas in turn), at least once
        through. LhtrioError if a read error reaches the client while another replica was RW:
        the engine must fail the replica and read from another."""
        others = {a for a, mode in (await self._modes()).items() if mode is Mode.RW}
        others.discard(self.proxies[i].address)
        await trio.to_thread.run_sync(self.disks[i].fail_reads)  # (a few fadvise calls)
        end = trio.current_time() + hold
        chunk = 4 * 4096
        try:
            async with open_nbd(self.target) as client:
                passes = 0
                while not passes or trio.current_time() < end:
                    for offset in range(0, self.size, chunk):
                        try:
                            await client.read(offset, chunk)
                        except StorageError as exc:
                            if others:
                                raise LhtrioError(
                                    f"a read error of replica {i}'s disk reached the client "
                                    f"while {', '.join(sorted(others))} were RW: {exc}"
                                ) from None
                    passes += 1
        except (ConnectionLostError, HandshakeError) as exc:  # the engine is away: stop reading
            logger.info("reads during read-error %d stopped: %s", i, exc)
        await trio.sleep_until(end)

    async def _modes(self) -> dict[str, Mode]:
        """The engine's mode of each replica address (empty: it cannot be asked now)."""
        modes: dict[str, Mode] = {}
        try:
            modes = await self._engine_modes()
        except* (LhtrioError, OSError, trio.TooSlowError):
            pass  # it cannot be asked now
        return modes

    async def _engine_modes(self) -> dict[str, Mode]:
        """The engine's mode of each replica address (its error if it cannot be asked)."""
        assert self.engine is not None
        with trio.fail_after(5):
            async with open_rpc_client(self.engine.address, volume=VOLUME, role=Role.ENGINE) as rpc:
                info = await EngineClient(rpc).info()
        return {link.address: link.mode for link in info.replicas}

    async def _power_loss(self, nodes: list[int], hold: float) -> None:
        """``nodes`` lose power for ``hold`` seconds, then boot. A replica must open after a
        power loss (it made durable what it promised), so one that does not fails the
        schedule; it is not replaced as after a disk error."""
        assert self.engine is not None
        async with self._lifecycle:
            for n in nodes:
                for proc in self.node(n):
                    await proc.kill()
            for n in nodes:
                await self.disks[n].power_cut()
        await trio.sleep(hold)
        async with self._lifecycle:
            for n in nodes:
                await self.disks[n].power_on()
                try:
                    await self.start_replica(n)
                except LhtrioError as exc:
                    msg = f"replica {n} does not open after a power loss: {exc}"
                    raise LhtrioError(msg) from exc
            if not self.engine.alive:
                await self.engine.start()
                self.engine_restarts += 1

    async def _lag_then_crash(self, i: int, hold: float) -> None:
        assert self.engine is not None
        replica, address = self.replicas[i], self.proxies[i].address
        self._repair_paused = True
        try:
            async with self._lifecycle:
                replica.stop()
            with trio.fail_after(10 * self.timeout + 10):  # polled: another process's state
                while await self._mode(address) is Mode.RW:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            await trio.sleep(hold)  # the others take writes and flushes without it
            async with self._lifecycle:
                await self.engine.kill()
                replica.cont()
                await self.engine.start()
                self.engine_restarts += 1
        finally:
            self._repair_paused = False

    async def _mode(self, address: str) -> Mode | None:
        """The engine's mode of the replica at ``address`` (None: it cannot be asked now)."""
        return (await self._modes()).get(address)

    def _serving(self) -> bool:
        return self.engine is not None and self.engine.alive and not self.engine.stopped

    async def _info_and_repair(self) -> bool:
        """One round of repair; whether every replica is RW."""
        assert self.engine is not None
        if self._repair_paused or not self._serving():
            return False
        modes = await self._engine_modes()
        if all(mode is Mode.RW for mode in modes.values()):
            return True
        if Mode.RW not in modes.values():
            async with self._lifecycle:
                if self._serving():
                    log.info("no RW replica left: restarting the engine")
                    await self.restart_engine()
            return False
        for i, proxy in enumerate(self.proxies):
            replica = self.replicas[i]
            if modes.get(proxy.address) is Mode.RW or not replica.alive or replica.stopped:
                continue
            with trio.fail_after(60):
                async with open_rpc_client(
                    self.engine.address, volume=VOLUME, role=Role.ENGINE
                ) as rpc:
                    progress = await EngineClient(rpc).replica_add(proxy.address)
                    log.info("rebuild of %s: %s", proxy.address, progress.state.value)
                    self.rebuilds += 1
        return False

    async def repair_once(self) -> bool:
        try:
            return await self._info_and_repair()
        except* (LhtrioError, OSError, trio.TooSlowError) as group:  # (from inside nurseries too)
            log.info("repair: %s", group.exceptions[0])
        return False

    async def repair(self) -> None:
        """Repair for ever (run it in a nursery and cancel it)."""
        while True:
            await self.repair_once()
            await trio.sleep(0.2)

    async def heal(self, patience: float = 90.0) -> None:
        """Undo what is left of any fault and wait until every replica is RW."""
        async with self._lifecycle:
            for proc in [*self.replicas, *([self.engine] if self.engine else [])]:
                proc.cont()
            for proxy in self.proxies:
                proxy.heal()
            for i, replica in enumerate(self.replicas):
                if not replica.alive:
                    await self.start_replica(i)
            if self.engine is not None and not self.engine.alive:
                await self.engine.start()
        with trio.fail_after(patience):  # other processes' state: polled, with a deadline
            while not await self.repair_once():  # noqa: ASYNC110
                await trio.sleep(0.2)

    async def replica_image(self, i: int, blocks: int, block_size: int = 4096) -> dict[int, bytes]:
        """Replica ``i``'s blocks read from it directly (not through the engine): which replica
        holds what, when a check fails."""
        target = self.proxies[i].target
        assert target is not None
        host, port = target
        out = bytearray()
        with trio.fail_after(60):
            async with open_rpc_client(
                f"tcp://{host}:{port}", volume=VOLUME, role=Role.REPLICA
            ) as rpc:
                step = 256 * block_size
                for offset in range(0, blocks * block_size, step):
                    n = min(step, blocks * block_size - offset)
                    (reply,) = await rpc.call_many([Read(offset, n)])
                    if not isinstance(reply, Data):
                        raise LhtrioError(f"replica {i} answered {reply!r} to a read")
                    out += reply.data
        return {b: bytes(out[b * block_size : (b + 1) * block_size]) for b in range(blocks)}

    async def close(self) -> None:
        for proc in [*([self.engine] if self.engine else []), *self.replicas]:
            await proc.kill()


@asynccontextmanager
async def open_testbed(
    tmp: Path,
    *,
    size: int,
    replica_timeout: float = 1.0,
    sweep: float = 1.0,
    loop_disks: bool = False,
    netns: bool = False,
) -> AsyncIterator[Testbed]:
    """Three replicas behind their proxies and an engine, running; all killed on exit. With
    ``loop_disks``, each replica's directory is on a loop-mounted file system of its own; with
    ``netns``, each replica runs in a network namespace of its own."""
    async with AsyncExitStack() as stack:
        disks = [
            await stack.enter_async_context(
                open_loop_disk(tmp / f"disk{i}.img", tmp / f"disk{i}", 4 * size + (16 << 20))
            )
            for i in range(3 if loop_disks else 0)
        ]
        nets = [await stack.enter_async_context(open_node_net(i)) for i in range(3 if netns else 0)]
        # With namespaces, proxy i listens on the host side of replica i's veth: reachable from
        # here and, through their default routes, from the other namespaces.
        proxies = [
            await stack.enter_async_context(
                open_link_proxy(nets[i].host_ip if nets else "127.0.0.1")
            )
            for i in range(3)
        ]
        bed = Testbed(
            tmp, size, proxies, timeout=replica_timeout, sweep=sweep, disks=disks, nets=nets
        )
        try:
            await bed.start()
            yield bed
        finally:
            with trio.CancelScope(shield=True):
                await bed.close()
